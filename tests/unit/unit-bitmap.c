/* The presence bitmap: set/test/clear, counting, the on-disk snapshot and
 * load (tail bits past nbits never count), and concurrent setters. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "check.h"

static struct ferry_bitmap shared;

static void *
setter(void *arg)
{
	uint64_t start = (uint64_t)(uintptr_t)arg;

	for (uint64_t i = start; i < shared.nbits; i += 4)
		ferry_bitmap_set(&shared, i);
	return NULL;
}

int
main(void)
{
	struct ferry_bitmap b;
	uint8_t snap[4], raw[4];
	pthread_t t[4];

	CHECK(ferry_bitmap_init(&b, 13) == 0);
	CHECK(ferry_bitmap_bytes(13) == 2);
	CHECK(ferry_bitmap_count(&b) == 0);
	ferry_bitmap_set(&b, 0);
	ferry_bitmap_set(&b, 7);
	ferry_bitmap_set(&b, 8);
	ferry_bitmap_set(&b, 12);
	CHECK(ferry_bitmap_test(&b, 0) && ferry_bitmap_test(&b, 7));
	CHECK(ferry_bitmap_test(&b, 8) && ferry_bitmap_test(&b, 12));
	CHECK(!ferry_bitmap_test(&b, 1) && !ferry_bitmap_test(&b, 11));
	CHECK_EQ_U64(ferry_bitmap_count(&b), 4);
	ferry_bitmap_clear(&b, 7);
	CHECK(!ferry_bitmap_test(&b, 7));
	CHECK_EQ_U64(ferry_bitmap_count(&b), 3);

	/* Bit i is byte i/8, mask 1 << i%8: the on-disk form. */
	ferry_bitmap_snapshot(&b, snap);
	CHECK(snap[0] == 0x01 && snap[1] == 0x11);

	/* Loading a map whose unused tail bits are set ignores them. */
	raw[0] = 0xff;
	raw[1] = 0xff;
	ferry_bitmap_load(&b, raw);
	CHECK_EQ_U64(ferry_bitmap_count(&b), 13);
	ferry_bitmap_snapshot(&b, snap);
	CHECK(snap[1] == 0x1f);
	ferry_bitmap_free(&b);

	/* Empty bitmap. */
	CHECK(ferry_bitmap_init(&b, 0) == 0);
	CHECK_EQ_U64(ferry_bitmap_count(&b), 0);
	ferry_bitmap_free(&b);

	/* Four threads setting interleaved bits of the same bytes lose none. */
	CHECK(ferry_bitmap_init(&shared, 100003) == 0);
	for (uintptr_t i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, setter, (void *)i);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ_U64(ferry_bitmap_count(&shared), 100003);
	ferry_bitmap_free(&shared);
	return check_result("unit-bitmap");
}
