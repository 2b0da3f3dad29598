/* Unit tests: a fetch run (fs/fetch.c) against an in-memory source, with
 * the mount's own workers and no mount: its chunks are done one by one as
 * the bytes pass each one's end (run_progress), so that a reader of the
 * first chunk of a run never waits for the whole run; and a chunk whose
 * bytes differ from the source's digest is never marked present, and is
 * fetched again. A disk of 16 chunks of 1 MiB, cached in a temporary
 * file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/digest.h"
#include "common/util.h"
#include "fs/ferryfs.h"
#include "tests/unit/check.h"
#include "tests/unit/fsdisk.h"

#define MiB (UINT64_C(1) << 20)
#define NCHUNKS 16
#define SIZE (NCHUNKS * MiB)

/* The in-memory source: it sends a range in 64 KiB pieces, and can stop
 * before the piece that passes @hold_at until released, or send a wrong
 * in-band digest for chunk @bad_chunk @bad_left times. */
static struct {
	uint8_t *img;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t hold_at;
	bool held, release;
	int64_t bad_chunk;
	int bad_left;
	unsigned requests;
} F = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static int
fake_extents(struct ferry_source *src, unsigned disk, struct ferry_extents *m)
{
	(void)src;
	(void)disk;
	return ferry_extents_add(m, 0, SIZE);
}

static int
fake_pread(struct ferry_source *src, unsigned disk, void *buf, size_t len,
	   uint64_t off)
{
	(void)src;
	(void)disk;
	memcpy(buf, F.img + off, len);
	return 0;
}

static int
fake_digests(struct ferry_source *src, unsigned disk, uint64_t chunk,
	     uint64_t first, size_t count, struct ferry_digest *out)
{
	(void)src;
	(void)disk;
	for (size_t i = 0; i < count; i++)
		ferry_digest_of(F.img + (first + i) * chunk, chunk, &out[i]);
	return 0;
}

static int
fake_fetch(struct ferry_source *src, unsigned disk, uint64_t off,
	   uint64_t len, const struct ferry_sink *sink)
{
	(void)src;
	(void)disk;
	pthread_mutex_lock(&F.lock);
	F.requests++;
	pthread_mutex_unlock(&F.lock);
	if (sink->digest_block && sink->digests) {
		uint64_t b = sink->digest_block, first = off / b;
		uint64_t n = (off + len + b - 1) / b - first;
		struct ferry_digest dg[64];

		for (uint64_t i = 0; i < n && i < 64; i++) {
			ferry_digest_of(F.img + (first + i) * b,
					(size_t)FERRY_MIN(b, SIZE - (first + i) * b),
					&dg[i]);
			pthread_mutex_lock(&F.lock);
			if ((int64_t)(first + i) == F.bad_chunk &&
			    F.bad_left > 0) {
				F.bad_left--;
				dg[i].b[0] ^= 0xff;
			}
			pthread_mutex_unlock(&F.lock);
		}
		sink->digests(sink->arg, first, dg, (size_t)FERRY_MIN(n, 64));
	}
	for (uint64_t pos = off; pos < off + len;) {
		size_t k = (size_t)FERRY_MIN(off + len - pos, (uint64_t)65536);
		int r;

		pthread_mutex_lock(&F.lock);
		if (pos + k > F.hold_at && !F.release) {
			F.held = true;
			pthread_cond_broadcast(&F.cond);
			while (!F.release)
				pthread_cond_wait(&F.cond, &F.lock);
		}
		pthread_mutex_unlock(&F.lock);
		if (sink->wire && (r = sink->wire(sink->arg, k)) < 0)
			return r;
		if ((r = sink->data(sink->arg, pos, F.img + pos, k)) < 0)
			return r;
		pos += k;
	}
	return 0;
}

static void
fake_close(struct ferry_source *src)
{
	(void)src;
}

static const struct ferry_backend fake_backend = {
	.name = "fake", .close = fake_close, .extents = fake_extents,
	.pread = fake_pread, .fetch = fake_fetch, .digests = fake_digests,
};

static struct ferryfs fs;
static struct fdisk disk;
static struct ferry_source src;
static struct ferry_disk_info info;

static void
setup(void)
{
	struct ferry_extents m;
	char path[] = "/tmp/unit-run.XXXXXX";

	memset(&fs, 0, sizeof fs);
	memset(&disk, 0, sizeof disk);
	memset(&src, 0, sizeof src);
	info = (struct ferry_disk_info){ .size = SIZE, .sector_size = 512,
					 .name = "d" };
	src.ops = &fake_backend;
	src.ndisks = 1;
	src.disks = &info;
	pthread_mutex_init(&src.health.lock, NULL);
	fs.src = &src;
	fs.disks = &disk;
	fs.ndisks = 1;
	fs.streams = 2;
	fs.chunk = MiB;
	fs.readahead = 0;
	fs.verify = true;
	ferry_adapt_init(&fs.adapt);
	disk.info = info;
	disk.verify = true;
	ferry_extents_init(&m, SIZE);
	CHECK(ferry_extents_add(&m, 0, SIZE) == 0);
	fsdisk_init(&fs, &disk, NCHUNKS, MiB, &m);
	ferry_extents_free(&m);
	CHECK_EQ_U64(disk.data_chunks, NCHUNKS);
	disk.data_fd = mkstemp(path);
	CHECK(disk.data_fd >= 0 && ftruncate(disk.data_fd, SIZE) == 0);
	unlink(path);
	F.hold_at = UINT64_MAX;
	F.held = F.release = false;
	F.bad_chunk = -1;
	F.bad_left = 0;
	F.requests = 0;
	CHECK(fetch_start(&fs) == 0);
}

static void
teardown(void)
{
	fs.stop = true;
	fetch_stop(&fs);
	close(disk.data_fd);
	fsdisk_free(&disk);
	free(fs.workers);
}

/* The cache file's bytes of [off, off + len) are the source's. */
static bool
cached_right(uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len);
	bool ok = buf && pread(disk.data_fd, buf, len, (off_t)off) ==
			 (ssize_t)len && memcmp(buf, F.img + off, len) == 0;

	free(buf);
	return ok;
}

struct reader {
	uint64_t off, len;
	int r;
};

static void *
reader_main(void *arg)
{
	struct reader *rd = arg;

	rd->r = fetch_ensure(&fs, &disk, rd->off, rd->len, NULL);
	return NULL;
}

/* One run of 8 chunks, held half-way through chunk 2: chunks 0 and 1 are
 * done, present and right, the rest not yet. */
static void
test_progress(void)
{
	struct reader rd = { 0, 8 * MiB, 1 };
	pthread_t t;

	setup();
	F.hold_at = 2 * MiB + MiB / 2;
	CHECK(pthread_create(&t, NULL, reader_main, &rd) == 0);
	pthread_mutex_lock(&F.lock);
	while (!F.held)
		pthread_cond_wait(&F.cond, &F.lock);
	pthread_mutex_unlock(&F.lock);
	CHECK_EQ_U64(F.requests, 1);		/* one request, one run */
	CHECK(ferry_bitmap_test(&disk.present, 0));
	CHECK(ferry_bitmap_test(&disk.present, 1));
	for (uint64_t c = 2; c < NCHUNKS; c++)
		CHECK(!ferry_bitmap_test(&disk.present, c));
	CHECK_EQ_U64(disk.present_chunks, 2);
	CHECK(cached_right(0, 2 * MiB));
	pthread_mutex_lock(&F.lock);
	F.release = true;
	pthread_cond_broadcast(&F.cond);
	pthread_mutex_unlock(&F.lock);
	pthread_join(t, NULL);
	CHECK(rd.r == 0);
	CHECK_EQ_U64(disk.present_chunks, 8);
	CHECK(cached_right(0, 8 * MiB));
	CHECK_EQ_U64(disk.mismatches, 0);
	teardown();
}

/* Chunk 5's digest differs once: the chunks before it are done, chunk 5
 * is not marked present from those bytes, and is fetched again. */
static void
test_bad_digest(void)
{
	struct reader rd = { 0, 8 * MiB, 1 };

	setup();
	F.bad_chunk = 5;
	F.bad_left = 1;
	reader_main(&rd);
	CHECK(rd.r == 0);
	CHECK_EQ_U64(disk.mismatches, 1);
	CHECK(F.requests >= 2);
	CHECK_EQ_U64(disk.present_chunks, 8);
	CHECK(cached_right(0, 8 * MiB));
	teardown();
	/* Differing every time: never present, the read fails. */
	setup();
	F.bad_chunk = 3;
	F.bad_left = 1000;
	rd = (struct reader){ 3 * MiB, MiB, 0 };
	reader_main(&rd);
	CHECK(rd.r < 0);
	CHECK(!ferry_bitmap_test(&disk.present, 3));
	CHECK_EQ_U64(disk.present_chunks, 0);
	teardown();
}

int
main(void)
{
	uint64_t x = 88172645463325252u;	/* xorshift: no two chunks alike */

	F.img = malloc(SIZE);
	for (size_t i = 0; i < SIZE; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		F.img[i] = (uint8_t)x;
	}
	test_progress();
	test_bad_digest();
	free(F.img);
	return check_result("unit-run");
}
