/* ferryfs --listen — a fleet: one mount, a directory per source that
 * dialled in.
 *
 *   /                    a directory per source (its name, made unique)
 *   /.ferry/status.json  every source: state, connections, bytes, rates
 *   /NAME/...            the source's own mount: its views and .ferry/
 *
 * Each source is a member: a whole ferryfs (its http backend talks to the
 * listener's Unix socket for it, listen.c) with its own cache directory,
 * CACHE/sources/KEY, where KEY is the source's identity: a hash of its
 * host id (the hash of /etc/machine-id its exporter sends) and its name
 * (ferry-export --name, or the hostname). A source that comes back, after
 * a restart or from a new address, gets its directory and cache again;
 * CACHE/fleet.json keeps the directory names across restarts of ferryfs.
 * Members are never removed while mounted: a source that disconnects stays,
 * its cached data readable.
 *
 * Inode numbers: the fleet's own are small; member i's inode n is
 * (i + 1) << 32 | n, and ferryfs_ops serve them (ops_member).
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "common/log.h"
#include "common/util.h"
#include "fs/dirbuf.h"
#include "fs/fleet.h"

enum { FL_ROOT = FUSE_ROOT_ID, FL_CTL = 2, FL_STATUS = 3 };

struct member {
	struct rsource rs;
	struct ferryfs fs;
	struct fleet *fleet;
	pthread_mutex_t lock;		/* state, error, setup */
	const char *state;		/* connecting, ready, error */
	char error[256];
	bool setup_running;
	pthread_t setup;
	bool setup_started;		/* a thread to join */
	atomic_bool ready;		/* fs is serving */
};

struct fleet {
	struct listener lis;
	struct member *m[FLEET_MAX];
	_Atomic unsigned n;		/* published members */
	pthread_mutex_t lock;		/* adding members, names */
	json_t *names;			/* key -> directory (fleet.json) */
	char cache_dir[PATH_MAX];
	struct ferryfs *tmpl;
	struct ferry_http_opts hopts;
	struct fuse_session *se;
	time_t mount_time;
	atomic_bool stop;
};

static struct ferryfs *
fleet_member(void *userdata, uint64_t ino)
{
	struct fleet *f = userdata;

	return &f->m[(ino >> 32) - 1]->fs;
}

/* The member inode @ino belongs to, if it is one that serves. */
static struct member *
member_of(struct fleet *f, fuse_ino_t ino)
{
	uint64_t i = ino >> 32;

	if (i == 0 || i > f->n || !f->m[i - 1]->ready)
		return NULL;
	return f->m[i - 1];
}

static struct member *
member_named(struct fleet *f, const char *name)
{
	for (unsigned i = 0; i < f->n; i++)
		if (f->m[i]->ready && strcmp(f->m[i]->rs.dir, name) == 0)
			return f->m[i];
	return NULL;
}

/* Names */

static void
names_save(struct fleet *f)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 24];

	snprintf(path, sizeof path, "%s/fleet.json", f->cache_dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if (json_dump_file(f->names, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) ||
	    rename(tmp, path) < 0)
		ferry_error("%s: cannot write the source names", path);
}

static bool
dir_taken(struct fleet *f, const char *key, const char *dir)
{
	const char *k;
	json_t *v;

	json_object_foreach(f->names, k, v)
		if (strcmp(k, key) && json_is_string(v) &&
		    strcmp(json_string_value(v), dir) == 0)
			return true;
	return strcmp(dir, ".ferry") == 0;
}

/* The directory of source @key (@h): the one it had, or its name, made
 * unique by its host id, then by a number. */
static void
dir_for(struct fleet *f, const char *key, const struct ferry_hello *h,
	char out[FERRY_SOURCE_NAME_MAX + 1])
{
	json_t *v = json_object_get(f->names, key);

	if (json_is_string(v) && ferry_source_name_ok(json_string_value(v))) {
		snprintf(out, FERRY_SOURCE_NAME_MAX + 1, "%s",
			 json_string_value(v));
		return;
	}
	snprintf(out, FERRY_SOURCE_NAME_MAX + 1, "%s", h->name);
	if (dir_taken(f, key, out))
		snprintf(out, FERRY_SOURCE_NAME_MAX + 1, "%.*s-%.6s", 56,
			 h->name, h->host_id);
	for (unsigned k = 2; dir_taken(f, key, out); k++)
		snprintf(out, FERRY_SOURCE_NAME_MAX + 1, "%.*s-%.6s-%u", 48,
			 h->name, h->host_id, k);
	json_object_set_new(f->names, key, json_string(out));
	names_save(f);
}

struct rsource *
fleet_hello(struct fleet *f, const struct ferry_hello *h, const char *peer,
	    char *why, size_t whylen)
{
	unsigned char md[32];
	char id[400], key[33];
	struct member *m = NULL;

	snprintf(id, sizeof id, "%s/%s", h->host_id, h->name);
	EVP_Digest(id, strlen(id), md, NULL, EVP_sha256(), NULL);
	ferry_hex(md, 16, key);
	pthread_mutex_lock(&f->lock);
	for (unsigned i = 0; i < f->n; i++)
		if (strcmp(f->m[i]->rs.key, key) == 0)
			m = f->m[i];
	if (m) {
		/* Another process with this identity while the one we know
		 * is connected: two exporters sharing a name. */
		if (strcmp(m->rs.hello.session, h->session) != 0 &&
		    rsource_live(&m->rs) > 0) {
			pthread_mutex_unlock(&f->lock);
			snprintf(why, whylen, "busy: a source named %s of this "
				 "host is connected from %s (another "
				 "ferry-export? give each its own --name)",
				 h->name, m->rs.peer);
			return NULL;
		}
		if (strcmp(m->rs.hello.session, h->session) != 0)
			ferry_info("source %s: back from %s (session %.8s)",
				   m->rs.dir, peer, h->session);
		pthread_mutex_lock(&m->rs.lock);
		m->rs.hello = *h;
		pthread_mutex_unlock(&m->rs.lock);
		pthread_mutex_unlock(&f->lock);
		return &m->rs;
	}
	if (f->n >= FLEET_MAX || f->stop) {
		pthread_mutex_unlock(&f->lock);
		snprintf(why, whylen, "this transit takes no more sources "
			 "(%d)", FLEET_MAX);
		return NULL;
	}
	m = calloc(1, sizeof *m);
	if (!m) {
		pthread_mutex_unlock(&f->lock);
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	m->fleet = f;
	m->state = "connecting";
	pthread_mutex_init(&m->lock, NULL);
	m->rs.idx = f->n;
	m->rs.ufd = -1;
	m->rs.hello = *h;
	pthread_mutex_init(&m->rs.lock, NULL);
	pthread_cond_init(&m->rs.more, NULL);
	snprintf(m->rs.key, sizeof m->rs.key, "%s", key);
	dir_for(f, key, h, m->rs.dir);
	if ((size_t)snprintf(m->rs.sock_path, sizeof m->rs.sock_path,
			     "%s/run/%.16s.sock", f->cache_dir, key) >=
	    sizeof m->rs.sock_path || rsource_start(&f->lis, &m->rs) < 0) {
		pthread_mutex_unlock(&f->lock);
		free(m);
		snprintf(why, whylen, "the transit cannot make its socket "
			 "(cache path too long?)");
		ferry_error("source %s: no socket under %s/run", h->name,
			    f->cache_dir);
		return NULL;
	}
	f->m[m->rs.idx] = m;
	f->n++;
	pthread_mutex_unlock(&f->lock);
	ferry_info("source %s: new, from %s, host %s, directory %s", h->name,
		   peer, h->host_id, m->rs.dir);
	return &m->rs;
}

/* Members */

/* The pin of the member's exporter now (http.c asks at each request). */
static void
pin_now(void *arg, char pin[128])
{
	struct rsource *rs = arg;

	pthread_mutex_lock(&rs->lock);
	snprintf(pin, 128, "%s", rs->hello.pin);
	pthread_mutex_unlock(&rs->lock);
}

static void
member_fail(struct member *m, const char *what)
{
	pthread_mutex_lock(&m->lock);
	m->state = "error";
	snprintf(m->error, sizeof m->error, "%s: %s", what,
		 ferry_last_error());
	pthread_mutex_unlock(&m->lock);
}

/* Set up @m's ferryfs: list its disks through its socket, open its cache,
 * start it. Tried again every 5 s while the source stays connected. */
static void *
setup_main(void *arg)
{
	struct member *m = arg;
	struct fleet *f = m->fleet;
	struct ferryfs *t = f->tmpl, *fs = &m->fs;

	while (!f->stop) {
		struct ferry_http_opts ho = f->hopts;
		int r;

		memset(fs, 0, sizeof *fs);
		fs->chunk = t->chunk;
		fs->prefetch = t->prefetch;
		fs->compress = t->compress;
		fs->compress_auto = t->compress_auto;
		fs->verify = t->verify;
		fs->streams = t->streams;
		fs->readahead = t->readahead;
		fs->smallread = t->smallread;
		fs->views = t->views;
		fs->qcow2_cluster_bits = t->qcow2_cluster_bits;
		ferry_bucket_init(&fs->bucket, (uint64_t)t->bucket.rate);
		ferryfs_init(fs);
		fs->ino_base = (uint64_t)(m->rs.idx + 1) << 32;
		fs->se = f->se;
		ho.unix_socket = m->rs.sock_path;
		ho.token = f->lis.token;
		ho.pin_now = pin_now;
		ho.pin_arg = &m->rs;
		ho.client_cert = f->lis.cert_path;
		ho.client_key = f->lis.key_path;
		r = ferry_http_open(m->rs.dir, &ho, &fs->src);
		if (r == 0) {
			fs->src->cancel = &fs->stop;
			snprintf(fs->cache_dir, sizeof fs->cache_dir,
				 "%s/sources/%s", f->cache_dir, m->rs.key);
			r = ferryfs_open_disks(fs);
			if (r == 0 && (r = ferryfs_start(fs)) < 0)
				ferryfs_stop(fs);
			if (r < 0)
				member_fail(m, "its cache");
		} else {
			member_fail(m, "listing its disks");
		}
		if (r == 0) {
			ferry_info("source %s: %zu disk%s on %s, cache %s",
				   m->rs.dir, fs->ndisks,
				   fs->ndisks == 1 ? "" : "s", m->rs.dir,
				   fs->cache_dir);
			pthread_mutex_lock(&m->lock);
			m->state = "ready";
			m->error[0] = '\0';
			m->ready = true;
			m->setup_running = false;
			pthread_mutex_unlock(&m->lock);
			return NULL;
		}
		ferryfs_free(fs);
		for (int i = 0; i < 50 && !f->stop; i++)
			usleep(100 * 1000);
		if (rsource_live(&m->rs) == 0)
			break;	/* the next connection tries again */
	}
	pthread_mutex_lock(&m->lock);
	m->setup_running = false;
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

void
fleet_joined(struct fleet *f, struct rsource *rs)
{
	struct member *m = f->m[rs->idx];

	pthread_mutex_lock(&m->lock);
	if (!m->ready && !m->setup_running && !f->stop) {
		if (m->setup_started)
			pthread_join(m->setup, NULL);
		m->setup_started = m->setup_running =
			pthread_create(&m->setup, NULL, setup_main, m) == 0;
	}
	pthread_mutex_unlock(&m->lock);
}

/* status.json */

static json_t *
member_json(struct member *m)
{
	struct rsource *rs = &m->rs;
	unsigned live = rsource_live(rs);
	uint64_t size = 0, used = 0, cached = 0, got = 0, wire = 0;
	double rate = 0;
	bool complete = true, failing = false;
	const char *state;
	char error[256];
	json_t *disks = json_array(), *info = NULL;
	const char *hostname = NULL;

	pthread_mutex_lock(&m->lock);
	snprintf(error, sizeof error, "%s", m->error);
	state = m->state;
	pthread_mutex_unlock(&m->lock);
	if (m->ready) {
		struct ferryfs *fs = &m->fs;

		/* The host's own name, from its /v1/info; the directory may
		 * be another (--name). */
		if (fs->source_json)
			info = json_loads(fs->source_json, 0, NULL);
		hostname = json_string_value(json_object_get(
			json_object_get(info, "host"), "hostname"));
		for (size_t i = 0; i < fs->ndisks; i++) {
			struct fdisk *d = &fs->disks[i];
			struct layout *l = layout_get(d);
			const char *ds = disk_state(fs, d);

			size += d->info.size;
			used += l->map.data_bytes;
			layout_put(l);
			cached += d->cached;
			got += d->received;
			wire += d->wire;
			pthread_mutex_lock(&d->lock);
			rate += d->rate;
			if (d->error[0] && strcmp(ds, "error") == 0) {
				failing = true;
				snprintf(error, sizeof error, "%s: %s",
					 d->info.name, d->error);
			}
			pthread_mutex_unlock(&d->lock);
			complete = complete && strcmp(ds, "complete") == 0;
			json_array_append_new(disks, json_pack("{sssssI}",
				"name", d->info.name, "state", ds,
				"size", (json_int_t)d->info.size));
		}
		state = failing ? "error" : live == 0 ? "disconnected" :
			complete ? "complete" : "syncing";
	} else if (strcmp(state, "error") != 0) {
		state = live ? "connecting" : "disconnected";
	}
	pthread_mutex_lock(&rs->lock);
	json_t *j = json_pack("{sssssssssssIsIsIsIsIsIsIsIsfsoso}",
		"name", rs->dir,
		"hostname", hostname ? hostname : rs->hello.name,
		"host_id", rs->hello.host_id,
		"state", state,
		"address", rs->peer,
		"connections", (json_int_t)(rs->nidle + rs->nactive),
		"connected_since", (json_int_t)rs->since,
		"last_seen", (json_int_t)rs->last_seen,
		"size", (json_int_t)size,
		"used", (json_int_t)used,
		"cached", (json_int_t)cached,
		"data_bytes", (json_int_t)got,
		"wire_bytes", (json_int_t)wire,
		"rate", rate,
		"error", error[0] ? json_string(error) : json_null(),
		"disks", disks);
	pthread_mutex_unlock(&rs->lock);
	json_decref(info);
	return j;
}

static char *
fleet_status(struct fleet *f)
{
	json_t *arr = json_array(), *root;
	const char *states[] = { "connecting", "syncing", "complete",
				 "disconnected", "error" };
	unsigned count[5] = { 0 };
	char *text;

	for (unsigned i = 0; arr && i < f->n; i++) {
		json_t *j = member_json(f->m[i]);
		const char *s = json_string_value(json_object_get(j, "state"));

		for (int k = 0; k < 5; k++)
			if (s && strcmp(s, states[k]) == 0)
				count[k]++;
		json_array_append_new(arr, j);
	}
	root = json_pack("{sisssssos{sisisisisi}}", "version", 1,
			 "listen", f->lis.addr, "cache", f->cache_dir,
			 "sources", arr,
			 "states", states[0], count[0], states[1], count[1],
			 states[2], count[2], states[3], count[3], states[4],
			 count[4]);
	text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
	json_decref(root);
	if (text) {
		size_t n = strlen(text);
		char *t = realloc(text, n + 2);

		if (t) {
			t[n] = '\n';
			t[n + 1] = '\0';
			text = t;
		}
	}
	return text;
}

/* FUSE: the fleet's own inodes here, members' passed on. */

static void
fleet_attr(struct fleet *f, fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_atime = st->st_mtime = st->st_ctime = f->mount_time;
	if (ino == FL_STATUS) {
		char *t = fleet_status(f);

		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = t ? (off_t)strlen(t) : 0;
		free(t);
	} else {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
	}
}

static void
fl_init(void *userdata, struct fuse_conn_info *conn)
{
	ferryfs_ops.init(userdata, conn);
}

static void
fl_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fleet *f = fuse_req_userdata(req);
	struct fuse_entry_param e = { 0 };
	struct member *m;

	if (parent >> 32) {
		if (!member_of(f, parent))
			fuse_reply_err(req, ENOENT);
		else
			ferryfs_ops.lookup(req, parent, name);
		return;
	}
	if (parent == FL_ROOT && strcmp(name, ".ferry") == 0) {
		e.ino = FL_CTL;
		fleet_attr(f, FL_CTL, &e.attr);
	} else if (parent == FL_CTL && strcmp(name, "status.json") == 0) {
		e.ino = FL_STATUS;
		fleet_attr(f, FL_STATUS, &e.attr);
	} else if (parent == FL_ROOT && (m = member_named(f, name))) {
		e.ino = m->fs.ino_base + FUSE_ROOT_ID;
		ops_attr(&m->fs, FUSE_ROOT_ID, &e.attr);
		e.entry_timeout = 86400;	/* a member stays */
	} else {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fuse_reply_entry(req, &e);
}

static void
fl_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fleet *f = fuse_req_userdata(req);
	struct stat st;

	if (ino >> 32) {
		if (!member_of(f, ino))
			fuse_reply_err(req, ENOENT);
		else
			ferryfs_ops.getattr(req, ino, fi);
		return;
	}
	if (ino != FL_ROOT && ino != FL_CTL && ino != FL_STATUS) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fleet_attr(f, ino, &st);
	fuse_reply_attr(req, &st, 0);
}

static void
fl_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	   struct fuse_file_info *fi)
{
	struct fleet *f = fuse_req_userdata(req);
	struct dirbuf b = { 0 };

	if (ino >> 32) {
		if (!member_of(f, ino))
			fuse_reply_err(req, ENOENT);
		else
			ferryfs_ops.readdir(req, ino, size, off, fi);
		return;
	}
	if (ino != FL_ROOT && ino != FL_CTL) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	dirbuf_add(req, &b, ".", ino, S_IFDIR);
	dirbuf_add(req, &b, "..", FL_ROOT, S_IFDIR);
	if (ino == FL_CTL) {
		dirbuf_add(req, &b, "status.json", FL_STATUS, S_IFREG);
	} else {
		dirbuf_add(req, &b, ".ferry", FL_CTL, S_IFDIR);
		for (unsigned i = 0; i < f->n; i++)
			if (f->m[i]->ready)
				dirbuf_add(req, &b, f->m[i]->rs.dir,
					   f->m[i]->fs.ino_base + FUSE_ROOT_ID,
					   S_IFDIR);
	}
	dirbuf_reply(req, &b, size, off);
}

static void
fl_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fleet *f = fuse_req_userdata(req);
	char *text;

	if (ino >> 32) {
		if (!member_of(f, ino))
			fuse_reply_err(req, ENOENT);
		else
			ferryfs_ops.open(req, ino, fi);
		return;
	}
	if (ino != FL_STATUS) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	text = fleet_status(f);
	if (!text) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)text;	/* a snapshot per open */
	fi->direct_io = 1;
	fuse_reply_open(req, fi);
}

static void
fl_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	struct fuse_file_info *fi)
{
	const char *text;
	size_t n, len;
	char *copy;

	if (ino >> 32) {
		ferryfs_ops.read(req, ino, size, off, fi);
		return;
	}
	text = (const char *)(uintptr_t)fi->fh;
	n = strlen(text);
	if (off < 0 || (size_t)off >= n) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	/* From a copy: RELEASE may free the snapshot meanwhile (ops.c). */
	len = FERRY_MIN(n - (size_t)off, size);
	copy = malloc(len);
	if (!copy) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(copy, text + off, len);
	fuse_reply_buf(req, copy, len);
	free(copy);
}

static void
fl_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino >> 32) {
		ferryfs_ops.release(req, ino, fi);
		return;
	}
	free((char *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void
fl_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
	 off_t off, struct fuse_file_info *fi)
{
	if (ino >> 32)
		ferryfs_ops.write(req, ino, buf, size, off, fi);
	else
		fuse_reply_err(req, EROFS);
}

static void
fl_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
	   struct fuse_file_info *fi)
{
	struct fleet *f = fuse_req_userdata(req);

	if ((ino >> 32) && member_of(f, ino))
		ferryfs_ops.setattr(req, ino, attr, to_set, fi);
	else
		fuse_reply_err(req, EROFS);
}

static void
fl_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
	 struct fuse_file_info *fi)
{
	if (ino >> 32)
		ferryfs_ops.lseek(req, ino, off, whence, fi);
	else
		fuse_reply_err(req, EOPNOTSUPP);
}

static void
fl_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fleet *f = fuse_req_userdata(req);
	struct statvfs sv = { .f_bsize = 4096, .f_frsize = 4096,
			      .f_namemax = 255 };

	(void)ino;
	for (unsigned i = 0; i < f->n; i++) {
		struct ferryfs *fs = &f->m[i]->fs;

		if (!f->m[i]->ready)
			continue;
		for (size_t k = 0; k < fs->ndisks; k++) {
			struct layout *l = layout_get(&fs->disks[k]);

			sv.f_blocks += (l->map.data_bytes + 4095) / 4096;
			layout_put(l);
		}
		sv.f_files += fs->nfiles + 4;
	}
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops fleet_ops = {
	.init = fl_init,
	.lookup = fl_lookup,
	.getattr = fl_getattr,
	.readdir = fl_readdir,
	.open = fl_open,
	.release = fl_release,
	.read = fl_read,
	.write = fl_write,
	.setattr = fl_setattr,
	.statfs = fl_statfs,
	.lseek = fl_lseek,
};

static int
write_url_file(const char *path, const char *line)
{
	char tmp[PATH_MAX + 8];
	int fd;

	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || dprintf(fd, "%s\n", line) < 0 || close(fd) < 0 ||
	    rename(tmp, path) < 0) {
		ferry_error("%s: %m", path);
		return -EIO;
	}
	return 0;
}

static int
default_dir(char *out, size_t len)
{
	const char *home = getenv("HOME"), *xdg = getenv("XDG_CACHE_HOME");

	if (geteuid() == 0)
		snprintf(out, len, "/var/cache/ferry/fleet");
	else if (xdg && xdg[0] == '/')
		snprintf(out, len, "%s/ferry/fleet", xdg);
	else if (home && home[0] == '/')
		snprintf(out, len, "%s/.cache/ferry/fleet", home);
	else
		return -ENOENT;
	return 0;
}

int
fleet_run(const struct fleet_opts *fo, struct fuse_args *args,
	  struct fuse_cmdline_opts *cmd, struct ferryfs *tmpl,
	  const struct ferry_http_opts *hopts)
{
	struct fleet *f = calloc(1, sizeof *f);
	struct fuse_session *se = NULL;
	char url[1200], path[PATH_MAX + 16];
	json_error_t jerr;
	int rc = 1;

	if (!f)
		return 1;
	f->tmpl = tmpl;
	f->hopts = *hopts;
	f->mount_time = time(NULL);
	f->lis.fleet = f;
	f->lis.fd = -1;
	pthread_mutex_init(&f->lock, NULL);
	if (fo->cache)
		snprintf(f->cache_dir, sizeof f->cache_dir, "%s", fo->cache);
	else if (default_dir(f->cache_dir, sizeof f->cache_dir) < 0) {
		ferry_error("no HOME for the default cache; give -o cache=DIR");
		goto out;
	}
	snprintf(path, sizeof path, "%s/run", f->cache_dir);
	if (ferryfs_mkdir_p(path) < 0 || !realpath(f->cache_dir, path)) {
		ferry_error("cache %s: %m", f->cache_dir);
		goto out;
	}
	snprintf(f->cache_dir, sizeof f->cache_dir, "%s", path);
	snprintf(tmpl->cache_dir, sizeof tmpl->cache_dir, "%s", f->cache_dir);
	if (cache_lock_dir(tmpl) < 0)
		goto out;
	snprintf(path, sizeof path, "%s/fleet.json", f->cache_dir);
	f->names = json_load_file(path, 0, &jerr);
	if (!json_is_object(f->names)) {
		if (access(path, F_OK) == 0)
			ferry_error("%s: %s; the sources get new directory "
				    "names", path, jerr.text);
		json_decref(f->names);
		f->names = json_object();
	}
	if (listen_open(&f->lis, fo->listen, fo->cert, fo->key, f->cache_dir,
			fo->advertise, url, sizeof url) < 0)
		goto out;
	printf("ferry-export --connect '%s' disk0=/dev/sda ...\n", url);
	fflush(stdout);
	if (fo->url_file && write_url_file(fo->url_file, url) < 0)
		goto out;

	fuse_opt_add_arg(args, "-ofsname=ferry,subtype=ferry,"
			 "default_permissions");
	ops_member = fleet_member;
	se = fuse_session_new(args, &fleet_ops, sizeof fleet_ops, f);
	if (!se)
		goto out;
	f->se = se;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, fo->mountpoint) != 0)
		goto out_signals;
	ferry_info("listening on %s for sources; fleet mounted on %s, cache "
		   "%s", f->lis.addr, fo->mountpoint, f->cache_dir);
	fuse_daemonize(cmd->foreground);
	if (listen_start(&f->lis) < 0)
		goto out_unmount;
	rc = ferryfs_loop(se, cmd) == 0 ? 0 : 1;

out_unmount:
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	pthread_mutex_unlock(&f->lock);
	listen_stop(&f->lis);
	for (unsigned i = 0; i < f->n; i++) {
		struct member *m = f->m[i];

		pthread_mutex_lock(&m->lock);
		pthread_mutex_unlock(&m->lock);
		if (m->setup_started)
			pthread_join(m->setup, NULL);
		if (m->ready)
			ferryfs_stop(&m->fs);
	}
	fuse_session_unmount(se);
	for (unsigned i = 0; i < f->n; i++) {
		struct member *m = f->m[i];

		if (m->ready) {
			ferryfs_free(&m->fs);	/* curl's connections close */
			m->ready = false;
		}
		rsource_stop(&m->rs);
		for (int k = 0; k < 300 && m->rs.pairs > 0; k++)
			usleep(50 * 1000);
	}
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out:
	ops_member = NULL;
	for (unsigned i = 0; i < f->n; i++) {
		if (f->m[i]->rs.pairs == 0)
			free(f->m[i]);
	}
	if (f->lis.ctx)
		SSL_CTX_free(f->lis.ctx);
	if (f->lis.fd >= 0)
		close(f->lis.fd);
	json_decref(f->names);
	free(f);
	return rc;
}
