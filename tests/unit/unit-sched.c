/* Unit tests: the books the fetch scheduler keeps across resyncs, without
 * a mount, a source or a worker: how the present, candidate and data chunk
 * counts move when a resync takes a new map (resync_take_layout), when a
 * fetch begun before or after it ends (fetch_chunk_done), and when a cache
 * may take a new generation (fetch_restamp_due). A disk of 16 chunks of
 * 1 MiB. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/ferryfs.h"
#include "tests/unit/check.h"
#include "tests/unit/fsdisk.h"

#define MiB (UINT64_C(1) << 20)
#define NCHUNKS 16

static struct ferryfs fs;
static struct fdisk disk;

/* A map of @n data ranges, { off, len } in MiB. */
static struct ferry_extents
map_of(const uint64_t (*v)[2], size_t n)
{
	struct ferry_extents m;

	ferry_extents_init(&m, NCHUNKS * MiB);
	for (size_t i = 0; i < n; i++)
		CHECK(ferry_extents_add(&m, v[i][0] * MiB, v[i][1] * MiB) == 0);
	return m;
}

static void
setup(void)
{
	static const uint64_t v[][2] = { { 0, 8 }, { 12, 2 } };
	struct ferry_extents m = map_of(v, 2);

	memset(&fs, 0, sizeof fs);
	memset(&disk, 0, sizeof disk);
	pthread_mutex_init(&fs.sched.lock, NULL);
	pthread_cond_init(&fs.sched.work, NULL);
	pthread_cond_init(&fs.sched.done, NULL);
	pthread_cond_init(&fs.sched.fg_idle, NULL);
	fs.disks = &disk;
	fs.ndisks = 1;
	snprintf(disk.info.generation, sizeof disk.info.generation, "g1");
	fsdisk_init(&fs, &disk, NCHUNKS, MiB, &m);
	ferry_extents_free(&m);
}

static void
teardown(void)
{
	fsdisk_free(&disk);
}

/* Take map @v as a resync would, with generation @gen. */
static uint64_t
resync_to(const uint64_t (*v)[2], size_t n, const char *gen)
{
	struct ferry_extents m = map_of(v, n);
	struct layout *l, *old;
	uint64_t demoted = 0;

	CHECK(layout_new(&fs, &disk, &m, &l) == 0);
	ferry_extents_free(&m);
	old = resync_take_layout(&fs, &disk, l, gen, &demoted);
	layout_put(old);
	return demoted;
}

/* Chunks fetched: present and counted; a hole is never a data chunk. */
static void
test_fetched(void)
{
	setup();
	CHECK_EQ_U64(disk.data_chunks, 10);
	for (uint64_t c = 0; c < 8; c++)
		fetch_chunk_done(&disk, c, disk.epoch, 0);
	CHECK_EQ_U64(disk.present_chunks, 8);
	CHECK_EQ_U64(disk.cached, 8 * MiB);
	/* A failed fetch counts nothing and brings hydration back. */
	disk.hydrate_next = 14;
	fetch_chunk_done(&disk, 12, disk.epoch, -EIO);
	CHECK(!ferry_bitmap_test(&disk.present, 12));
	CHECK_EQ_U64(disk.hydrate_next, 12);
	CHECK_EQ_U64(disk.present_chunks, 8);
	teardown();
}

/* A resync: cached chunks that hold data in the new map are to be checked;
 * those all free in it are not (nothing would ever pick them), and stop
 * being candidates from an earlier resync too. */
static void
test_take_layout(void)
{
	static const uint64_t shrunk[][2] = { { 0, 2 }, { 3, 1 }, { 12, 4 } };
	static const uint64_t again[][2] = { { 0, 1 } };
	char gen[64];

	setup();
	for (uint64_t c = 0; c < 8; c++)
		fetch_chunk_done(&disk, c, disk.epoch, 0);
	fetch_chunk_done(&disk, 12, disk.epoch, 0);
	CHECK_EQ_U64(disk.present_chunks, 9);
	CHECK(!fetch_restamp_due(&fs, &disk, gen, sizeof gen));

	/* Chunks 0, 1, 3 and 12 still hold data; 2 and 4-7 are free now. */
	CHECK_EQ_U64(resync_to(shrunk, 3, "g2"), 4);
	CHECK_EQ_U64(disk.candidates, 4);
	CHECK_EQ_U64(disk.data_chunks, 7);
	CHECK_EQ_U64(disk.present_chunks, 0);
	CHECK_EQ_U64(disk.cached, 0);
	CHECK_EQ_U64(disk.epoch, 1);
	for (uint64_t c = 0; c < NCHUNKS; c++) {
		CHECK(!ferry_bitmap_test(&disk.present, c));
		CHECK(ferry_bitmap_test(&disk.candidate, c) ==
		      (c == 0 || c == 1 || c == 3 || c == 12));
	}
	CHECK(strcmp(disk.info.generation, "g2") == 0);
	/* Not before every candidate is checked. */
	CHECK(!fetch_restamp_due(&fs, &disk, gen, sizeof gen));

	/* Another resync before they were: only chunk 0 holds data, and the
	 * other candidates go (pending must be able to reach 0). */
	CHECK_EQ_U64(resync_to(again, 1, "g3"), 0);
	CHECK_EQ_U64(disk.candidates, 1);
	CHECK_EQ_U64(disk.data_chunks, 1);
	CHECK(ferry_bitmap_test(&disk.candidate, 0));
	CHECK(!ferry_bitmap_test(&disk.candidate, 12));

	/* Checked (as run_candidates does): the cache may take g3. */
	CHECK(ferry_bitmap_take(&disk.candidate, 0));
	disk.candidates--;
	fetch_chunk_done(&disk, 0, disk.epoch, 0);
	CHECK_EQ_U64(disk.present_chunks, 1);
	CHECK(fetch_restamp_due(&fs, &disk, gen, sizeof gen));
	CHECK(strcmp(gen, "g3") == 0);
	/* Once: the request is taken. */
	CHECK(!fetch_restamp_due(&fs, &disk, gen, sizeof gen));
	teardown();
}

/* A fetch begun before a resync and done after it: its chunk is of the
 * generation left, a candidate if it still holds data, nothing if not; a
 * job of the new epoch whose chunk became a hole is never counted, so a
 * disk is never "complete" with a data chunk missing. */
static void
test_late_fetch(void)
{
	static const uint64_t v[][2] = { { 0, 2 }, { 12, 2 } };
	unsigned before;

	setup();
	before = disk.epoch;
	resync_to(v, 2, "g2");
	CHECK_EQ_U64(disk.data_chunks, 4);
	fetch_chunk_done(&disk, 1, before, 0);		/* data still */
	CHECK(ferry_bitmap_test(&disk.candidate, 1));
	CHECK(!ferry_bitmap_test(&disk.present, 1));
	CHECK_EQ_U64(disk.candidates, 1);
	fetch_chunk_done(&disk, 5, before, 0);		/* a hole now */
	CHECK(!ferry_bitmap_test(&disk.candidate, 5));
	CHECK_EQ_U64(disk.candidates, 1);
	fetch_chunk_done(&disk, 6, disk.epoch, 0);	/* queued, a hole */
	CHECK_EQ_U64(disk.present_chunks, 0);
	CHECK_EQ_U64(disk.cached, 0);
	for (uint64_t c = 0; c < 2; c++)
		fetch_chunk_done(&disk, 12 + c, disk.epoch, 0);
	fetch_chunk_done(&disk, 0, disk.epoch, 0);
	CHECK_EQ_U64(disk.present_chunks, 3);
	CHECK(disk.present_chunks < disk.data_chunks);	/* 1 to check */
	/* fetch_forget of the hole's bit counts nothing back. */
	fetch_forget(&fs, &disk, 6);
	CHECK(!ferry_bitmap_test(&disk.present, 6));
	CHECK_EQ_U64(disk.present_chunks, 3);
	fetch_forget(&fs, &disk, 12);
	CHECK_EQ_U64(disk.present_chunks, 2);
	CHECK_EQ_U64(disk.cached, 2 * MiB);
	teardown();
}

int
main(void)
{
	test_fetched();
	test_take_layout();
	test_late_fetch();
	return check_result("unit-sched");
}
