/* A disk of the mount's, made as fs/main.c's setup makes it (its locks, its
 * chunk bitmaps, a first layout from @map), for unit tests of the mount's
 * scheduler code without a mount. One place, so that a lock or bitmap added
 * to struct fdisk is set up for every such test. */
#ifndef FERRY_TESTS_FSDISK_H
#define FERRY_TESTS_FSDISK_H

#include "fs/ferryfs.h"
#include "tests/unit/check.h"

static inline void
fsdisk_init(struct ferryfs *fs, struct fdisk *d, uint64_t nchunks,
	    uint64_t chunk, struct ferry_extents *map)
{
	struct layout *l = NULL;

	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->lay_lock, NULL);
	pthread_rwlock_init(&d->reply_lock, NULL);
	d->chunk = chunk;
	d->nchunks = nchunks;
	d->info.size = nchunks * chunk;
	d->data_fd = d->map_fd = -1;
	CHECK(ferry_bitmap_init(&d->present, nchunks) == 0);
	CHECK(ferry_bitmap_init(&d->busy, nchunks) == 0);
	CHECK(ferry_bitmap_init(&d->candidate, nchunks) == 0);
	CHECK(layout_new(fs, d, map, &l) == 0);
	d->lay = l;
	d->data_chunks = 0;
	for (uint64_t c = 0; c < nchunks; c++)
		d->data_chunks += fetch_chunk_has_data(d, c);
}

static inline void
fsdisk_free(struct fdisk *d)
{
	layout_put(d->lay);
	ferry_bitmap_free(&d->present);
	ferry_bitmap_free(&d->busy);
	ferry_bitmap_free(&d->candidate);
}

#endif
