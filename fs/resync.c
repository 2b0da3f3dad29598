/* ferryfs — resync: follow a source that changed, fetching only what did.
 *
 * Started by writing "resync" to .ferry/control (after the source's
 * services are stopped, for the final cutover). One background thread asks
 * the exporter for each disk's generation; for a disk that changed:
 *
 *   1. its size must be the same, and it must have no data where the
 *      mounted allocation map has holes (the views' layouts are made from
 *      that map); "data" there that is all zeros (blocks the exporter had
 *      left out of the map as zeros) is allowed, checked by digests;
 *   2. data requests follow the new generation (If-Match);
 *   3. every cached chunk becomes a candidate (fdisk.candidate): the fetch
 *      path takes it from the cache when it matches the new digest and
 *      fetches it when not, so hydration (or readers) re-fetch exactly the
 *      chunks that changed;
 *   4. the kernel's page cache of the disk's files is dropped.
 *
 * A disk whose allocation grew, or whose size changed, is left as it was,
 * with a log line and the error in status.json: remounting resyncs it the
 * same way (cache_open keeps the chunks as candidates).
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fuse_lowlevel.h>

#include "common/log.h"
#include "common/util.h"
#include "fs/ferryfs.h"

#define HASH_BUF (1u << 20)

/* Is new data of map @m inside chunk @c all zeros where @d's map has
 * holes? Asked of the digests: the chunk as the cache holds it (its holes
 * zeros), or all zeros if the mount has no data in it. */
static int
grown_is_zeros(struct ferryfs *fs, struct fdisk *d, uint64_t c, bool *zeros)
{
	uint64_t off = c * d->chunk, len = FERRY_MIN(d->chunk,
						     d->info.size - off);
	struct ferry_digest want, have;
	struct ferry_hasher h;
	uint8_t *buf = NULL;
	int r;

	*zeros = false;
	r = ferry_source_digests(fs->src, d->idx, d->chunk, c, 1, &want);
	if (r < 0)
		return r;
	if (ferry_hasher_init(&h) < 0)
		return -ENOMEM;
	if (ferry_extents_data_in(&d->map, off, len) == 0) {
		ferry_hasher_zeros(&h, len);
		ferry_hasher_final(&h, &have);
	} else if (ferry_bitmap_test(&d->present, c) ||
		   ferry_bitmap_test(&d->candidate, c)) {
		buf = malloc(HASH_BUF);
		r = buf ? cache_hash(d, c, buf, HASH_BUF, &h, &have) : -ENOMEM;
	} else {
		ferry_hasher_free(&h);
		return 0;	/* cannot tell: counts as grown */
	}
	ferry_hasher_free(&h);
	free(buf);
	if (r == 0)
		*zeros = ferry_digest_equal(&have, &want);
	return r;
}

/* Does map @m have data where @d's map has none (other than zeros)? */
static int
grew(struct ferryfs *fs, struct fdisk *d, const struct ferry_extents *m,
     uint64_t *where)
{
	uint64_t last = UINT64_MAX;

	for (size_t i = 0; i < m->n; i++) {
		uint64_t off = m->v[i].off, end = off + m->v[i].len;

		if (ferry_extents_data_in(&d->map, off, end - off) ==
		    end - off)
			continue;
		for (uint64_t c = off / d->chunk; c <= (end - 1) / d->chunk;
		     c++) {
			uint64_t a = FERRY_MAX(off, c * d->chunk);
			uint64_t b = FERRY_MIN(end, (c + 1) * d->chunk);
			bool zeros;
			int r;

			if (c == last ||
			    ferry_extents_data_in(&d->map, a, b - a) == b - a)
				continue;
			last = c;
			r = grown_is_zeros(fs, d, c, &zeros);
			if (r < 0)
				return r;
			if (!zeros) {
				*where = a;
				return 1;
			}
		}
	}
	return 0;
}

static void
drop_page_cache(struct ferryfs *fs, struct fdisk *d)
{
	for (size_t k = 0; k < fs->nfiles && fs->se; k++)
		if (fs->files[k].d == d)
			fuse_lowlevel_notify_inval_inode(fs->se,
							 FERRY_INO_FILE0 + k,
							 0, 0);
}

static int
resync_disk(struct ferryfs *fs, struct fdisk *d)
{
	struct ferry_source *src = fs->src;
	struct sched *s = &fs->sched;
	struct ferry_disk_info now;
	struct ferry_extents m;
	uint64_t where = 0, demoted = 0;
	int r;

	r = src->ops->look(src, d->idx, &now);
	if (r < 0)
		return r;
	if (strcmp(now.generation, d->info.generation) == 0) {
		ferry_info("resync: %s unchanged at the source", d->info.name);
		return 0;
	}
	if (now.size != d->info.size) {
		ferry_error("resync: %s changed size at the source (%" PRIu64
			    " to %" PRIu64 " bytes); remount to follow it",
			    d->info.name, d->info.size, now.size);
		return -EFBIG;
	}
	if (!d->verify) {
		ferry_error("resync: %s: the source serves no digests (or -o "
			    "verify=0); remount to follow it", d->info.name);
		return -ENOTSUP;
	}
	ferry_extents_init(&m, d->info.size);
	r = src->ops->extents(src, d->idx, &m);
	if (r == 0)
		r = grew(fs, d, &m, &where);
	ferry_extents_free(&m);
	if (r == 1) {
		ferry_error("resync: %s has data at %" PRIu64 " where the "
			    "mounted map has a hole; remount to follow it (the "
			    "cache is kept: only changed chunks are fetched)",
			    d->info.name, where);
		return -EFBIG;
	}
	if (r < 0)
		return r;
	r = src->ops->follow(src, d->idx, now.generation);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	for (uint64_t c = 0; c < d->nchunks; c++) {
		if (!ferry_bitmap_take(&d->present, c))
			continue;
		ferry_bitmap_set(&d->candidate, c);
		d->candidates++;
		demoted++;
	}
	d->present_chunks = 0;
	d->cached = 0;
	d->epoch++;
	d->kept = d->changed = 0;
	d->dirty = true;
	d->hydrate_next = 0;
	pthread_mutex_lock(&d->lock);
	snprintf(d->info.generation, sizeof d->info.generation, "%s",
		 now.generation);
	pthread_mutex_unlock(&d->lock);
	d->restamp = true;
	pthread_cond_broadcast(&s->work);
	pthread_mutex_unlock(&s->lock);
	drop_page_cache(fs, d);
	ferry_info("resync: %s changed at the source (generation %s): %"
		   PRIu64 " cached chunks to check against its digests%s",
		   d->info.name, now.generation, demoted, fs->prefetch ? "" :
		   " as they are read (-o prefetch=0)");
	return 0;
}

static void *
resync_main(void *arg)
{
	struct ferryfs *fs = arg;
	int r = 0;

	for (size_t i = 0; i < fs->ndisks && !fs->stop; i++) {
		int e = resync_disk(fs, &fs->disks[i]);

		if (e < 0 && r == 0) {
			r = e;
			pthread_mutex_lock(&fs->resync.lock);
			snprintf(fs->resync.error, sizeof fs->resync.error,
				 "%s", ferry_last_error());
			pthread_mutex_unlock(&fs->resync.lock);
		}
	}
	fs->resync.state = fs->stop ? "stopped" : r == 0 ? "done" : "error";
	return NULL;
}

int
resync_start(struct ferryfs *fs)
{
	if (!fs->src->ops->look || !fs->src->ops->follow) {
		ferry_error(".ferry/control: resync: this source cannot tell "
			    "its generations (only a ferry-export can)");
		return -ENOTSUP;
	}
	pthread_mutex_lock(&fs->resync.lock);
	if (strcmp(fs->resync.state, "running") == 0) {
		pthread_mutex_unlock(&fs->resync.lock);
		return 0;
	}
	if (fs->resync.started)
		pthread_join(fs->resync.tid, NULL);
	fs->resync.error[0] = '\0';
	fs->resync.state = "running";
	fs->resync.started =
		pthread_create(&fs->resync.tid, NULL, resync_main, fs) == 0;
	if (!fs->resync.started)
		fs->resync.state = "error";
	pthread_mutex_unlock(&fs->resync.lock);
	return fs->resync.started ? 0 : -EAGAIN;
}

void
resync_stop(struct ferryfs *fs)
{
	pthread_mutex_lock(&fs->resync.lock);
	if (fs->resync.started)
		pthread_join(fs->resync.tid, NULL);
	fs->resync.started = false;
	pthread_mutex_unlock(&fs->resync.lock);
}
