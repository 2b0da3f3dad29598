/* ferry — a fixed-size bitmap safe for concurrent readers and setters.
 *
 * Bit i lives in byte i/8 at mask 1 << (i%8), so the bytes are the on-disk
 * form as they are (no byte-order conversion). Set and test are atomic;
 * readers never take a lock.
 */
#ifndef FERRY_BITMAP_H
#define FERRY_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ferry_bitmap {
	uint64_t nbits;
	uint8_t *bytes;
};

static inline size_t
ferry_bitmap_bytes(uint64_t nbits)
{
	return (size_t)((nbits + 7) / 8);
}

/*! ferry_bitmap_init() : all-clear bitmap of @nbits. @return 0 or -ENOMEM. */
int ferry_bitmap_init(struct ferry_bitmap *b, uint64_t nbits);
void ferry_bitmap_free(struct ferry_bitmap *b);

static inline bool
ferry_bitmap_test(const struct ferry_bitmap *b, uint64_t i)
{
	return __atomic_load_n(&b->bytes[i >> 3], __ATOMIC_ACQUIRE) &
	       (1u << (i & 7));
}

static inline void
ferry_bitmap_set(struct ferry_bitmap *b, uint64_t i)
{
	__atomic_fetch_or(&b->bytes[i >> 3], (uint8_t)(1u << (i & 7)),
			  __ATOMIC_RELEASE);
}

static inline void
ferry_bitmap_clear(struct ferry_bitmap *b, uint64_t i)
{
	__atomic_fetch_and(&b->bytes[i >> 3], (uint8_t)~(1u << (i & 7)),
			   __ATOMIC_RELEASE);
}

/*! ferry_bitmap_take() : clear bit @i; @return whether it was set (one
 * caller wins when several race). */
static inline bool
ferry_bitmap_take(struct ferry_bitmap *b, uint64_t i)
{
	uint8_t bit = (uint8_t)(1u << (i & 7));

	return __atomic_fetch_and(&b->bytes[i >> 3], (uint8_t)~bit,
				  __ATOMIC_ACQ_REL) & bit;
}

/*! ferry_bitmap_count() : number of set bits. */
uint64_t ferry_bitmap_count(const struct ferry_bitmap *b);

/*! ferry_bitmap_snapshot() : copy the bytes atomically-per-byte into @out,
 * clearing the unused high bits of the last byte. */
void ferry_bitmap_snapshot(const struct ferry_bitmap *b, uint8_t *out);

/*! ferry_bitmap_load() : replace the bits from @in (same size); bits past
 * nbits are ignored. */
void ferry_bitmap_load(struct ferry_bitmap *b, const uint8_t *in);

#endif
