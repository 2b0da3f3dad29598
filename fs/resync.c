/* ferryfs — resync: follow a source that changed, fetching only what did.
 *
 * Started by writing "resync" to .ferry/control: as often as wanted while
 * the source runs, and once more after its services are stopped, for the
 * cutover. One background thread asks the exporter for each disk's
 * generation; a disk whose generation changed, and every live disk (a block
 * device, whose writes the exporter cannot see), is followed:
 *
 *   1. its size must be the same (the views' sizes and the cache file are
 *      the disk's);
 *   2. the exporter maps it afresh (extents?fresh=1), and a new layout is
 *      made from that map: the raw and partition views follow it at once,
 *      the qcow2 and VHD views are laid out again (their sizes change);
 *      readers in the middle of a read finish it on the old layout;
 *   3. data requests follow the new generation (If-Match);
 *   4. every cached chunk becomes a candidate (fdisk.candidate): the fetch
 *      path takes it from the cache when it matches the new digest and
 *      fetches it when not, so hydration (or readers) re-fetch exactly the
 *      chunks that changed; chunks newly used are fetched as any missing
 *      chunk is, and what became free reads as zeros (and is punched out
 *      of the cache file);
 *   5. the kernel's page cache and attributes of the disk's files are
 *      dropped.
 *
 * A disk whose size changed is left as it was, with a log line and the
 * error in status.json: remounting follows it (cache_open keeps the chunks
 * as candidates).
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

static void
drop_page_cache(struct ferryfs *fs, struct fdisk *d)
{
	for (size_t k = 0; k < fs->nfiles && fs->se; k++)
		if (fs->files[k].d == d)
			fuse_lowlevel_notify_inval_inode(fs->se,
							 fs->ino_base +
							 FERRY_INO_FILE0 + k,
							 0, 0);
}

/* Data bytes of @a that @b does not have. */
static int
data_not_in(const struct ferry_extents *a, const struct ferry_extents *b,
	    uint64_t *bytes)
{
	struct ferry_extents x;
	int r;

	ferry_extents_init(&x, a->size);
	r = ferry_extents_subtract(a, b, &x);
	*bytes = x.data_bytes;
	ferry_extents_free(&x);
	return r;
}

struct layout *
resync_take_layout(struct ferryfs *fs, struct fdisk *d, struct layout *l,
		   const char *gen, uint64_t *demoted)
{
	struct sched *s = &fs->sched;
	struct layout *old;
	uint64_t data_chunks = 0;

	/* No reply is reading a chunk of the cache file from here on: the
	 * chunks about to be demoted are mended and punched after this. */
	pthread_rwlock_wrlock(&d->reply_lock);
	pthread_mutex_lock(&s->lock);
	l->seq = d->lay->seq + 1;
	old = layout_swap(d, l);
	*demoted = 0;
	for (uint64_t c = 0; c < d->nchunks; c++) {
		bool was = ferry_bitmap_take(&d->present, c);

		/* A chunk that is all free now has nothing to check: it
		 * reads as zeros (cache_clear_holes punches it), and no run
		 * would ever pick it to resolve it. */
		if (!fetch_chunk_has_data(d, c)) {
			if (ferry_bitmap_take(&d->candidate, c))
				d->candidates--;
			continue;
		}
		data_chunks++;
		if (!was)
			continue;
		if (!ferry_bitmap_test(&d->candidate, c)) {
			ferry_bitmap_set(&d->candidate, c);
			d->candidates++;
		}
		(*demoted)++;
	}
	d->data_chunks = data_chunks;
	d->present_chunks = 0;
	d->cached = 0;
	d->epoch++;
	d->kept = d->changed = 0;
	d->dirty = true;
	d->hydrate_next = 0;
	d->resyncs++;
	pthread_mutex_lock(&d->lock);
	snprintf(d->info.generation, sizeof d->info.generation, "%s", gen);
	pthread_mutex_unlock(&d->lock);
	d->restamp = true;
	pthread_cond_broadcast(&s->work);
	pthread_mutex_unlock(&s->lock);
	pthread_rwlock_unlock(&d->reply_lock);
	return old;
}

static int
resync_disk(struct ferryfs *fs, struct fdisk *d)
{
	struct ferry_source *src = fs->src;
	struct ferry_disk_info now;
	struct ferry_extents m;
	struct layout *l, *old;
	uint64_t demoted, grew = 0, shrank = 0;
	int r;

	r = src->ops->look(src, d->idx, &now);
	if (r < 0)
		return r;
	if (!now.live && !d->info.live &&
	    strcmp(now.generation, d->info.generation) == 0) {
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
	if (r == 0) {
		struct layout *cur = layout_get(d);

		r = data_not_in(&m, &cur->map, &grew);
		if (r == 0)
			r = data_not_in(&cur->map, &m, &shrank);
		layout_put(cur);
	}
	if (r == 0)
		r = layout_new(fs, d, &m, &l);
	ferry_extents_free(&m);
	if (r < 0)
		return r;
	r = src->ops->follow(src, d->idx, now.generation);
	if (r < 0) {
		layout_put(l);
		return r;
	}
	/* Read without a lock by the workers and status.json. */
	__atomic_store_n(&d->info.live, now.live, __ATOMIC_RELAXED);
	d->grew = grew;
	d->shrank = shrank;
	old = resync_take_layout(fs, d, l, now.generation, &demoted);
	layout_put(old);
	/* What is free now never reads back an older generation's bytes
	 * (l stays valid: only this thread swaps layouts). */
	r = cache_clear_holes(d, &l->map);
	drop_page_cache(fs, d);
	ferry_info("resync: %s %s (generation %s): map +%" PRIu64 " -%"
		   PRIu64 " bytes, %" PRIu64 " bytes used; %" PRIu64 " cached "
		   "chunks to check against its digests%s", d->info.name,
		   now.live ? "is live" : "changed at the source",
		   now.generation, grew, shrank, l->map.data_bytes, demoted,
		   fs->prefetch ? "" : " as they are read (-o prefetch=0)");
	return r;
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
