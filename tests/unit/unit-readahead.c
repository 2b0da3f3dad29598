/* Unit tests: a reader's readahead window (fs/readahead.c). */
#include <string.h>

#include "fs/readahead.h"
#include "tests/unit/check.h"

#define MiB (UINT64_C(1) << 20)

/* A 1 GiB disk of 1 MiB chunks, windows from 4 chunks up to 64 MiB. */
static const struct ra_limits lim = {
	.max = 64 * MiB, .start = 4 * MiB, .size = 1024 * MiB,
	.back = 256 << 10, .ahead = 2 * MiB,
};

/* A sequential reader of 128 KiB reads that waits for its chunks: each
 * window is queued when the reader reaches the start of the one before,
 * twice as large, up to the maximum, and the windows follow each other
 * with neither gap nor overlap. */
static void
test_sequential(void)
{
	struct fetch_ra ra;
	uint64_t from = 0, to = 0, queued = 0, windows[16];
	size_t n = 0;

	ra_init(&ra);
	CHECK(ra_first(&ra));
	/* The first read only starts the reader. */
	CHECK(!ra_plan(&ra, &lim, 0, 128 << 10, 1, &from, &to));
	CHECK(!ra_first(&ra));
	for (uint64_t a = 128 << 10; a < 512 * MiB && n < 16; a += 128 << 10)
		if (ra_plan(&ra, &lim, a, a + (128 << 10), 1, &from, &to)) {
			CHECK(n == 0 || from == queued);
			windows[n++] = to - from;
			queued = to;
			CHECK(from >= a + (128 << 10));	/* ahead of it */
		}
	CHECK(n >= 6);
	CHECK_EQ_U64(windows[0], 4 * MiB);
	CHECK_EQ_U64(windows[1], 8 * MiB);
	CHECK_EQ_U64(windows[2], 16 * MiB);
	CHECK_EQ_U64(windows[3], 32 * MiB);
	CHECK_EQ_U64(windows[4], 64 * MiB);
	CHECK_EQ_U64(windows[5], 64 * MiB);	/* the maximum */
	ra_destroy(&ra);
}

/* A jump starts small again; reads a little out of order (the kernel's
 * readahead on several threads) do not. */
static void
test_jump(void)
{
	struct fetch_ra ra;
	uint64_t from, to;

	ra_init(&ra);
	ra_plan(&ra, &lim, 0, MiB, 1, &from, &to);
	CHECK(ra_plan(&ra, &lim, MiB, 2 * MiB, 1, &from, &to));
	CHECK_EQ_U64(from, 2 * MiB);
	CHECK_EQ_U64(to, 6 * MiB);
	/* Behind the last read, inside the window: no jump, nothing new. */
	CHECK(!ra_plan(&ra, &lim, MiB + 4096, MiB + 8192, 0, &from, &to));
	CHECK_EQ_U64(ra.window, 8 * MiB);
	/* Far away: a new reader. */
	CHECK(!ra_plan(&ra, &lim, 700 * MiB, 701 * MiB, 1, &from, &to));
	CHECK_EQ_U64(ra.window, 4 * MiB);
	CHECK_EQ_U64(ra.next, 701 * MiB);
	CHECK(ra_plan(&ra, &lim, 701 * MiB, 702 * MiB, 1, &from, &to));
	CHECK_EQ_U64(from, 702 * MiB);
	CHECK_EQ_U64(to, 706 * MiB);
	ra_destroy(&ra);
}

/* A reader past all it queued that finds its bytes cached (behind
 * hydration, or ferry-convert) queues nothing; its first read that waits
 * starts the windows again. */
static void
test_follows_cached(void)
{
	struct fetch_ra ra;
	uint64_t from, to;

	ra_init(&ra);
	ra_plan(&ra, &lim, 0, MiB, 1, &from, &to);
	/* Its bytes are there before it asks: nothing queued. */
	for (uint64_t a = MiB; a < 20 * MiB; a += MiB)
		CHECK(!ra_plan(&ra, &lim, a, a + MiB, 0, &from, &to));
	CHECK_EQ_U64(ra.next, 20 * MiB);
	/* A read that waits: a window again, from where it is. */
	CHECK(ra_plan(&ra, &lim, 20 * MiB, 21 * MiB, 1, &from, &to));
	CHECK_EQ_U64(from, 21 * MiB);
	CHECK_EQ_U64(to, 25 * MiB);
	/* Inside its windows, a reader whose bytes are there goes on
	 * queueing: it has bytes queued ahead of it. */
	CHECK(ra_plan(&ra, &lim, 21 * MiB, 22 * MiB, 0, &from, &to));
	CHECK_EQ_U64(from, 25 * MiB);
	ra_destroy(&ra);
}

/* -o readahead=0: nothing is ever queued, but the reader is followed. */
static void
test_none(void)
{
	struct ra_limits l0 = lim;
	struct fetch_ra ra;
	uint64_t from, to;

	l0.max = 0;
	ra_init(&ra);
	for (uint64_t a = 0; a < 16 * MiB; a += MiB)
		CHECK(!ra_plan(&ra, &l0, a, a + MiB, 1, &from, &to));
	CHECK_EQ_U64(ra.next, 16 * MiB);
	CHECK(ra_follows(&ra, &l0, 16 * MiB, 16 * MiB + 4096));
	ra_destroy(&ra);
}

/* ra_follows(): a read that goes on from a random one is a small read
 * still; only the next one is sequential. Up to lim.back before and
 * lim.ahead after where the last ended goes on; anything else is a jump. */
static void
test_follows(void)
{
	struct fetch_ra ra;

	ra_init(&ra);
	CHECK(!ra_follows(&ra, &lim, 100 * MiB, 100 * MiB + 4096));
	CHECK(!ra_first(&ra));
	CHECK(!ra.going);
	/* On from it: taken as going, not yet sequential. */
	CHECK(!ra_follows(&ra, &lim, 100 * MiB + 4096, 100 * MiB + 8192));
	CHECK(ra.going);
	CHECK(ra_follows(&ra, &lim, 100 * MiB + 8192, 100 * MiB + 12288));
	/* Within reach either side. */
	CHECK(ra_follows(&ra, &lim, 100 * MiB + 12288 - (256 << 10),
			 100 * MiB + 12288));
	CHECK(ra_follows(&ra, &lim, 102 * MiB, 102 * MiB + 4096));
	/* Beyond: a jump, which also restarts the window. */
	CHECK(!ra_follows(&ra, &lim, 300 * MiB, 300 * MiB + 4096));
	CHECK(!ra.going);
	CHECK_EQ_U64(ra.window, 4 * MiB);
	CHECK_EQ_U64(ra.next, 300 * MiB + 4096);
	/* A read through holes goes on (ra_note). */
	ra_note(&ra, 310 * MiB);
	CHECK(ra.going);
	CHECK(ra_follows(&ra, &lim, 310 * MiB, 310 * MiB + 4096));
	ra_destroy(&ra);
}

/* The last window ends at the disk's end. */
static void
test_disk_end(void)
{
	struct ra_limits small = lim;
	struct fetch_ra ra;
	uint64_t from, to;

	small.size = 3 * MiB + 12345;
	ra_init(&ra);
	ra_plan(&ra, &small, 0, MiB, 1, &from, &to);
	CHECK(ra_plan(&ra, &small, MiB, 2 * MiB, 1, &from, &to));
	CHECK_EQ_U64(to, small.size);
	/* Nothing left to queue past it. */
	CHECK(!ra_plan(&ra, &small, 2 * MiB, small.size, 1, &from, &to) ||
	      to > from);
	ra_destroy(&ra);
}

int
main(void)
{
	test_sequential();
	test_jump();
	test_follows_cached();
	test_none();
	test_follows();
	test_disk_end();
	return check_result("unit-readahead");
}
