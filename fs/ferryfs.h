/* ferryfs — state shared by the filesystem's files.
 *
 *   main.c   options, start-up, mount
 *   cache.c  per-disk cache files: sparse data + crash-safe presence map
 *   fetch.c  transfer engine: demand reads first, readahead, hydration
 *   direct.c small cold reads fetched alone, not waiting for their chunks
 *   files.c  the files of the mount: views of each disk (views/)
 *   layout.c a disk's map and its views, replaced whole by a resync
 *   ops.c    FUSE low-level operations and .ferry/status.json
 */
#ifndef FERRYFS_H
#define FERRYFS_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "backends/backend.h"

struct fuse_session;

/* Inode of the first file of the mount (ops.c); file i is this plus i. */
#define FERRY_INO_FILE0 16
#include "common/adapt.h"
#include "common/bitmap.h"
#include "common/extents.h"
#include "common/rate.h"
#include "fs/readahead.h"
#include "fs/views/view.h"

struct fetch_job;

/* A disk's data ranges and every view made from them (layout.c). Never
 * changed once made: a resync makes a new one. views[] is indexed by the
 * files' vfile.slot. */
struct layout {
	_Atomic unsigned refs;
	unsigned seq;			/* resyncs that made it (map.json's
					 * "layout") */
	struct ferry_extents map;	/* data ranges; the rest is holes */
	size_t nviews;
	struct view views[];
};

struct fdisk {
	unsigned idx;			/* disk index in the source */
	struct ferry_disk_info info;
	/* The current layout. Swapped under sched.lock and lay_lock, so it
	 * may be read under either; anything that reads it without
	 * sched.lock takes a reference (layout_get). */
	struct layout *lay;
	pthread_mutex_t lay_lock;
	uint64_t chunk;			/* chunk size in bytes */
	uint64_t nchunks;
	/* Chunks holding any data: written under sched.lock (a resync),
	 * read without it (status.json). */
	_Atomic uint64_t data_chunks;

	/* Bit set: the chunk's data is in the cache file and may be read.
	 * Set only after the bytes are written; read without locks. */
	struct ferry_bitmap present;
	/* Bit set: a fetch job exists for the chunk (under sched.lock). */
	struct ferry_bitmap busy;
	uint64_t hydrate_next;		/* hydration cursor (sched.lock) */
	char ptable[8];			/* "mbr", "gpt" or "" */

	int data_fd;			/* sparse file, disk-sized */
	int map_fd;			/* header + persisted presence bits */
	char path[PATH_MAX];		/* cache path prefix, for messages */

	/* Bit set: the chunk's data is durable in the cache file but was
	 * cached for an earlier generation of the disk (a remount or a
	 * resync after the source changed). It is used only once its hash
	 * matches the source's digest now, which the fetch path checks before
	 * fetching it (fetch.c); one that differs is fetched. Kept on disk
	 * with the present bits until none is left, then the cache takes the
	 * new generation (cache_restamp). */
	struct ferry_bitmap candidate;
	_Atomic uint64_t candidates;	/* bits set in candidate */
	_Atomic uint64_t kept, changed;	/* candidates resolved either way */
	/* The last resync's new map against the one before: data bytes
	 * that became used, and that became free. */
	_Atomic uint64_t grew, shrank;
	_Atomic unsigned resyncs;	/* resyncs that took a new map */
	atomic_bool restamp;		/* take the generation once resolved */
	/* Resyncs so far (written under sched.lock and reply_lock): a chunk
	 * fetched by a run that began before the last one becomes a
	 * candidate, not present. */
	_Atomic unsigned epoch;
	/* A reply spliced from the cache file holds it shared, from the
	 * check that its chunks are still of its epoch to the end of the
	 * reply; a resync takes it to demote them, so no chunk a reply is
	 * reading is mended or punched under it (ops.c, resync.c).
	 * Writers first: a resync is never starved by readers. */
	pthread_rwlock_t reply_lock;

	_Atomic uint64_t present_chunks; /* data chunks present */
	_Atomic uint64_t cached;	/* data bytes present */
	_Atomic uint64_t received;	/* disk bytes received (decoded) */
	_Atomic uint64_t wire;		/* bytes as they travelled */
	_Atomic uint64_t small_reads;	/* reads answered by direct.c */
	_Atomic uint64_t small_bytes;	/* disk bytes they received */
	bool verify;			/* check chunks against digests */
	_Atomic uint64_t mismatches;	/* chunks received that differed */
	atomic_bool dirty;		/* presence changed since the flush */

	pthread_mutex_t lock;		/* error, failing, rate */
	char error[256];
	bool failing;			/* the last fetch failed */
	double rate;			/* bytes/s over the last interval */
	uint64_t rate_bytes;
	double rate_time;
};

/* Which views appear (-o views=). */
enum {
	VIEWS_RAW = 1 << 0,
	VIEWS_QCOW2 = 1 << 1,
	VIEWS_VHD = 1 << 2,
	VIEWS_FIXEDVHD = 1 << 3,
	VIEWS_PARTS = 1 << 4,
	VIEWS_ALL = (1 << 5) - 1,
};

/* A file of the mount: one view of one disk. Fixed once mounted; its
 * layout (size, tables) is in the disk's layout, at views[slot]. */
struct vfile {
	struct fdisk *d;
	const struct view_ops *ops;
	struct view_params params;	/* map: none; the layout's */
	size_t slot;
	const char *kind;	/* "raw", "qcow2", "vhd", "fixedvhd", "part" */
	unsigned part;		/* kind "part": the partition number */
	char name[FERRY_NAME_MAX + 24];
};

struct fetch_queue {
	struct fetch_job *head, *tail;
};

struct sched {
	pthread_mutex_t lock;
	pthread_cond_t work;		/* a job is waiting for a worker */
	pthread_cond_t done;		/* a job finished */
	struct fetch_queue demand;	/* readers are waiting on these */
	struct fetch_queue ahead;	/* readahead */
	/* Chunks a small read was answered without (direct.c), fetched by
	 * the background workers before hydration, prefetch or not. */
	struct fetch_queue later;
	struct fetch_job *inflight;	/* every job not yet done */
	size_t rr;			/* next disk to hydrate */
	/* Foreground (demand and readahead) jobs not yet done; hydration
	 * pauses while there are any. Written under lock, read without. */
	_Atomic unsigned fg_busy;
	pthread_cond_t fg_idle;		/* fg_busy dropped to 0 */
	double fg_last;			/* when it last did (ferry_now) */
};

/* One open file of the mount. The kernel may still owe RELEASEs when the
 * session ends, so every handle is also on a list freed at exit. */
struct open_file {
	struct open_file *prev, *next;
	char *text;		/* status.json: a snapshot per open */
	struct fetch_ra ra;	/* disk files */
};

struct ferryfs {
	struct ferry_source *src;
	struct fdisk *disks;
	size_t ndisks;

	char cache_dir[PATH_MAX];
	int lock_fd;
	uint64_t chunk;
	bool prefetch;
	bool nocache;			/* -o cache=none: read the source */
	bool compress;			/* ask for zstd on the wire */
	bool compress_auto;		/* only where it pays (adapt.h) */
	struct ferry_adapt adapt;
	bool verify;			/* -o verify= */
	unsigned streams;		/* foreground, and as many background */
	uint64_t readahead;		/* bytes: the largest window */
	uint64_t smallread;		/* bytes: direct.c's largest read */
	struct ferry_bucket bucket;	/* -o bwlimit=, .ferry/control */
	unsigned views;			/* VIEWS_* */
	unsigned qcow2_cluster_bits;
	struct vfile *files;
	size_t nfiles;
	time_t mount_time;

	atomic_bool stop;
	struct sched sched;
	pthread_t *workers;
	unsigned nworkers;
	pthread_t flusher;
	bool flusher_started;
	pthread_mutex_t flush_lock;
	pthread_cond_t flush_cond;

	pthread_mutex_t open_lock;
	struct open_file *open_files;

	struct fuse_session *se;	/* for the kernel cache notifications */
	/* The length of each .ferry text file (by inode, below the disks')
	 * as last rendered, for its attributes (ops.c). */
	_Atomic size_t text_size[FERRY_INO_FILE0];
	/* Added to every inode number the kernel sees: 0, or in a fleet
	 * mount (fleet.c) the member's number << 32. */
	uint64_t ino_base;
	char *source_json;		/* the exporter's /v1/info, or NULL */
	struct {			/* resync.c: "resync" in .ferry/control */
		pthread_mutex_t lock;
		pthread_t tid;
		bool started;
		const char *_Atomic state;	/* idle, running, done, stopped,
					 * error */
		char error[256];
	} resync;
	struct {			/* verify.c: "verify" in .ferry/control */
		pthread_mutex_t lock;
		pthread_t tid;
		bool started;
		const char *_Atomic state;	/* idle, running, done, stopped,
					 * error */
		_Atomic uint64_t checked, bad;
	} reverify;
};

/* main.c: one ferryfs's life, for the single mount and each member of a
 * fleet (fleet.c) */

/*! ferryfs_init() : locks and states of a zeroed @fs. */
void ferryfs_init(struct ferryfs *fs);
/*! ferryfs_open_disks() : make and lock fs->cache_dir and open each
 * disk of fs->src in it. @return 0 or -errno, logged. */
int ferryfs_open_disks(struct ferryfs *fs);
/*! ferryfs_start() : workers, files, source facts, flusher. */
int ferryfs_start(struct ferryfs *fs);
/*! ferryfs_stop() : stop the threads and flush the caches. */
void ferryfs_stop(struct ferryfs *fs);
/*! ferryfs_free() : free what @fs holds (after ferryfs_stop). */
void ferryfs_free(struct ferryfs *fs);
struct fuse_cmdline_opts;
/*! ferryfs_loop() : serve FUSE requests until unmounted. */
int ferryfs_loop(struct fuse_session *se, const struct fuse_cmdline_opts *cmd);
/*! ferryfs_mkdir_p() : mkdir -p with mode 0700. @return 0 or -errno. */
int ferryfs_mkdir_p(const char *path);

/* layout.c */

/*! disk_map() : @d's current map; sched.lock held (or no worker yet). */
static inline const struct ferry_extents *
disk_map(const struct fdisk *d)
{
	return &d->lay->map;
}

/*! layout_get() : a reference to @d's current layout. */
struct layout *layout_get(struct fdisk *d);
/*! layout_put() : drop a reference (NULL is fine). */
void layout_put(struct layout *l);

/*! layout_view() : file @f's view in @l (a layout of f->d). */
static inline const struct view *
layout_view(const struct layout *l, const struct vfile *f)
{
	return &l->views[f->slot];
}

/*! layout_new() : a layout of @d from @map (moved in: *@map is left
 * empty), with a view for each of @d's files. @return 0 or -errno. */
int layout_new(struct ferryfs *fs, struct fdisk *d, struct ferry_extents *map,
	       struct layout **out);

/*! layout_swap() : make @l @d's layout (sched.lock held); @return the
 * one it replaces, whose reference the caller now holds. */
struct layout *layout_swap(struct fdisk *d, struct layout *l);

/* cache.c */

/*! cache_open() : open or create the cache of @d under fs->cache_dir,
 * keeping what a previous mount of the same disk (source, size,
 * generation, chunk size) left; anything else is reset with a log line.
 * @return 0 or -errno. */
int cache_open(struct ferryfs *fs, struct fdisk *d);

/*! cache_flush() : make the presence map on disk claim exactly the chunks
 * present now, after their data is durable (data fdatasync, then map
 * write, then map fdatasync). No-op when nothing changed. */
int cache_flush(struct fdisk *d);

void cache_close(struct fdisk *d);

/*! cache_restamp() : every candidate is resolved (fetch_restamp_due()):
 * flush the presence map, then record generation @gen in NAME.json. A
 * resync after the decision leaves more chunks in the map, of a newer
 * generation than @gen, which a remount then checks as it would any. */
int cache_restamp(struct ferryfs *fs, struct fdisk *d, const char *gen);

/*! cache_hash() : the digest of chunk @c as the cache file holds it,
 * holes of @map as zeros (whatever an earlier map left in the file
 * there), read through @buf of @buflen bytes. @return 0 or -errno
 * (logged). */
int cache_hash(struct fdisk *d, const struct ferry_extents *map, uint64_t c,
	       uint8_t *buf, size_t buflen, struct ferry_hasher *h,
	       struct ferry_digest *out);

/*! cache_hash_range() : cache_hash() of the bytes [off, off+len). */
int cache_hash_range(struct fdisk *d, const struct ferry_extents *map,
		     uint64_t off, uint64_t len, uint8_t *buf, size_t buflen,
		     struct ferry_hasher *h, struct ferry_digest *out);

/*! cache_clear_holes() : punch what is a hole in @map out of @d's data
 * file, so that no earlier generation's bytes linger there. @return 0 or
 * -errno (logged). */
int cache_clear_holes(struct fdisk *d, const struct ferry_extents *map);

/*! cache_lock_dir() : take the cache directory for this mount alone.
 * @return 0, or -EBUSY if another ferryfs uses it. */
int cache_lock_dir(struct ferryfs *fs);

/* fetch.c */

/*! fetch_start() : start the worker threads (after daemonizing). */
int fetch_start(struct ferryfs *fs);

/*! fetch_stop() : stop and join the workers. */
void fetch_stop(struct ferryfs *fs);

/*! fetch_ensure() :
 * Make sure the data of [off, off+len) of @d is in the cache, fetching the
 * missing chunks that hold data (holes are never fetched) and waiting for
 * them. With @ra (the reader's readahead state, or NULL), a sequential
 * reader also gets readahead in a window that grows while it keeps on, so
 * a lone random read fetches no more than its own chunks.
 * @return 0, or -errno of a failed fetch (the cache then claims nothing). */
int fetch_ensure(struct ferryfs *fs, struct fdisk *d, uint64_t off,
		 uint64_t len, struct fetch_ra *ra);

/*! fetch_ensure_v() : fetch_ensure() for @n disk ranges at once (the disk
 * ranges a view's read maps to, by @map, the reader's layout's): every
 * missing chunk is queued before waiting for any, and readahead follows
 * the last range. */
int fetch_ensure_v(struct ferryfs *fs, struct fdisk *d,
		   const struct ferry_extents *map,
		   const struct ferry_extent *rv, size_t n,
		   struct fetch_ra *ra);

/*! fetch_ra_follows() : does a read of disk bytes [a, b) go on from where
 * @ra's reader's last read ended (up to -o smallread= before it, or 2 MiB
 * after)? If not, @ra takes it as a jump, as fetch_ensure_v() would. */
bool fetch_ra_follows(struct ferryfs *fs, struct fdisk *d, struct fetch_ra *ra,
		      uint64_t a, uint64_t b);


/*! fetch_note_result() : a fetch for @d ended with @err (0 or negative
 *  errno): the disk's state ("error" and why, or not) says so; a cancelled
 *  or postponed fetch says nothing. Takes d->lock. */
void fetch_note_result(struct fdisk *d, int err);

/*! fetch_fg_enter(), fetch_fg_leave() : foreground work outside the
 * workers (direct.c) is on the wire: background transfers pause. */
void fetch_fg_enter(struct ferryfs *fs);
void fetch_fg_leave(struct ferryfs *fs);

/*! fetch_later() : queue the chunks of [off, off+len) of @d that hold
 * data, are not cached and have no job, for the background workers (the
 * rest of what a small read was answered without). */
void fetch_later(struct ferryfs *fs, struct fdisk *d, uint64_t off,
		 uint64_t len);


/*! fetch_pread() : read disk bytes through the cache (fetching them).
 * @return 0 or -errno. */
int fetch_pread(struct ferryfs *fs, struct fdisk *d, void *buf, size_t len,
		uint64_t off);

/*! fetch_forget() : chunk @c of @d is no longer cached (it differed from
 * the source); it is fetched again when read or hydrated. */
void fetch_forget(struct ferryfs *fs, struct fdisk *d, uint64_t c);

/*! fetch_chunk_done() : the books of a fetch of chunk @c of @d, begun in
 * epoch @epoch, that ended with @err: present and counted; a candidate if
 * a resync came meanwhile; nothing counted for a chunk that is a hole by
 * now; on an error, hydration comes back for it. sched.lock held. */
void fetch_chunk_done(struct fdisk *d, uint64_t c, unsigned epoch, int err);

/*! fetch_restamp_due() : may @d's cache take the generation its chunks are
 * of now? Only once a resync (or a remount) asked for it, every chunk kept
 * from an earlier generation is checked, and no run begun before the last
 * resync is still to finish; decided under sched.lock, which every change
 * of those takes, so no resync slips in between. @return true with that
 * generation in @gen (the request is taken: put it back by setting
 * d->restamp if writing it fails). */
bool fetch_restamp_due(struct ferryfs *fs, struct fdisk *d, char *gen,
		       size_t len);

/*! fetch_chunk_has_data() : does chunk @c of @d hold any data (by its
 * current map: sched.lock held, or no worker yet)? */
bool fetch_chunk_has_data(const struct fdisk *d, uint64_t c);

/* direct.c */

/*! fetch_direct() : answer a small cold read of @d's disk ranges
 * @rv[0..n) (by @map, the reader's layout's) without waiting for their
 * chunks: their 4 KiB blocks are fetched into memory, checked against the
 * source's digests of those blocks when the disk is verified, and the
 * ranges' bytes put one after another in *@res (malloc'd). Nothing is
 * cached. @return 1 (done), 0 (not taken: too big, sequential, cached, or
 * a block that differed; the caller fetches chunks), or -errno of the
 * fetch. */
int fetch_direct(struct ferryfs *fs, struct fdisk *d,
		 const struct ferry_extents *map, const struct ferry_extent *rv,
		 size_t n, struct fetch_ra *ra, uint8_t **res);

/* verify.c */

/*! verify_start() : re-verify every cached chunk against the source's
 * digests in the background (no-op while one runs). @return 0, or
 * -ENOTSUP when no disk has digests. */
int verify_start(struct ferryfs *fs);

/*! verify_stop() : wait for a re-verify (it stops early on fs->stop). */
void verify_stop(struct ferryfs *fs);

/* resync.c */

/*! resync_start() : follow the source's new generation of each disk in
 * the background (no-op while one runs). @return 0, or -ENOTSUP for a
 * source that has no generations. */
int resync_start(struct ferryfs *fs);

/*! resync_take_layout() : make @l (with generation @gen) @d's layout:
 * every cached chunk that holds data in it becomes a candidate (their count
 * in *@demoted), one all free in it is dropped, the counts start again,
 * and the cache is to take @gen once the candidates are resolved. Waits
 * for replies reading the cache file (reply_lock). @return the layout
 * replaced, whose reference the caller holds. */
struct layout *resync_take_layout(struct ferryfs *fs, struct fdisk *d,
				  struct layout *l, const char *gen,
				  uint64_t *demoted);

/*! resync_stop() : wait for a resync. */
void resync_stop(struct ferryfs *fs);

/* files.c */

/*! files_scan_ptable() : read @d's partition table now into d->ptable
 * (the partition views do it at mount). @return 0 or -errno. */
int files_scan_ptable(struct ferryfs *fs, struct fdisk *d);

/*! files_parse_views() : "raw,qcow2,..." to VIEWS_* bits.
 * @return the bits, or -EINVAL naming the bad word in @why. */
int files_parse_views(const char *list, char *why, size_t whylen);

/*! files_setup() : the files of the mount, from fs->views. Reads each
 * disk's partition table through the cache (workers must run); a table
 * that cannot be read or is malformed gives no partition views and a
 * log line. @return 0 or -ENOMEM. */
int files_setup(struct ferryfs *fs);
void files_free(struct ferryfs *fs);

/* ops.c */
extern const struct fuse_lowlevel_ops ferryfs_ops;

/* Set in a fleet mount: the member an inode number belongs to (the
 * fleet's ops pass only members' inodes on to ferryfs_ops). */
extern struct ferryfs *(*ops_member)(void *userdata, uint64_t ino);

/*! ops_free_open_files() : free the handles of files still open when the
 * session ended. */
void ops_free_open_files(struct ferryfs *fs);

struct stat;
/*! ops_attr() : the attributes of @fs's inode @ino (its own number).
 * @return 0 or -ENOENT. */
int ops_attr(struct ferryfs *fs, uint64_t ino, struct stat *st);

/*! status_render() : .ferry/status.json as a malloc'd string. */
char *status_render(struct ferryfs *fs);

/*! source_render() : .ferry/source.json as a malloc'd string. */
char *source_render(struct ferryfs *fs);

/*! map_render() : .ferry/map.json as a malloc'd string. */
char *map_render(struct ferryfs *fs);

/*! control_render() : .ferry/control as a malloc'd string. */
char *control_render(struct ferryfs *fs);

/*! metrics_render() : .ferry/metrics (Prometheus text format) as a
 * malloc'd string (metrics.c). */
char *metrics_render(struct ferryfs *fs);

/*! disk_state() : "syncing", "complete", "reconnecting" (the link is
 * failing and being retried) or "error" (the last fetch failed). */
const char *disk_state(struct ferryfs *fs, struct fdisk *d);

#endif
