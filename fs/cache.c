/* ferryfs — the persistent chunk cache of one disk.
 *
 *   NAME.data  sparse file of the disk's size; chunk data at its offset,
 *              holes stay holes and read as zeros
 *   NAME.map   32-byte header + one bit per chunk: "durable in NAME.data"
 *   NAME.json  what the cache belongs to: source, disk, size, generation,
 *              chunk size
 *
 * The guarantee: a bit in NAME.map is only ever written after the data
 * under it was fdatasync'ed, so after a crash or kill -9 the map may miss
 * chunks (they are fetched again) but never claims one it lacks. A cache
 * for another source, size or chunk size is reset, not mixed. One for
 * another generation of the same disk (the source changed) is kept when
 * the source serves digests: its chunks become candidates, each used only
 * once it matches the source's digest (fetch.c), and NAME.json takes the
 * new generation only when none is left to check.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/chunk.h"
#include "common/log.h"
#include "common/util.h"
#include "fs/ferryfs.h"

#define MAP_MAGIC "FERRYMAP"
#define MAP_VERSION 1
#define MAP_HDR 32

struct map_header {
	char magic[8];
	uint32_t version;
	uint32_t reserved;
	uint64_t chunk;
	uint64_t nchunks;
};
_Static_assert(sizeof(struct map_header) == MAP_HDR, "map header size");

int
cache_lock_dir(struct ferryfs *fs)
{
	char path[PATH_MAX + 16];

	snprintf(path, sizeof path, "%s/.lock", fs->cache_dir);
	fs->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fs->lock_fd < 0) {
		int r = -errno;

		ferry_error("cache %s: %m", path);
		return r;
	}
	if (flock(fs->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		ferry_error("cache %s is in use by another ferryfs",
			    fs->cache_dir);
		close(fs->lock_fd);
		fs->lock_fd = -1;
		return -EBUSY;
	}
	return 0;
}

static json_t *
meta_of(struct ferryfs *fs, struct fdisk *d, const char *gen)
{
	return json_pack("{sssssIsssI}", "source", fs->src->id,
			 "name", d->info.name,
			 "size", (json_int_t)d->info.size,
			 "generation", gen,
			 "chunk", (json_int_t)d->chunk);
}

/* Why the cache on disk cannot be reused, or NULL if it can. */
static const char *
meta_mismatch(struct ferryfs *fs, struct fdisk *d, const char *metapath)
{
	json_t *have = json_load_file(metapath, 0, NULL), *want;
	const char *why = NULL;
	static const char *keys[] = { "source", "name", "size", "generation",
				      "chunk" };

	if (!have)
		return "no readable NAME.json";
	want = meta_of(fs, d, d->info.generation);
	for (size_t i = 0; want && i < sizeof keys / sizeof keys[0]; i++)
		if (!json_equal(json_object_get(have, keys[i]),
				json_object_get(want, keys[i]))) {
			why = keys[i];
			break;
		}
	json_decref(have);
	json_decref(want);
	return why;
}

static int
write_meta(struct ferryfs *fs, struct fdisk *d, const char *gen,
	   const char *metapath)
{
	char tmp[PATH_MAX + 16];
	json_t *m = meta_of(fs, d, gen);
	int fd, r = 0;

	snprintf(tmp, sizeof tmp, "%s.tmp", metapath);
	if (!m || json_dump_file(m, tmp, JSON_INDENT(1)) < 0) {
		json_decref(m);
		ferry_error("cache %s: cannot write", tmp);
		return -EIO;
	}
	json_decref(m);
	fd = open(tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0 || rename(tmp, metapath) < 0) {
		r = -errno;
		ferry_error("cache %s: %m", metapath);
	}
	if (fd >= 0)
		close(fd);
	return r;
}

/* Start afresh. Order matters for crash safety: the old map goes first,
 * so that no state on disk claims data the truncated file lacks. */
static int
reset(struct ferryfs *fs, struct fdisk *d, const char *datapath,
      const char *mappath, const char *metapath)
{
	struct map_header h = { .version = MAP_VERSION };

	if (unlink(mappath) < 0 && errno != ENOENT)
		goto fail;
	if (ftruncate(d->data_fd, 0) < 0 ||
	    ftruncate(d->data_fd, (off_t)d->info.size) < 0 ||
	    fsync(d->data_fd) < 0)
		goto fail_data;
	d->map_fd = open(mappath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
			 0600);
	if (d->map_fd < 0)
		goto fail;
	memcpy(h.magic, MAP_MAGIC, 8);
	h.chunk = d->chunk;
	h.nchunks = d->nchunks;
	if (ferry_pwrite_all(d->map_fd, &h, sizeof h, 0) < 0 ||
	    ftruncate(d->map_fd, MAP_HDR +
		      (off_t)ferry_bitmap_bytes(d->nchunks)) < 0 ||
	    fsync(d->map_fd) < 0)
		goto fail;
	return write_meta(fs, d, d->info.generation, metapath);
fail_data:
	mappath = datapath;
fail:
	{
		int r = -errno;

		ferry_error("cache %s: %m", mappath);
		return r;
	}
}

static int
load_map(struct fdisk *d, const char *mappath)
{
	struct map_header h;
	size_t nbytes = ferry_bitmap_bytes(d->nchunks);
	uint8_t *bits;
	struct stat st;

	d->map_fd = open(mappath, O_RDWR | O_CLOEXEC);
	if (d->map_fd < 0)
		return -errno;
	if (fstat(d->map_fd, &st) < 0 ||
	    (uint64_t)st.st_size != MAP_HDR + nbytes ||
	    pread(d->map_fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
	    memcmp(h.magic, MAP_MAGIC, 8) != 0 || h.version != MAP_VERSION ||
	    h.chunk != d->chunk || h.nchunks != d->nchunks)
		return -EINVAL;
	bits = malloc(nbytes + 1);
	if (!bits)
		return -ENOMEM;
	if (pread(d->map_fd, bits, nbytes, MAP_HDR) != (ssize_t)nbytes) {
		free(bits);
		return -EIO;
	}
	ferry_bitmap_load(&d->present, bits);
	free(bits);
	return 0;
}

/* Zeros over [off, off+len) of the data file: a hole punched, or zeros
 * written where the file system cannot punch. */
static int
zero_range(struct fdisk *d, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[1 << 16];

	if (fallocate(d->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	for (uint64_t done = 0; done < len;) {
		size_t n = (size_t)FERRY_MIN(len - done, sizeof zeros);
		int r = ferry_pwrite_all(d->data_fd, zeros, n, off + done);

		if (r < 0)
			return r;
		done += n;
	}
	return 0;
}

/* The disk changed at the source: nothing an earlier generation left in
 * the data file where the map has holes now may linger there (reads of
 * holes are answered from memory, but a later map may call them data
 * again, and a chunk's hash is taken from the file). */
int
cache_clear_holes(struct fdisk *d, const struct ferry_extents *map)
{
	uint64_t at = 0;
	int r = 0;

	for (size_t i = 0; r == 0 && i <= map->n; i++) {
		uint64_t end = i < map->n ? map->v[i].off : d->info.size;

		if (end > at)
			r = zero_range(d, at, end - at);
		if (i < map->n)
			at = map->v[i].off + map->v[i].len;
	}
	if (r == 0 && fdatasync(d->data_fd) < 0)
		r = -errno;
	if (r < 0) {
		errno = -r;
		ferry_error("cache %s.data: clearing the disk's new holes: %m",
			    d->path);
	}
	return r;
}

int
cache_open(struct ferryfs *fs, struct fdisk *d)
{
	char datapath[PATH_MAX + 16], mappath[PATH_MAX + 16],
	     metapath[PATH_MAX + 16];
	const char *why;
	struct stat st;
	bool changed;
	int r;

	snprintf(d->path, sizeof d->path, "%s/%s", fs->cache_dir,
		 d->info.name);
	snprintf(datapath, sizeof datapath, "%s.data", d->path);
	snprintf(mappath, sizeof mappath, "%s.map", d->path);
	snprintf(metapath, sizeof metapath, "%s.json", d->path);
	d->map_fd = -1;

	d->data_fd = open(datapath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (d->data_fd < 0) {
		r = -errno;
		ferry_error("cache %s: %m", datapath);
		return r;
	}
	why = meta_mismatch(fs, d, metapath);
	/* Only the generation differs: the source changed since. With the
	 * source's digests the chunks can be checked instead of dropped. */
	changed = why && strcmp(why, "generation") == 0 && d->verify;
	if (changed)
		why = NULL;
	/* A live disk (a block device) may have changed under the same
	 * generation: its chunks are checked too, or, without digests,
	 * dropped. */
	if (!why && !changed && d->info.live) {
		if (d->verify)
			changed = true;
		else
			why = "content (a live disk, and no digests to check)";
	}
	if (!why && (fstat(d->data_fd, &st) < 0 ||
		     (uint64_t)st.st_size != d->info.size))
		why = "data file size";
	if (!why && (r = load_map(d, mappath)) < 0)
		why = "presence map";
	if (why) {
		if (d->map_fd >= 0)
			close(d->map_fd);
		d->map_fd = -1;
		/* A brand-new cache is not news; a replaced one is. */
		if (access(metapath, F_OK) == 0)
			ferry_info("cache %s: does not match this disk (%s "
				   "differs); starting afresh", d->path, why);
		ferry_bitmap_free(&d->present);
		r = ferry_bitmap_init(&d->present, d->nchunks);
		if (r < 0)
			return r;
		return reset(fs, d, datapath, mappath, metapath);
	}

	/* Count what the map claims; a bit on a chunk without data (the
	 * map file was edited, or the chunk is a hole now) means nothing. */
	for (uint64_t c = 0; c < d->nchunks; c++) {
		if (!ferry_bitmap_test(&d->present, c))
			continue;
		if (!fetch_chunk_has_data(d, c)) {
			ferry_bitmap_clear(&d->present, c);
			continue;
		}
		if (changed) {
			ferry_bitmap_clear(&d->present, c);
			ferry_bitmap_set(&d->candidate, c);
			d->candidates++;
			continue;
		}
		d->present_chunks++;
		d->cached += ferry_chunk_data(disk_map(d), d->chunk, c);
	}
	if (changed) {
		r = cache_clear_holes(d, disk_map(d));
		if (r < 0)
			return r;
		d->restamp = true;
		ferry_info("cache %s: the disk %s at the source; %" PRIu64
			   " cached chunks are kept to check against its "
			   "digests, only those that differ are fetched",
			   d->path, d->info.live ? "is live (it may have "
			   "changed)" : "changed (another generation)",
			   (uint64_t)d->candidates);
	} else if (d->present_chunks) {
		ferry_info("cache %s: resuming with %" PRIu64 " of %" PRIu64
			   " chunks", d->path, (uint64_t)d->present_chunks,
			   d->data_chunks);
	}
	return 0;
}

int
cache_restamp(struct ferryfs *fs, struct fdisk *d, const char *gen)
{
	char metapath[PATH_MAX + 16];
	int r;

	d->dirty = true;
	r = cache_flush(d);
	if (r < 0)
		return r;
	snprintf(metapath, sizeof metapath, "%s.json", d->path);
	r = write_meta(fs, d, gen, metapath);
	if (r == 0)
		ferry_info("cache %s: every chunk kept from the earlier "
			   "generation checked (%" PRIu64 " kept, %" PRIu64
			   " changed); the cache is of generation %s now",
			   d->path, (uint64_t)d->kept, (uint64_t)d->changed,
			   gen);
	return r;
}

int
cache_hash(struct fdisk *d, const struct ferry_extents *map, uint64_t c,
	   uint8_t *buf, size_t buflen, struct ferry_hasher *h,
	   struct ferry_digest *out)
{
	uint64_t off = c * d->chunk;

	return cache_hash_range(d, map, off, FERRY_MIN(d->chunk,
						       d->info.size - off),
				buf, buflen, h, out);
}

int
cache_hash_range(struct fdisk *d, const struct ferry_extents *map,
		 uint64_t off, uint64_t len, uint8_t *buf, size_t buflen,
		 struct ferry_hasher *h, struct ferry_digest *out)
{
	uint64_t end = off + len;
	size_t i = ferry_extents_find(map, off);

	ferry_hasher_reset(h);
	while (off < end) {
		size_t n = (size_t)FERRY_MIN(end - off, (uint64_t)buflen);
		ssize_t k;

		/* Holes of the map are zeros, whatever the file holds. */
		while (i < map->n && map->v[i].off + map->v[i].len <= off)
			i++;
		if (i >= map->n || map->v[i].off >= end) {
			ferry_hasher_zeros(h, end - off);
			break;
		}
		if (map->v[i].off > off) {
			ferry_hasher_zeros(h, map->v[i].off - off);
			off = map->v[i].off;
			continue;
		}
		n = (size_t)FERRY_MIN(n, map->v[i].off + map->v[i].len - off);
		k = pread(d->data_fd, buf, n, (off_t)off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			int r = k < 0 ? -errno : -EIO;

			errno = -r;
			ferry_error("cache %s.data: read at %" PRIu64 ": %m",
				    d->path, off);
			return r;
		}
		ferry_hasher_update(h, buf, (size_t)k);
		off += (uint64_t)k;
	}
	ferry_hasher_final(h, out);
	return 0;
}

int
cache_flush(struct fdisk *d)
{
	size_t nbytes = ferry_bitmap_bytes(d->nchunks);
	uint8_t *snap;
	int r;

	if (!atomic_exchange(&d->dirty, false))
		return 0;
	snap = malloc(nbytes + 1);
	if (!snap) {
		d->dirty = true;
		return -ENOMEM;
	}
	/* Every bit in the snapshot was set after its pwrite returned, so
	 * the fdatasync below covers its data. */
	ferry_bitmap_snapshot(&d->present, snap);
	/* Chunks kept from an earlier generation stay claimed until they
	 * are checked: their data is as durable as it was. */
	if (d->candidates > 0) {
		uint8_t *cand = malloc(nbytes + 1);

		if (!cand) {
			d->dirty = true;
			free(snap);
			return -ENOMEM;
		}
		ferry_bitmap_snapshot(&d->candidate, cand);
		for (size_t i = 0; i < nbytes; i++)
			snap[i] |= cand[i];
		free(cand);
	}
	if (fdatasync(d->data_fd) < 0) {
		r = -errno;
		ferry_error("cache %s.data: fdatasync: %m", d->path);
		goto fail;
	}
	r = ferry_pwrite_all(d->map_fd, snap, nbytes, MAP_HDR);
	if (r == 0 && fdatasync(d->map_fd) < 0)
		r = -errno;
	if (r < 0) {
		errno = -r;
		ferry_error("cache %s.map: %m", d->path);
		goto fail;
	}
	free(snap);
	return 0;
fail:
	d->dirty = true;
	free(snap);
	return r;
}

void
cache_close(struct fdisk *d)
{
	if (d->data_fd >= 0)
		close(d->data_fd);
	if (d->map_fd >= 0)
		close(d->map_fd);
	d->data_fd = d->map_fd = -1;
}
