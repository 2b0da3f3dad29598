/* ferryfs — mount the disks of a ferry-export (or one HTTPS image) as
 * lazily fetched, persistently cached, read-only files. */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include <openssl/evp.h>

#include "common/chunk.h"
#include "common/log.h"
#include "common/util.h"
#include "backends/usedmap.h"
#include "fs/ferryfs.h"
#include "fs/pause.h"
#include "fs/fleet.h"

struct options {
	char *source;
	char *chunk;
	char *cache;
	char *cacert;
	char *format;
	char *views;
	char *qcow2_cluster;
	char *readahead;
	char *smallread;
	char *bwlimit;
	char *timeout;
	char *stall_timeout;
	int prefetch;
	char *compress;
	int verify;
	unsigned streams;
	int verbose;
	int all_blocks;
	/* ferryfs --listen: a fleet of sources that dial in (fleet.c) */
	char *listen;
	char *cert;
	char *key;
	char *url_file;
	char *advertise;
};

enum { KEY_VIEWS = 1, KEY_VIEW_WORD };

#define FERRY_OPT(t, p, v) { t, offsetof(struct options, p), v }

static const struct fuse_opt ferry_opts[] = {
	FERRY_OPT("chunk=%s", chunk, 0),
	FERRY_OPT("cache=%s", cache, 0),
	FERRY_OPT("cacert=%s", cacert, 0),
	FERRY_OPT("format=%s", format, 0),
	/* -o views=raw,qcow2: FUSE splits options at commas, so the words
	 * after the first arrive as options of their own. */
	FUSE_OPT_KEY("views=", KEY_VIEWS),
	FUSE_OPT_KEY("raw", KEY_VIEW_WORD),
	FUSE_OPT_KEY("qcow2", KEY_VIEW_WORD),
	FUSE_OPT_KEY("vhd", KEY_VIEW_WORD),
	FUSE_OPT_KEY("fixedvhd", KEY_VIEW_WORD),
	FUSE_OPT_KEY("parts", KEY_VIEW_WORD),
	FERRY_OPT("qcow2_cluster=%s", qcow2_cluster, 0),
	FERRY_OPT("prefetch=%d", prefetch, 0),
	FERRY_OPT("streams=%u", streams, 0),
	FERRY_OPT("readahead=%s", readahead, 0),
	FERRY_OPT("smallread=%s", smallread, 0),
	FERRY_OPT("bwlimit=%s", bwlimit, 0),
	FERRY_OPT("compress=%s", compress, 0),
	FERRY_OPT("verify=%d", verify, 0),
	FERRY_OPT("timeout=%s", timeout, 0),
	FERRY_OPT("stall_timeout=%s", stall_timeout, 0),
	FERRY_OPT("all_blocks", all_blocks, 1),
	FERRY_OPT("verbose", verbose, 1),
	FERRY_OPT("--listen=%s", listen, 0),
	FERRY_OPT("--listen %s", listen, 0),
	FERRY_OPT("listen=%s", listen, 0),
	FERRY_OPT("--cert=%s", cert, 0),
	FERRY_OPT("--cert %s", cert, 0),
	FERRY_OPT("--key=%s", key, 0),
	FERRY_OPT("--key %s", key, 0),
	FERRY_OPT("--url-file=%s", url_file, 0),
	FERRY_OPT("--url-file %s", url_file, 0),
	FERRY_OPT("--advertise=%s", advertise, 0),
	FERRY_OPT("--advertise %s", advertise, 0),
	FUSE_OPT_END
};

static void
usage(const char *prog)
{
	printf(
"Usage: %s [-f] [-o OPTIONS] SOURCE MOUNTPOINT\n"
"       %s [-f] [-o OPTIONS] --listen HOST:PORT MOUNTPOINT\n"
"Mount the disks of a ferry-export as read-only files fetched on demand.\n"
"\n"
"With --listen, sources dial in instead (a fleet): ferryfs listens on\n"
"HOST:PORT and prints the command to run on each source server,\n"
"  ferry-export --connect 'ferry://TOKEN@HOST:PORT/?pin=sha256//...' ...\n"
"Each source that connects appears as a directory named after it\n"
"(MOUNTPOINT/web01/disk0.raw, ...) with its own .ferry/; MOUNTPOINT/.ferry/\n"
"status.json lists every source and its state. The key, certificate and\n"
"token are kept in the cache directory, so a restarted ferryfs keeps its\n"
"pin and token and the sources reconnect by themselves.\n"
"  --listen HOST:PORT   address to listen on (port 0: a free one)\n"
"  --cert FILE --key FILE  PEM certificate and key to use (default: made\n"
"                       once, kept in the cache directory)\n"
"  --url-file FILE      also write the connection string to FILE (0600)\n"
"  --advertise HOST[:PORT]  the address sources dial, in the printed\n"
"                       string (default: the listen address, or this\n"
"                       host's name if that is a wildcard)\n"
"\n"
"SOURCE is a connection string printed by ferry-export\n"
"  (ferry://TOKEN@HOST:PORT/?pin=sha256//BASE64), an https:// URL of one\n"
"  image on a server that supports Range requests, or file:///PATH of a\n"
"  local image (raw, qcow2, VHD, VMDK) or block device.\n"
"\n"
"The mount shows, per disk, files that are images of it: NAME.raw,\n"
"NAME.qcow2 (qcow2 v3, only allocated clusters), NAME.vhd (dynamic VHD),\n"
"NAME.fixed.vhd (raw + VHD footer) and NAME.pN.raw for each partition of\n"
"an MBR or GPT table; and .ferry/status.json. All read through one cache.\n"
"Writing \"resync\" to .ferry/control follows a source that changed (a\n"
"running server): its new map is taken, changed chunks are fetched again\n"
"(only their changed 64 KiB blocks), and the views are laid out afresh.\n"
"\n"
"ferryfs options:\n"
"  -o chunk=SIZE        fetch and cache unit (default 1M; K/M/G suffixes,\n"
"                       a multiple of 4K)\n"
"  -o cache=DIR         persistent cache (default /var/cache/ferry/ID as\n"
"                       root, else ~/.cache/ferry/ID; ID from the source);\n"
"                       none: a file:// source is read directly, uncached\n"
"  -o prefetch=0|1      background hydration of every allocated chunk\n"
"                       (default 1)\n"
"  -o streams=N         connections for readers, and as many for background\n"
"                       hydration, which pauses while readers wait\n"
"                       (default 2)\n"
"  -o readahead=SIZE    largest window fetched ahead of a sequential reader;\n"
"                       it starts at 4 chunks and doubles while the reader\n"
"                       keeps on (default 64M; 0 = none)\n"
"  -o smallread=SIZE    a read of up to SIZE that is not sequential and needs\n"
"                       a chunk not cached fetches just its 4 KiB blocks\n"
"                       (checked against their digests) instead of waiting\n"
"                       for the chunk; it caches nothing (default 256K;\n"
"                       0 = always whole chunks)\n"
"  -o bwlimit=RATE      cap on bytes per second received, all streams\n"
"                       together (K/M/G suffixes; default none); change it\n"
"                       while mounted by writing bwlimit=RATE to\n"
"                       .ferry/control\n"
"  -o compress=0|1|auto ask the exporter for zstd-compressed data: never,\n"
"                       always, or where it gives the higher data rate,\n"
"                       measured as the transfer goes (default auto)\n"
"  -o verify=0|1        check every chunk against the source's digest\n"
"                       (XXH3-128) before caching it, when the source\n"
"                       serves digests (ferry-export does; default 1)\n"
"  -o timeout=SECS      a read that fails for a reason a new connection\n"
"                       may cure (reset, refused, stalled, truncated,\n"
"                       exporter restarting) is retried with backoff for\n"
"                       this long after its last progress before readers\n"
"                       get EIO (default 300; s/m/h suffixes; 0 = forever)\n"
"  -o stall_timeout=SECS  no byte for this long on a transfer counts as\n"
"                       a failure (default 30)\n"
"  -o views=LIST        files to show, comma-separated from raw, qcow2, vhd,\n"
"                       fixedvhd, parts (default: all)\n"
"  -o qcow2_cluster=SIZE  cluster size of NAME.qcow2, a power of 2 from\n"
"                       512 to 2M (default 64K)\n"
"  -o cacert=FILE       PEM CA certificates to verify an https:// SOURCE\n"
"  -o format=FMT        a file:// SOURCE's format: auto (by content, the\n"
"                       default), raw, qcow2, vhd or vmdk\n"
"  -o all_blocks        a file:// SOURCE's every block as it is; by default\n"
"                       the free space of its filesystems reads as zeros\n"
"                       and is not cached, as ferry-export serves it\n"
"  -o verbose           log more\n"
"\n"
"In /etc/fstab (type fuse.ferryfs, with ferryfs in /usr/sbin or\n"
"/usr/local/sbin; or type fuse and mount.fuse3's PROGRAM#SOURCE form for\n"
"one elsewhere). The options fstab and systemd add, _netdev, nofail,\n"
"noauto, user, x-systemd.*, comment=, rw, are accepted and dropped:\n"
"  ferry://TOKEN@HOST:PORT/?pin=sha256//... /mnt/src fuse.ferryfs \\\n"
"      _netdev,nofail,cache=/var/cache/ferry/src 0 0\n"
"  /opt/ferry/ferryfs#ferry://TOKEN@HOST:PORT/?pin=sha256//... /mnt/src \\\n"
"      fuse _netdev,nofail,cache=/var/cache/ferry/src 0 0\n"
"\n", prog, prog);
}

static bool
fstab_word(const char *arg)
{
	static const char *const words[] = {
		"_netdev", "nofail", "auto", "noauto", "user", "nouser",
		"users", "owner", "group", "defaults", "rw", "nobootwait",
	};

	for (size_t i = 0; i < sizeof words / sizeof *words; i++)
		if (strcmp(arg, words[i]) == 0)
			return true;
	return strncmp(arg, "x-", 2) == 0 || strncmp(arg, "comment=", 8) == 0;
}

static int
opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct options *o = data;

	(void)outargs;
	if (key == KEY_VIEWS || key == KEY_VIEW_WORD) {
		const char *word = key == KEY_VIEWS ? arg + 6 : arg;
		size_t n = o->views && key == KEY_VIEW_WORD ?
			   strlen(o->views) : 0;
		char *v = realloc(n ? o->views : NULL, n + strlen(word) + 2);

		if (!v)
			return -1;
		if (!n)
			free(o->views);
		sprintf(v + n, "%s%s", n ? "," : "", word);
		o->views = v;
		return 0;
	}
	if (key == FUSE_OPT_KEY_NONOPT && !o->source) {
		o->source = strdup(arg);
		return 0;
	}
	/* What /etc/fstab and systemd add, meaningless to a FUSE mount, as
	 * sshfs takes them: accepted and dropped. (mount.fuse3 drops most of
	 * them already; ferryfs run by hand with an fstab line's options
	 * gets them all.) "rw" is dropped too: the mount is read-only. */
	if (key == FUSE_OPT_KEY_OPT && fstab_word(arg))
		return 0;
	return 1;
}

int
ferryfs_mkdir_p(const char *path)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof buf, "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int
default_cache_dir(struct ferryfs *fs, char *out, size_t len)
{
	unsigned char md[32];
	char id[65];
	const char *home = getenv("HOME"), *xdg = getenv("XDG_CACHE_HOME");

	EVP_Digest(fs->src->id, strlen(fs->src->id), md, NULL, EVP_sha256(),
		   NULL);
	ferry_hex(md, 8, id);
	if (geteuid() == 0)
		snprintf(out, len, "/var/cache/ferry/%s", id);
	else if (xdg && xdg[0] == '/')
		snprintf(out, len, "%s/ferry/%s", xdg, id);
	else if (home && home[0] == '/')
		snprintf(out, len, "%s/.cache/ferry/%s", home, id);
	else
		return -ENOENT;
	return 0;
}

/* file:///path/to/image: a local image as one disk named after the file. */
static int
open_local(const char *spec, const char *format, bool all_blocks,
	   struct ferry_source **out)
{
	const char *path = spec + strlen("file://"), *base;
	char name[FERRY_NAME_MAX + 1];
	size_t n = 0;
	int r;

	base = strrchr(path, '/');
	base = base ? base + 1 : path;
	for (const char *c = base; *c && n < FERRY_NAME_MAX; c++)
		name[n++] = ferry_valid_disk_name((char[]){ *c, 0 }) ||
			    *c == '.' ? *c : '_';
	name[n] = '\0';
	if (n > 4 && strrchr(name, '.') && strrchr(name, '.') != name)
		*strrchr(name, '.') = '\0';
	if (!ferry_valid_disk_name(name))
		snprintf(name, sizeof name, "disk");
	r = ferry_image_open(name, path, format, out);
	if (r < 0 || all_blocks)
		return r;
	r = ferry_usedmap_wrap(out, path);
	if (r < 0) {
		ferry_error("%s: filesystem maps: %s", path, strerror(-r));
		ferry_source_close(*out);
	}
	return r;
}

static int
setup_disks(struct ferryfs *fs)
{
	fs->ndisks = fs->src->ndisks;
	fs->disks = calloc(fs->ndisks, sizeof *fs->disks);
	if (!fs->disks)
		return -ENOMEM;
	for (size_t i = 0; i < fs->ndisks; i++) {
		struct fdisk *d = &fs->disks[i];
		struct ferry_extents m;
		int r;

		d->idx = (unsigned)i;
		d->info = fs->src->disks[i];
		d->chunk = fs->chunk;
		d->verify = fs->verify && d->info.digests;
		d->nchunks = ferry_chunk_count(d->info.size, d->chunk);
		d->data_fd = d->map_fd = -1;
		pthread_mutex_init(&d->lock, NULL);
		pthread_mutex_init(&d->lay_lock, NULL);
		{
			pthread_rwlockattr_t a;

			pthread_rwlockattr_init(&a);
			pthread_rwlockattr_setkind_np(&a,
				PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
			pthread_rwlock_init(&d->reply_lock, &a);
			pthread_rwlockattr_destroy(&a);
		}
		ferry_extents_init(&m, d->info.size);
		r = fs->src->ops->extents(fs->src, d->idx, &m);
		if (r == 0)	/* the views come with the files */
			r = layout_new(fs, d, &m, &d->lay);
		ferry_extents_free(&m);
		if (r < 0)
			return r;
		if (ferry_bitmap_init(&d->present, d->nchunks) < 0 ||
		    ferry_bitmap_init(&d->busy, d->nchunks) < 0 ||
		    ferry_bitmap_init(&d->candidate, d->nchunks) < 0)
			return -ENOMEM;
		for (uint64_t c = 0; c < d->nchunks; c++)
			if (fetch_chunk_has_data(d, c))
				d->data_chunks++;
		if (fs->nocache) {
			/* Every chunk is as good as cached: it is local. */
			for (uint64_t c = 0; c < d->nchunks; c++)
				if (fetch_chunk_has_data(d, c))
					ferry_bitmap_set(&d->present, c);
			d->present_chunks = d->data_chunks;
			d->cached = disk_map(d)->data_bytes;
			continue;
		}
		r = cache_open(fs, d);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Once a second: make newly fetched chunks durable in the presence map,
 * and sample the receive rate for status.json. */
static void *
flusher_main(void *arg)
{
	struct ferryfs *fs = arg;

	pthread_mutex_lock(&fs->flush_lock);
	while (!fs->stop) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&fs->flush_cond, &fs->flush_lock, &ts);
		pthread_mutex_unlock(&fs->flush_lock);
		for (size_t i = 0; i < fs->ndisks; i++) {
			struct fdisk *d = &fs->disks[i];
			double now = ferry_now();
			uint64_t got = d->received;
			char gen[sizeof d->info.generation];
			int r = cache_flush(d);

			/* The last kept chunk checked: the cache is of the
			 * disk's new generation. */
			if (r == 0 && fetch_restamp_due(fs, d, gen, sizeof gen)) {
				pause_at("restamp", 0, 0, &fs->stop);
				r = cache_restamp(fs, d, gen);
				if (r < 0)
					d->restamp = true;
			}

			pthread_mutex_lock(&d->lock);
			if (r < 0) {
				snprintf(d->error, sizeof d->error, "%s",
					 ferry_last_error());
				d->failing = true;
			}
			if (d->rate_time > 0 && now > d->rate_time)
				d->rate = (double)(got - d->rate_bytes) /
					  (now - d->rate_time);
			d->rate_bytes = got;
			d->rate_time = now;
			pthread_mutex_unlock(&d->lock);
		}
		pthread_mutex_lock(&fs->flush_lock);
	}
	pthread_mutex_unlock(&fs->flush_lock);
	return NULL;
}

/* Check the -o options and set what they say in @fs and @hopts; a bad one
 * is logged. @return 0 or -EINVAL. */
static int
check_options(const struct options *o, struct ferryfs *fs,
	      struct ferry_http_opts *hopts)
{
	uint64_t bwlimit = 0;

	fs->chunk = 1u << 20;
	fs->readahead = 64u << 20;
	fs->smallread = 256u << 10;
	if (o->chunk && (ferry_parse_size(o->chunk, &fs->chunk) < 0 ||
			fs->chunk < 4096 || fs->chunk > (1u << 30) ||
			fs->chunk % 4096)) {
		ferry_error("-o chunk=%s: a size from 4K to 1G, a multiple of "
			    "4K", o->chunk);
		return -EINVAL;
	}
	if (o->streams < 1 || o->streams > 64) {
		ferry_error("-o streams=%u: 1 to 64", o->streams);
		return -EINVAL;
	}
	if (o->readahead && (ferry_parse_size(o->readahead, &fs->readahead) < 0 ||
			    fs->readahead > (4ull << 30))) {
		ferry_error("-o readahead=%s: a size up to 4G (0 = none)",
			    o->readahead);
		return -EINVAL;
	}
	if (o->smallread && (ferry_parse_size(o->smallread, &fs->smallread) < 0 ||
			    fs->smallread > (16u << 20))) {
		ferry_error("-o smallread=%s: a size up to 16M (0 = none)",
			    o->smallread);
		return -EINVAL;
	}
	if (o->bwlimit && ferry_parse_size(o->bwlimit, &bwlimit) < 0) {
		ferry_error("-o bwlimit=%s: bytes per second, with K/M/G "
			    "suffixes (0 = no cap)", o->bwlimit);
		return -EINVAL;
	}
	hopts->timeout = FERRY_HTTP_TIMEOUT;
	hopts->stall_timeout = FERRY_HTTP_STALL;
	if (o->timeout && ferry_parse_duration(o->timeout, &hopts->timeout) < 0) {
		ferry_error("-o timeout=%s: seconds (s/m/h suffixes; 0 = "
			    "forever)", o->timeout);
		return -EINVAL;
	}
	if (o->stall_timeout) {
		double st;

		if (ferry_parse_duration(o->stall_timeout, &st) < 0 ||
		    st < 1 || st > 86400) {
			ferry_error("-o stall_timeout=%s: 1 s to 24 h",
				    o->stall_timeout);
			return -EINVAL;
		}
		hopts->stall_timeout = (unsigned)st;
	}
	fs->views = VIEWS_ALL;
	if (o->views) {
		char why[160];
		int bits = files_parse_views(o->views, why, sizeof why);

		if (bits < 0) {
			ferry_error("-o views=%s: %s", o->views, why);
			return -EINVAL;
		}
		fs->views = (unsigned)bits;
	}
	fs->qcow2_cluster_bits = 16;
	if (o->qcow2_cluster) {
		uint64_t cs;

		if (ferry_parse_size(o->qcow2_cluster, &cs) < 0 || cs < 512 ||
		    cs > (2u << 20) || (cs & (cs - 1))) {
			ferry_error("-o qcow2_cluster=%s: a power of 2 from "
				    "512 to 2M", o->qcow2_cluster);
			return -EINVAL;
		}
		fs->qcow2_cluster_bits = (unsigned)__builtin_ctzll(cs);
	}
	if (!o->compress || strcmp(o->compress, "auto") == 0) {
		fs->compress = fs->compress_auto = true;
	} else if (strcmp(o->compress, "0") == 0 ||
		   strcmp(o->compress, "1") == 0) {
		fs->compress = o->compress[0] == '1';
	} else {
		ferry_error("-o compress=%s: 0, 1 or auto", o->compress);
		return -EINVAL;
	}
	fs->prefetch = o->prefetch != 0;
	fs->verify = o->verify != 0;
	fs->streams = o->streams;
	ferry_bucket_init(&fs->bucket, bwlimit);
	return 0;
}

int
ferryfs_open_disks(struct ferryfs *fs)
{
	char real[PATH_MAX];
	int r = ferryfs_mkdir_p(fs->cache_dir);

	if (r < 0) {
		errno = -r;
		ferry_error("cache %s: %m", fs->cache_dir);
		return -EINVAL;
	}
	/* fuse_daemonize() moves to /: keep the cache path whole. */
	if (!realpath(fs->cache_dir, real)) {
		ferry_error("cache %s: %m", fs->cache_dir);
		return -EINVAL;
	}
	snprintf(fs->cache_dir, sizeof fs->cache_dir, "%s", real);
	if (cache_lock_dir(fs) < 0 || setup_disks(fs) < 0)
		return -EIO;
	return 0;
}

/* The cache directory (-o cache=, none, or the default), locked, and the
 * disks set up in it. @return 0 or -errno, logged. */
static int
open_cache(struct ferryfs *fs, const struct options *o)
{
	fs->nocache = o->cache && strcmp(o->cache, "none") == 0;
	if (fs->nocache && strncmp(o->source, "file://", 7) != 0) {
		ferry_error("-o cache=none is for file:// sources (a remote "
			    "disk is read through its cache)");
		return -EINVAL;
	}
	if (fs->nocache) {
		/* Reads go straight to the local source: nothing to fetch,
		 * nothing to keep. */
		snprintf(fs->cache_dir, sizeof fs->cache_dir, "none");
		fs->prefetch = false;
		return setup_disks(fs) < 0 ? -EIO : 0;
	}
	if (o->cache) {
		snprintf(fs->cache_dir, sizeof fs->cache_dir, "%s", o->cache);
	} else if (default_cache_dir(fs, fs->cache_dir,
				     sizeof fs->cache_dir) < 0) {
		ferry_error("no HOME for the default cache; give -o cache=DIR");
		return -EINVAL;
	}
	return ferryfs_open_disks(fs);
}

void
ferryfs_init(struct ferryfs *fs)
{
	fs->lock_fd = -1;
	fs->mount_time = time(NULL);
	ferry_adapt_init(&fs->adapt);
	pthread_mutex_init(&fs->flush_lock, NULL);
	pthread_mutex_init(&fs->open_lock, NULL);
	pthread_mutex_init(&fs->reverify.lock, NULL);
	fs->reverify.state = "idle";
	pthread_mutex_init(&fs->resync.lock, NULL);
	fs->resync.state = "idle";
	pthread_cond_init(&fs->flush_cond, NULL);
}

int
ferryfs_start(struct ferryfs *fs)
{
	if (fetch_start(fs) < 0)
		return -EIO;
	/* The files, before the first request is served: partition views
	 * need each disk's first chunk. */
	if (files_setup(fs) < 0) {
		ferry_error("out of memory setting up the views");
		return -ENOMEM;
	}
	/* .ferry/source.json: what the exporter says of its host, asked
	 * once (an older exporter without it: the mount's own facts). */
	if (fs->src->ops->info && fs->src->ops->info(fs->src,
						     &fs->source_json) < 0)
		fs->source_json = NULL;
	if (pthread_create(&fs->flusher, NULL, flusher_main, fs) == 0)
		fs->flusher_started = true;
	return 0;
}

void
ferryfs_stop(struct ferryfs *fs)
{
	fs->stop = true;	/* a re-verify stops between chunks */
	verify_stop(fs);
	resync_stop(fs);
	fetch_stop(fs);
	pthread_mutex_lock(&fs->flush_lock);
	fs->stop = true;
	pthread_cond_broadcast(&fs->flush_cond);
	pthread_mutex_unlock(&fs->flush_lock);
	if (fs->flusher_started)
		pthread_join(fs->flusher, NULL);
	fs->flusher_started = false;
	for (size_t i = 0; i < fs->ndisks; i++)
		cache_flush(&fs->disks[i]);
}

void
ferryfs_free(struct ferryfs *fs)
{
	ops_free_open_files(fs);
	files_free(fs);
	for (size_t i = 0; i < fs->ndisks; i++) {
		cache_close(&fs->disks[i]);
		layout_put(fs->disks[i].lay);
		ferry_bitmap_free(&fs->disks[i].present);
		ferry_bitmap_free(&fs->disks[i].busy);
		ferry_bitmap_free(&fs->disks[i].candidate);
	}
	free(fs->disks);
	fs->disks = NULL;
	fs->ndisks = 0;
	if (fs->lock_fd >= 0)
		close(fs->lock_fd);
	fs->lock_fd = -1;
	if (fs->src)
		ferry_source_close(fs->src);
	fs->src = NULL;
	ferry_bucket_destroy(&fs->bucket);
	free(fs->source_json);
	fs->source_json = NULL;
}

/* Serve requests until unmounted. @return fuse's result. */
int
ferryfs_loop(struct fuse_session *se, const struct fuse_cmdline_opts *cmd)
{
	struct fuse_loop_config *cfg;
	int r;

	if (cmd->singlethread)
		return fuse_session_loop(se);
	cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(cfg, cmd->clone_fd);
	if (cmd->max_idle_threads != UINT_MAX)
		fuse_loop_cfg_set_idle_threads(cfg, cmd->max_idle_threads);
	/* Readers block while their chunks arrive: allow plenty. */
	fuse_loop_cfg_set_max_threads(cfg, FERRY_MAX(cmd->max_threads, 64u));
	r = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return r;
}

int
main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options o = { .prefetch = 1, .verify = 1,
			     .streams = 2 };
	struct fuse_cmdline_opts cmd = { 0 };
	struct ferryfs fs = { .lock_fd = -1 };
	struct ferry_http_opts hopts = { 0 };
	struct fuse_session *se = NULL;
	int rc = 1, r;

	ferry_log_init(argv[0]);
	if (fuse_opt_parse(&args, &o, ferry_opts, opt_proc) < 0 ||
	    fuse_parse_cmdline(&args, &cmd) < 0)
		return 2;
	if (cmd.show_help) {
		usage(argv[0]);
		fuse_cmdline_help();
		fuse_lowlevel_help();
		rc = 0;
		goto out_args;
	}
	if (cmd.show_version) {
		printf("ferryfs " FERRY_VERSION "\n");
		fuse_lowlevel_version();
		rc = 0;
		goto out_args;
	}
	ferry_log_verbose(o.verbose);
	pause_init();
	if (o.listen) {
		/* The one word left is the mountpoint: no SOURCE, they
		 * dial in. */
		if (cmd.mountpoint || !o.source) {
			ferry_error("usage: ferryfs [-f] [-o OPTIONS] --listen "
				    "HOST:PORT MOUNTPOINT (no SOURCE: sources "
				    "dial in)");
			rc = 2;
			goto out_args;
		}
		cmd.mountpoint = o.source;
		o.source = NULL;
	} else if (o.cert || o.key || o.url_file || o.advertise) {
		ferry_error("--cert, --key, --url-file and --advertise go "
			    "with --listen");
		rc = 2;
		goto out_args;
	}
	if (o.listen) {
		struct fleet_opts fo = {
			.listen = o.listen, .cert = o.cert, .key = o.key,
			.url_file = o.url_file, .advertise = o.advertise,
			.cache = o.cache, .mountpoint = cmd.mountpoint,
		};

		if (!o.cert != !o.key) {
			ferry_error("--cert and --key go together");
			rc = 2;
			goto out_args;
		}
		if (o.cache && strcmp(o.cache, "none") == 0) {
			ferry_error("-o cache=none is for file:// sources");
			rc = 2;
			goto out_args;
		}
		if (check_options(&o, &fs, &hopts) < 0) {
			rc = 2;
			goto out_args;
		}
		hopts.verbose = o.verbose > 1;
		hopts.compress = fs.compress;
		rc = fleet_run(&fo, &args, &cmd, &fs, &hopts);
		if (fs.lock_fd >= 0)
			close(fs.lock_fd);
		ferry_bucket_destroy(&fs.bucket);
		goto out_args;
	}
	if (!o.source || !cmd.mountpoint) {
		ferry_error("usage: ferryfs [-f] [-o OPTIONS] SOURCE MOUNTPOINT "
			    "(--help for more)");
		rc = 2;
		goto out_args;
	}
	if (check_options(&o, &fs, &hopts) < 0) {
		rc = 2;
		goto out_args;
	}
	ferryfs_init(&fs);
	hopts.verbose = o.verbose > 1;
	hopts.compress = fs.compress;
	hopts.cacert = o.cacert;
	if (strncmp(o.source, "file://", 7) == 0)
		r = open_local(o.source, o.format, o.all_blocks, &fs.src);
	else
		r = ferry_http_open(o.source, &hopts, &fs.src);
	if (r < 0)
		goto out_args;	/* the backend said why */
	fs.src->cancel = &fs.stop;

	if (open_cache(&fs, &o) < 0)
		goto out_disks;

	fuse_opt_add_arg(&args, "-ofsname=ferry,subtype=ferry,"
			 "default_permissions");
	se = fuse_session_new(&args, &ferryfs_ops, sizeof ferryfs_ops, &fs);
	if (!se)
		goto out_disks;
	fs.se = se;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, cmd.mountpoint) != 0)
		goto out_signals;
	ferry_info("%s: %zu disk%s mounted on %s, cache %s", fs.src->id,
		   fs.ndisks, fs.ndisks == 1 ? "" : "s", cmd.mountpoint,
		   fs.cache_dir);
	fuse_daemonize(cmd.foreground);

	/* Threads start after daemonizing: fork() keeps only its caller. */
	if (ferryfs_start(&fs) < 0)
		goto out_unmount;
	r = ferryfs_loop(se, &cmd);
	rc = r == 0 ? 0 : 1;

out_unmount:
	ferryfs_stop(&fs);
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_disks:
	ferryfs_free(&fs);
out_args:
	free(o.source);
	free(o.chunk);
	free(o.cache);
	free(o.cacert);
	free(o.format);
	free(o.views);
	free(o.listen);
	free(o.cert);
	free(o.key);
	free(o.url_file);
	free(o.advertise);
	free(o.qcow2_cluster);
	free(o.readahead);
	free(o.smallread);
	free(o.bwlimit);
	free(o.timeout);
	free(o.stall_timeout);
	free(o.compress);
	free(cmd.mountpoint);
	fuse_opt_free_args(&args);
	return rc;
}
