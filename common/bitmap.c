/* ferry — bitmap. See bitmap.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"

int
ferry_bitmap_init(struct ferry_bitmap *b, uint64_t nbits)
{
	b->nbits = nbits;
	b->bytes = calloc(ferry_bitmap_bytes(nbits) + 1, 1);
	return b->bytes ? 0 : -ENOMEM;
}

void
ferry_bitmap_free(struct ferry_bitmap *b)
{
	free(b->bytes);
	b->bytes = NULL;
	b->nbits = 0;
}

static uint8_t
tail_mask(uint64_t nbits)
{
	unsigned r = (unsigned)(nbits & 7);

	return r ? (uint8_t)((1u << r) - 1) : 0xff;
}

uint64_t
ferry_bitmap_count(const struct ferry_bitmap *b)
{
	size_t n = ferry_bitmap_bytes(b->nbits);
	uint64_t c = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t v = __atomic_load_n(&b->bytes[i], __ATOMIC_RELAXED);

		if (i == n - 1)
			v &= tail_mask(b->nbits);
		c += (uint64_t)__builtin_popcount(v);
	}
	return c;
}

void
ferry_bitmap_snapshot(const struct ferry_bitmap *b, uint8_t *out)
{
	size_t n = ferry_bitmap_bytes(b->nbits);

	for (size_t i = 0; i < n; i++)
		out[i] = __atomic_load_n(&b->bytes[i], __ATOMIC_ACQUIRE);
	if (n)
		out[n - 1] &= tail_mask(b->nbits);
}

void
ferry_bitmap_load(struct ferry_bitmap *b, const uint8_t *in)
{
	size_t n = ferry_bitmap_bytes(b->nbits);

	memcpy(b->bytes, in, n);
	if (n)
		b->bytes[n - 1] &= tail_mask(b->nbits);
}
