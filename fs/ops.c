/* ferryfs — FUSE low-level operations.
 *
 *   /                 the views of each disk (files.c): NAME.raw,
 *                     NAME.qcow2, NAME.vhd, NAME.fixed.vhd, NAME.pN.raw
 *   /.ferry/          control and state
 *   /.ferry/status.json  state of each disk, a snapshot per open
 *   /.ferry/map.json     each disk's data ranges and the chunks cached,
 *                        a snapshot per open (doc/mount.md; ferry-convert
 *                        polls it)
 *   /.ferry/source.json  the source host and its disks (the exporter's
 *                        GET /v1/info, asked at mount)
 *   /.ferry/control      settings changeable while mounted: reads give
 *                        them, writes of KEY=VALUE lines change them
 *                        (the only writable file; the mount is not "ro"
 *                        for it, and disk files refuse to open for writing)
 *
 * A read of a view is cut into the view's segments (views/view.h): disk
 * ranges wait for the chunks they need (fetch_ensure_v) and are answered
 * from the cache file with fd buffers, so the kernel splices the bytes
 * instead of copying them through this process; metadata is generated into
 * memory and zeros come from one static page. Views never change, so their
 * pages stay in the kernel's cache across opens.
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

#include "common/log.h"
#include "common/util.h"
#include "backends/usedmap.h"
#include "fs/dirbuf.h"
#include "fs/pause.h"
#include "fs/ferryfs.h"

enum {
	INO_ROOT = FUSE_ROOT_ID,
	INO_CTL = 2,		/* .ferry */
	INO_STATUS = 3,		/* .ferry/status.json */
	INO_CONTROL = 4,	/* .ferry/control */
	INO_MAP = 5,		/* .ferry/map.json */
	INO_SOURCE = 6,		/* .ferry/source.json */
	INO_METRICS = 7,	/* .ferry/metrics */
	INO_FILE0 = FERRY_INO_FILE0,	/* fs->files[i] is INO_FILE0 + i */
};

/* Disk files never change size or layout while mounted (a resync that
 * would is refused); their content after a resync is invalidated. */
#define DISK_TIMEOUT 86400.0

struct ferryfs *(*ops_member)(void *userdata, uint64_t ino);

/* The filesystem a request is for, and *@ino made its own: in a fleet
 * mount (fleet.c) an inode number carries its member in the high bits. */
static struct ferryfs *
fs_ino(fuse_req_t req, fuse_ino_t *ino)
{
	struct ferryfs *fs;

	if (!ops_member)
		return fuse_req_userdata(req);
	fs = ops_member(fuse_req_userdata(req), *ino);
	*ino -= fs->ino_base;
	return fs;
}

static struct vfile *
file_of(struct ferryfs *fs, fuse_ino_t ino)
{
	if (ino < INO_FILE0 || ino - INO_FILE0 >= fs->nfiles)
		return NULL;
	return &fs->files[ino - INO_FILE0];
}

const char *
disk_state(struct ferryfs *fs, struct fdisk *d)
{
	bool failing;

	if (d->present_chunks >= d->data_chunks)
		return "complete";
	if (fs->src->health.retrying > 0)
		return "reconnecting";
	pthread_mutex_lock(&d->lock);
	failing = d->failing;
	pthread_mutex_unlock(&d->lock);
	return failing ? "error" : "syncing";
}

/* A text document ended by a newline, or NULL. Takes @root. */
static char *
json_text(json_t *root, size_t flags)
{
	char *text = root ? json_dumps(root, flags) : NULL;

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

/* {"mode": "auto"|"on"|"off", "zstd_now": B, "rate_zstd": R,
 *  "rate_plain": R}: the rates in data bytes/s as measured (0: not yet). */
static json_t *
compress_json(struct ferryfs *fs)
{
	double z = ferry_adapt_rate(&fs->adapt, true);
	double p = ferry_adapt_rate(&fs->adapt, false);

	return json_pack("{sssbsIsI}", "mode",
			 fs->compress_auto ? "auto" : fs->compress ? "on" :
			 "off",
			 "zstd_now", fs->compress && (!fs->compress_auto ||
						     ferry_adapt_best(&fs->adapt)),
			 "rate_zstd", (json_int_t)z,
			 "rate_plain", (json_int_t)p);
}

static json_t *
resync_json(struct ferryfs *fs)
{
	json_t *j;

	pthread_mutex_lock(&fs->resync.lock);
	j = json_pack("{ssso}", "state", fs->resync.state, "error",
		      fs->resync.error[0] ? json_string(fs->resync.error) :
					    json_null());
	pthread_mutex_unlock(&fs->resync.lock);
	return j;
}

/* The data bytes of @d's map now. */
static uint64_t
used_now(struct fdisk *d)
{
	struct layout *l = layout_get(d);
	uint64_t n = l->map.data_bytes;

	layout_put(l);
	return n;
}

char *
status_render(struct ferryfs *fs)
{
	json_t *arr = json_array(), *root, *link, *dj;
	char link_error[256];
	unsigned retrying = fs->src->health.retrying;

	ferry_health_error(fs->src, link_error, sizeof link_error);
	link = json_pack("{sssIsIso}",
			 "state", retrying ? "reconnecting" :
				  fs->src->health.down ? "down" : "ok",
			 "retrying", (json_int_t)retrying,
			 "failures", (json_int_t)fs->src->health.failures,
			 "last_error", link_error[0] ?
				json_string(link_error) : json_null());
	for (size_t i = 0; arr && i < fs->ndisks; i++) {
		struct fdisk *d = &fs->disks[i];
		const char *state = disk_state(fs, d);
		struct layout *l = layout_get(d);
		uint64_t used = l->map.data_bytes;
		/* Read once: data_bytes and its alias bytes_received are one
		 * figure, even while data arrives. */
		uint64_t received = d->received;
		json_t *err, *views = json_array();
		double rate;

		for (size_t k = 0; views && k < fs->nfiles; k++) {
			struct vfile *f = &fs->files[k];
			const struct view *v = layout_view(l, f);

			if (f->d != d)
				continue;
			json_array_append_new(views, json_pack(
				"{sssssIsI}", "name", f->name,
				"format", f->kind,
				"size", (json_int_t)v->size,
				"allocated", (json_int_t)v->allocated));
		}
		layout_put(l);

		pthread_mutex_lock(&d->lock);
		err = d->error[0] ? json_string(d->error) : json_null();
		rate = d->rate;
		pthread_mutex_unlock(&d->lock);
		if (strcmp(state, "reconnecting") == 0) {
			json_decref(err);
			err = json_string(link_error);
		}
		dj = json_pack(
			"{sssIsIsIsIsIsIsssosIsIsIsfsososbsIsbso}",
			"name", d->info.name,
			"size", (json_int_t)d->info.size,
			"allocated", (json_int_t)FERRY_MAX(d->info.allocated,
							   used),
			"used", (json_int_t)used,
			"cached", (json_int_t)d->cached,
			"data_bytes", (json_int_t)received,
			"wire_bytes", (json_int_t)d->wire,
			"state", state,
			"error", err,
			"chunk_size", (json_int_t)d->chunk,
			"chunks", (json_int_t)d->data_chunks,
			"chunks_cached", (json_int_t)d->present_chunks,
			"rate", rate,
			"partition_table", d->ptable[0] ?
				json_string(d->ptable) : json_null(),
			"views", views ? views : json_null(),
			"verify", d->verify,
			"digest_mismatches", (json_int_t)d->mismatches,
			"live", __atomic_load_n(&d->info.live,
						__ATOMIC_RELAXED),
			"resync", json_pack("{sIsIsIsIsIsI}",
				"pending", (json_int_t)d->candidates,
				"kept", (json_int_t)d->kept,
				"changed", (json_int_t)d->changed,
				"grew", (json_int_t)d->grew,
				"shrank", (json_int_t)d->shrank,
				"resyncs", (json_int_t)d->resyncs));
		/* The first format's name of data_bytes, kept. */
		json_object_set_new(dj, "bytes_received",
				    json_integer((json_int_t)received));
		/* Reads answered before their chunks (direct.c), and the
		 * bytes they received, within data_bytes. */
		json_object_set_new(dj, "small_reads",
				    json_integer((json_int_t)d->small_reads));
		json_object_set_new(dj, "small_read_bytes",
				    json_integer((json_int_t)d->small_bytes));
		json_array_append_new(arr, dj);
	}
	root = json_pack("{sssssbsosIsIsIsosososo}", "source", fs->src->id,
			 "cache", fs->cache_dir, "prefetch", fs->prefetch,
			 "compress", compress_json(fs),
			 "streams", (json_int_t)fs->streams,
			 "readahead", (json_int_t)fs->readahead,
			 "bwlimit", (json_int_t)fs->bucket.rate,
			 "link", link,
			 "reverify", json_pack("{sssIsI}",
				"state", fs->reverify.state,
				"checked", (json_int_t)fs->reverify.checked,
				"differed", (json_int_t)fs->reverify.bad),
			 "resync", resync_json(fs),
			 "disks", arr);
	/* Format 1 (doc/mount.md): fields are only ever added. */
	json_object_set_new(root, "version", json_integer(1));
	return json_text(root, JSON_INDENT(2));
}

/* Runs of set bits of @b among its first @n, as [[first, count], ...]. */
static json_t *
bit_runs(const struct ferry_bitmap *b, uint64_t n)
{
	json_t *arr = json_array();

	for (uint64_t i = 0; arr && i < n;) {
		uint64_t j;

		if (!ferry_bitmap_test(b, i)) {
			/* Whole empty bytes at once: most of a cold map. */
			if (i % 8 == 0 && i + 8 <= n &&
			    __atomic_load_n(&b->bytes[i / 8], __ATOMIC_RELAXED)
			    == 0)
				i += 8;
			else
				i++;
			continue;
		}
		for (j = i + 1; j < n && ferry_bitmap_test(b, j); j++)
			;
		json_array_append_new(arr, json_pack("[II]", (json_int_t)i,
						     (json_int_t)(j - i)));
		i = j;
	}
	return arr;
}

char *
map_render(struct ferryfs *fs)
{
	json_t *disks = json_array(), *files = json_array();

	for (size_t i = 0; disks && i < fs->ndisks; i++) {
		struct fdisk *d = &fs->disks[i];
		struct layout *l = layout_get(d);
		json_t *data = json_array();
		char gen[sizeof d->info.generation];
		unsigned seq;

		/* The data ranges and the layout they belong to, from one
		 * layout: a reader that sees "layout" change knows its map
		 * is stale. */
		for (size_t k = 0; data && k < l->map.n; k++)
			json_array_append_new(data, json_pack("[II]",
				(json_int_t)l->map.v[k].off,
				(json_int_t)l->map.v[k].len));
		seq = l->seq;
		layout_put(l);
		pthread_mutex_lock(&d->lock);	/* a resync writes it */
		snprintf(gen, sizeof gen, "%s", d->info.generation);
		pthread_mutex_unlock(&d->lock);
		json_array_append_new(disks, json_pack(
			"{sssIsIsssIsbsoso}", "name", d->info.name,
			"size", (json_int_t)d->info.size,
			"chunk_size", (json_int_t)d->chunk,
			"generation", gen,
			"layout", (json_int_t)seq,
			"complete", d->present_chunks >= d->data_chunks,
			"data", data ? data : json_null(),
			"present", bit_runs(&d->present, d->nchunks)));
	}
	for (size_t k = 0; files && k < fs->nfiles; k++) {
		struct vfile *f = &fs->files[k];
		bool slice = strcmp(f->kind, "raw") == 0 ||
			     strcmp(f->kind, "part") == 0;
		struct layout *l = layout_get(f->d);
		/* As the view took them (a whole disk's slice length). */
		struct view_params p = layout_view(l, f)->p;

		layout_put(l);

		json_array_append_new(files, json_pack(
			"{sssssssIsI}", "name", f->name,
			"disk", f->d->info.name,
			"format", slice ? "raw" : f->kind,
			"offset", (json_int_t)(slice ? p.slice_off : 0),
			"length", (json_int_t)(slice ? p.slice_len :
					       f->d->info.size)));
	}
	return json_text(json_pack("{sIsbsoso}", "version", (json_int_t)1,
				   "prefetch", fs->prefetch, "disks", disks,
				   "files", files),
			 JSON_COMPACT);
}

char *
source_render(struct ferryfs *fs)
{
	json_t *disks;

	if (fs->source_json)
		return json_text(json_loads(fs->source_json, 0, NULL),
				 JSON_INDENT(2));
	/* Not a ferry-export: no host to speak of, the disks as mounted. */
	disks = json_array();
	for (size_t i = 0; disks && i < fs->ndisks; i++) {
		struct fdisk *d = &fs->disks[i];

		/* Without partition views it was not read at mount. */
		if (!(fs->views & VIEWS_PARTS) && !d->ptable[0])
			files_scan_ptable(fs, d);
		json_t *vols = ferry_usedmap_volumes(fs->src);

		json_array_append_new(disks, json_pack("{sssIsIsoso}",
			"name", d->info.name, "size", (json_int_t)d->info.size,
			"used", (json_int_t)used_now(d),
			"partition_table", d->ptable[0] ?
				json_string(d->ptable) : json_null(),
			"volumes", vols ? vols : json_null()));
	}
	return json_text(json_pack("{sssoso}", "source", fs->src->id,
				   "host", json_null(), "disks", disks),
			 JSON_INDENT(2));
}

/* The text file @ino (status.json, map.json, source.json, control),
 * rendered now. */
static char *
text_render(struct ferryfs *fs, fuse_ino_t ino)
{
	return ino == INO_STATUS ? status_render(fs) :
	       ino == INO_MAP ? map_render(fs) :
	       ino == INO_SOURCE ? source_render(fs) :
	       ino == INO_METRICS ? metrics_render(fs) : control_render(fs);
}

/* The size a text file had when it was last rendered: rendered here only
 * the first time. Its files are opened direct_io, so a read is never cut
 * at this size; rendering it for every lookup and getattr cost 108 ms a
 * stat for the map.json of a 4 TiB disk of 200,000 extents. */
static size_t
text_size(struct ferryfs *fs, fuse_ino_t ino)
{
	size_t n = fs->text_size[ino];

	if (n == 0) {
		char *text = text_render(fs, ino);

		n = text ? strlen(text) : 0;
		fs->text_size[ino] = n;
		free(text);
	}
	return n;
}

static bool
is_text(fuse_ino_t ino)
{
	return ino == INO_STATUS || ino == INO_CONTROL || ino == INO_MAP ||
	       ino == INO_SOURCE || ino == INO_METRICS;
}

static int
fill_attr(struct ferryfs *fs, fuse_ino_t ino, struct stat *st)
{
	struct layout *l;
	struct vfile *f;

	memset(st, 0, sizeof *st);
	st->st_ino = fs->ino_base + ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_atime = st->st_mtime = st->st_ctime = fs->mount_time;
	st->st_blksize = 65536;
	switch (ino) {
	case INO_ROOT:
	case INO_CTL:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	case INO_STATUS:
	case INO_MAP:
	case INO_SOURCE:
	case INO_METRICS:
	case INO_CONTROL:
		st->st_mode = S_IFREG | (ino == INO_CONTROL ? 0644 : 0444);
		st->st_nlink = 1;
		st->st_size = (off_t)text_size(fs, ino);
		return 0;
	}
	f = file_of(fs, ino);
	if (!f)
		return -ENOENT;
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	l = layout_get(f->d);
	st->st_size = (off_t)layout_view(l, f)->size;
	/* Allocated size, so du and cp --sparse see the holes. */
	st->st_blocks = (blkcnt_t)((layout_view(l, f)->allocated + 511) / 512);
	layout_put(l);
	return 0;
}

int
ops_attr(struct ferryfs *fs, uint64_t ino, struct stat *st)
{
	return fill_attr(fs, ino, st);
}

static void
ferry_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	struct ferryfs *fs = fs_ino(req, &ino);
	int r = fill_attr(fs, ino, &st);

	(void)fi;
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, ino >= INO_FILE0 ? DISK_TIMEOUT : 0);
}

static void
ferry_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ferryfs *fs = fs_ino(req, &parent);
	struct fuse_entry_param e = { 0 };
	fuse_ino_t ino = 0;

	if (parent == INO_ROOT && strcmp(name, ".ferry") == 0) {
		ino = INO_CTL;
	} else if (parent == INO_CTL && strcmp(name, "status.json") == 0) {
		ino = INO_STATUS;
	} else if (parent == INO_CTL && strcmp(name, "control") == 0) {
		ino = INO_CONTROL;
	} else if (parent == INO_CTL && strcmp(name, "map.json") == 0) {
		ino = INO_MAP;
	} else if (parent == INO_CTL && strcmp(name, "source.json") == 0) {
		ino = INO_SOURCE;
	} else if (parent == INO_CTL && strcmp(name, "metrics") == 0) {
		ino = INO_METRICS;
	} else if (parent == INO_ROOT) {
		for (size_t i = 0; i < fs->nfiles; i++)
			if (strcmp(name, fs->files[i].name) == 0) {
				ino = INO_FILE0 + i;
				break;
			}
	}
	if (!ino) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	e.ino = fs->ino_base + ino;
	fill_attr(fs, ino, &e.attr);
	e.attr_timeout = ino >= INO_FILE0 ? DISK_TIMEOUT : 0;
	e.entry_timeout = DISK_TIMEOUT;	/* names never change */
	fuse_reply_entry(req, &e);
}

void
dirbuf_add(fuse_req_t req, struct dirbuf *b, const char *name, fuse_ino_t ino,
	   mode_t mode)
{
	struct stat st = { .st_ino = ino, .st_mode = mode };
	size_t old = b->size;
	char *p;

	b->size += fuse_add_direntry(req, NULL, 0, name, NULL, 0);
	p = realloc(b->p, b->size);
	if (!p) {
		b->size = old;
		return;
	}
	b->p = p;
	fuse_add_direntry(req, b->p + old, b->size - old, name, &st,
			  (off_t)b->size);
}

void
dirbuf_reply(fuse_req_t req, struct dirbuf *b, size_t size, off_t off)
{
	if ((size_t)off < b->size)
		fuse_reply_buf(req, b->p + off,
			       FERRY_MIN(b->size - (size_t)off, size));
	else
		fuse_reply_buf(req, NULL, 0);
	free(b->p);
	b->p = NULL;
	b->size = 0;
}

static void
ferry_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	      struct fuse_file_info *fi)
{
	struct ferryfs *fs = fs_ino(req, &ino);
	struct dirbuf b = { 0 };

	(void)fi;
	if (ino != INO_ROOT && ino != INO_CTL) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fuse_ino_t base = fs->ino_base;

	dirbuf_add(req, &b, ".", base + ino, S_IFDIR);
	dirbuf_add(req, &b, "..", ino == INO_ROOT && base ? FUSE_ROOT_ID :
		   base + INO_ROOT, S_IFDIR);
	if (ino == INO_ROOT) {
		dirbuf_add(req, &b, ".ferry", base + INO_CTL, S_IFDIR);
		for (size_t i = 0; i < fs->nfiles; i++)
			dirbuf_add(req, &b, fs->files[i].name,
				   base + INO_FILE0 + i, S_IFREG);
	} else {
		dirbuf_add(req, &b, "status.json", base + INO_STATUS, S_IFREG);
		dirbuf_add(req, &b, "control", base + INO_CONTROL, S_IFREG);
		dirbuf_add(req, &b, "map.json", base + INO_MAP, S_IFREG);
		dirbuf_add(req, &b, "source.json", base + INO_SOURCE, S_IFREG);
		dirbuf_add(req, &b, "metrics", base + INO_METRICS, S_IFREG);
	}
	dirbuf_reply(req, &b, size, off);
}

static struct open_file *
of_of(struct fuse_file_info *fi)
{
	return (struct open_file *)(uintptr_t)fi->fh;
}

static void
of_free(struct ferryfs *fs, struct open_file *of)
{
	pthread_mutex_lock(&fs->open_lock);
	if (of->prev)
		of->prev->next = of->next;
	else
		fs->open_files = of->next;
	if (of->next)
		of->next->prev = of->prev;
	pthread_mutex_unlock(&fs->open_lock);
	ra_destroy(&of->ra);
	free(of->text);
	free(of);
}

void
ops_free_open_files(struct ferryfs *fs)
{
	while (fs->open_files)
		of_free(fs, fs->open_files);
}

char *
control_render(struct ferryfs *fs)
{
	char *text;

	if (asprintf(&text, "bwlimit=%" PRIu64 "\n",
		     (uint64_t)fs->bucket.rate) < 0)
		return NULL;
	return text;
}

/* Apply "KEY=VALUE" lines written to .ferry/control. @return 0 or -EINVAL
 * after a log line naming the bad line. */
static int
control_apply(struct ferryfs *fs, const char *buf, size_t len)
{
	while (len > 0) {
		size_t n = 0, k;
		char line[128];
		uint64_t v;

		while (n < len && buf[n] != '\n')
			n++;
		k = FERRY_MIN(n, sizeof line - 1);
		memcpy(line, buf, k);
		line[k] = '\0';
		while (k > 0 && (line[k - 1] == ' ' || line[k - 1] == '\r'))
			line[--k] = '\0';
		if (k == 0) {
			/* empty line */
		} else if (strcmp(line, "resync") == 0) {
			int r = resync_start(fs);

			if (r < 0)
				return r == -ENOTSUP ? -EINVAL : r;
		} else if (strcmp(line, "verify") == 0) {
			int r = verify_start(fs);

			if (r < 0)
				return r == -ENOTSUP ? -EINVAL : r;
		} else if (n < sizeof line && strncmp(line, "bwlimit=", 8) == 0 &&
			   ferry_parse_size(line + 8, &v) == 0) {
			ferry_bucket_set(&fs->bucket, v);
			ferry_info("bandwidth cap now %s",
				   v ? line + 8 : "off");
		} else {
			ferry_error(".ferry/control: cannot apply \"%.*s\" "
				    "(known: bwlimit=RATE, bytes/s with K/M/G "
				    "suffixes, 0 = no cap; verify; resync)", (int)k,
				    line);
			return -EINVAL;
		}
		buf += n + (n < len);
		len -= n + (n < len);
	}
	return 0;
}

static void
ferry_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
	    off_t off, struct fuse_file_info *fi)
{
	struct ferryfs *fs = fs_ino(req, &ino);
	int r;

	(void)off;
	(void)fi;
	if (ino != INO_CONTROL) {
		fuse_reply_err(req, EROFS);
		return;
	}
	r = control_apply(fs, buf, size);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_write(req, size);
}

/* Only .ferry/control takes attribute changes, and ignores them: a shell's
 * "echo bwlimit=1M > control" truncates before it writes. */
static void
ferry_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
	      struct fuse_file_info *fi)
{
	struct stat st;
	struct ferryfs *fs = fs_ino(req, &ino);

	(void)attr;
	(void)to_set;
	(void)fi;
	if (ino != INO_CONTROL) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fill_attr(fs, ino, &st);
	fuse_reply_attr(req, &st, 0);
}

static void
ferry_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ferryfs *fs = fs_ino(req, &ino);
	struct open_file *of;

	if ((fi->flags & O_ACCMODE) != O_RDONLY && ino != INO_CONTROL) {
		fuse_reply_err(req, EROFS);	/* disks are never written */
		return;
	}
	if (!is_text(ino) && !file_of(fs, ino)) {
		fuse_reply_err(req, ino == INO_ROOT || ino == INO_CTL ?
			       EISDIR : ENOENT);
		return;
	}
	of = calloc(1, sizeof *of);
	/* Text files: a snapshot per open, consistent while it is read. */
	if (of && is_text(ino) && !(of->text = text_render(fs, ino))) {
		free(of);
		of = NULL;
	}
	if (!of) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (of->text)
		fs->text_size[ino] = strlen(of->text);
	ra_init(&of->ra);
	pthread_mutex_lock(&fs->open_lock);
	of->next = fs->open_files;
	if (of->next)
		of->next->prev = of;
	fs->open_files = of;
	pthread_mutex_unlock(&fs->open_lock);
	fi->fh = (uint64_t)(uintptr_t)of;
	if (is_text(ino))
		fi->direct_io = 1;
	else
		fi->keep_cache = 1;	/* only a resync changes them, and
					 * it drops their pages itself */
	fuse_reply_open(req, fi);
}

static void
ferry_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	of_free(fs_ino(req, &ino), of_of(fi));
	fuse_reply_err(req, 0);
}

/* Zeros for VIEW_ZERO segments, referenced as often as needed. */
static const uint8_t zero_page[64 << 10];

struct segs {
	struct view_seg *v;
	size_t n, cap;
	struct view_seg small[32];
};

static int
segs_add(struct segs *s, const struct view_seg *seg)
{
	struct view_seg *last = s->n ? &s->v[s->n - 1] : NULL;

	if (last && last->kind == seg->kind &&
	    (seg->kind != VIEW_DISK ||
	     last->disk_off + last->len == seg->disk_off)) {
		last->len += seg->len;
		return 0;
	}
	if (s->n == s->cap) {
		size_t ncap = s->cap * 2;
		struct view_seg *nv = malloc(ncap * sizeof *nv);

		if (!nv)
			return -ENOMEM;
		memcpy(nv, s->v, s->n * sizeof *nv);
		if (s->v != s->small)
			free(s->v);
		s->v = nv;
		s->cap = ncap;
	}
	s->v[s->n++] = *seg;
	return 0;
}

/* Add a disk segment split by the disk's map: its holes become zero
 * segments, answered from memory. Replying with the cache file's holes
 * instead costs more than it seems: the cache's file system allocates a
 * page per hole page and clears it (ext4: a third of ferryfs's CPU on a
 * disk with 30% holes), and those pages then crowd the page cache. */
static int
segs_add_disk(struct segs *s, const struct ferry_extents *map,
	      const struct view_seg *seg)
{
	uint64_t pos = seg->disk_off, end = seg->disk_off + seg->len;
	int r = 0;

	for (size_t i = ferry_extents_find(map, pos); pos < end && r == 0;
	     i++) {
		uint64_t a = i < map->n ? FERRY_MAX(map->v[i].off, pos) : end;
		uint64_t b = i < map->n ? map->v[i].off + map->v[i].len : end;

		a = FERRY_MIN(a, end);
		b = FERRY_MIN(b, end);
		if (a > pos)
			r = segs_add(s, &(struct view_seg){ VIEW_ZERO,
							     a - pos, 0 });
		if (r == 0 && b > a)
			r = segs_add(s, &(struct view_seg){ VIEW_DISK, b - a,
							     a });
		pos = FERRY_MAX(pos, b);
	}
	return r;
}

/* Answer a read of [off, off+size) of @f (inside the file): fetch the disk
 * ranges it maps to, then reply with fd buffers on the cache file for them,
 * generated metadata and zeros. @l is @f's layout, taken after epoch
 * @epoch of its disk was read. @return 0 (replied), 1 (a resync came
 * between: not replied, to be read again on its layout) or -errno (not
 * replied). */
static int
read_view(fuse_req_t req, struct ferryfs *fs, struct vfile *f,
	  const struct layout *l, unsigned epoch, uint64_t off, size_t size,
	  struct fetch_ra *ra)
{
	const struct view *v = layout_view(l, f);
	struct segs s = { .v = s.small, .cap = 32 };
	struct ferry_extent *disk = NULL;
	struct fuse_bufvec *bv = NULL;
	uint8_t *meta = NULL, *direct = NULL;
	size_t ndisk = 0, nbufs = 0, meta_len = 0, dpos = 0;
	uint64_t dend = 0;	/* where its last disk segment ends */
	int r = 0;

	for (uint64_t pos = off; pos < off + size && r == 0;) {
		struct view_seg seg;

		view_map(v, pos, off + size - pos, &seg);
		r = seg.kind == VIEW_DISK ? segs_add_disk(&s, &l->map, &seg)
					  : segs_add(&s, &seg);
		if (seg.kind == VIEW_DISK)
			dend = seg.disk_off + seg.len;
		pos += seg.len;
	}
	for (size_t i = 0; i < s.n && r == 0; i++) {
		if (s.v[i].kind == VIEW_DISK)
			ndisk++;
		if (s.v[i].kind == VIEW_META)
			meta_len += s.v[i].len;
		nbufs += s.v[i].kind == VIEW_ZERO ?
			 (s.v[i].len + sizeof zero_page - 1) / sizeof zero_page
			 : 1;
	}
	if (r == 0 && !ndisk && dend && ra)
		ra_note(ra, dend);	/* a reader going through holes */
	if (r == 0 && ndisk) {
		disk = malloc(ndisk * sizeof *disk);
		ndisk = 0;
		for (size_t i = 0; disk && i < s.n; i++)
			if (s.v[i].kind == VIEW_DISK)
				disk[ndisk++] = (struct ferry_extent){
					s.v[i].disk_off, s.v[i].len };
		r = !disk ? -ENOMEM : fs->nocache ? 0 :
		    fetch_direct(fs, f->d, &l->map, disk, ndisk, ra, &direct);
		if (r == 0 && !direct && !fs->nocache)
			r = fetch_ensure_v(fs, f->d, &l->map, disk, ndisk, ra);
		r = r > 0 ? 0 : r;
	}
	if (r == 0 && fs->nocache) {
		/* -o cache=none: the disk's bytes straight from the local
		 * source, into memory. */
		uint64_t total = 0;

		for (size_t i = 0; i < ndisk; i++)
			total += disk[i].len;
		meta_len += total;
	}
	if (r == 0) {
		bv = malloc(sizeof *bv + nbufs * sizeof bv->buf[0]);
		meta = meta_len ? malloc(meta_len) : NULL;
		if (!bv || (meta_len && !meta))
			r = -ENOMEM;
	}
	if (r == 0) {
		uint64_t pos = off;
		size_t k = 0, m = 0;

		*bv = (struct fuse_bufvec)FUSE_BUFVEC_INIT(0);
		for (size_t i = 0; i < s.n && r == 0; i++) {
			const struct view_seg *g = &s.v[i];

			for (uint64_t done = 0; done < g->len && r == 0;) {
				struct fuse_buf *b = &bv->buf[k++];
				uint64_t n = g->len - done;

				memset(b, 0, sizeof *b);
				if (g->kind == VIEW_DISK && fs->nocache) {
					r = fs->src->ops->pread(fs->src,
						f->d->idx, meta + m, n,
						g->disk_off);
					if (r < 0)
						break;
					b->mem = meta + m;
					m += n;
				} else if (g->kind == VIEW_DISK && direct) {
					b->mem = direct + dpos;	/* direct.c */
					dpos += n;
				} else if (g->kind == VIEW_DISK) {
					b->flags = FUSE_BUF_IS_FD |
						   FUSE_BUF_FD_SEEK;
					b->fd = f->d->data_fd;
					b->pos = (off_t)g->disk_off;
				} else if (g->kind == VIEW_META) {
					v->ops->meta(v, pos, meta + m, n);
					b->mem = meta + m;
					m += n;
				} else {
					n = FERRY_MIN(n, sizeof zero_page);
					b->mem = (void *)zero_page;
				}
				b->size = n;
				done += n;
				pos += n;
			}
		}
		bv->count = k;
	}
	if (r == 0 && ndisk && !direct && !fs->nocache) {
		/* Spliced from the cache file: its chunks must be the ones
		 * ensured, of this epoch, until the kernel has the bytes. */
		pthread_rwlock_rdlock(&f->d->reply_lock);
		if (f->d->epoch != epoch) {
			r = 1;
		} else {
			pause_at("reply", disk[0].off / f->d->chunk, 1,
				 &fs->stop);
			fuse_reply_data(req, bv, 0);
		}
		pthread_rwlock_unlock(&f->d->reply_lock);
	} else if (r == 0) {
		fuse_reply_data(req, bv, 0);
	}
	if (s.v != s.small)
		free(s.v);
	free(disk);
	free(bv);
	free(meta);
	free(direct);
	return r;
}

static void
ferry_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	   struct fuse_file_info *fi)
{
	struct ferryfs *fs = fs_ino(req, &ino);
	struct layout *l;
	struct vfile *f;
	uint64_t vsize;
	int r;

	if (is_text(ino)) {
		const char *text = of_of(fi)->text;
		size_t n = strlen(text), len;
		char *copy;

		if ((size_t)off >= n) {
			fuse_reply_buf(req, NULL, 0);
			return;
		}
		/* Reply from our own copy: once the kernel has the reply,
		 * the reader may close and RELEASE may free the snapshot on
		 * another thread while this one is still returning from
		 * writev (ASan checks the buffer after the call). */
		len = FERRY_MIN(n - (size_t)off, size);
		copy = malloc(len);
		if (!copy) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		memcpy(copy, text + off, len);
		fuse_reply_buf(req, copy, len);
		free(copy);
		return;
	}
	f = file_of(fs, ino);
	if (!f) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	/* One layout for the whole read, however long it waits; again on
	 * the new one if a resync demoted its chunks before the reply. */
	do {
		unsigned epoch = f->d->epoch;

		l = layout_get(f->d);
		vsize = layout_view(l, f)->size;
		if (off < 0 || (uint64_t)off >= vsize) {
			layout_put(l);
			fuse_reply_buf(req, NULL, 0);
			return;
		}
		r = read_view(req, fs, f, l, epoch, (uint64_t)off,
			      (size_t)FERRY_MIN((uint64_t)size,
						vsize - (uint64_t)off),
			      &of_of(fi)->ra);
		layout_put(l);
	} while (r == 1 && !fs->stop);
	if (r == 1)
		r = -ECANCELED;		/* unmounting */
	if (r < 0)
		fuse_reply_err(req, r == -ECANCELED || r == -ENOMEM ? -r : EIO);
}

/* SEEK_DATA / SEEK_HOLE, so tools that look for holes (cp --sparse,
 * qemu-img's block status on a raw file) skip them instead of reading
 * zeros. No fetch: the answer comes from the map. */
static void
ferry_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
	    struct fuse_file_info *fi)
{
	struct ferryfs *fs = fs_ino(req, &ino);
	struct vfile *f = file_of(fs, ino);
	struct layout *l;
	int64_t r;

	(void)fi;
	if (!f) {
		fuse_reply_err(req, is_text(ino) ? EOPNOTSUPP : ENOENT);
		return;
	}
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	l = layout_get(f->d);
	if (off < 0 || (uint64_t)off >= layout_view(l, f)->size)
		r = -ENXIO;
	else
		r = view_seek(layout_view(l, f), (uint64_t)off,
			      whence == SEEK_DATA);
	layout_put(l);
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_lseek(req, (off_t)r);
}

static void
ferry_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct ferryfs *fs = fs_ino(req, &ino);
	struct statvfs sv = { .f_bsize = 4096, .f_frsize = 4096,
			      .f_namemax = 255 };

	(void)ino;
	for (size_t i = 0; i < fs->ndisks; i++)
		sv.f_blocks += (used_now(&fs->disks[i]) + 4095) / 4096;
	sv.f_files = fs->nfiles + 3;
	fuse_reply_statfs(req, &sv);
}

static void
ferry_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Let cached reads be spliced from the cache file. */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	conn->max_readahead = conn->max_readahead ? conn->max_readahead :
			      1u << 20;
}

const struct fuse_lowlevel_ops ferryfs_ops = {
	.init = ferry_init,
	.lookup = ferry_lookup,
	.getattr = ferry_getattr,
	.readdir = ferry_readdir,
	.open = ferry_open,
	.release = ferry_release,
	.read = ferry_read,
	.write = ferry_write,
	.setattr = ferry_setattr,
	.statfs = ferry_statfs,
	.lseek = ferry_lseek,
};
