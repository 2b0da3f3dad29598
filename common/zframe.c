/* ferry — raw and RLE zstd frames. See zframe.h; format: RFC 8878 3.1. */
#include <string.h>

#include "common/zframe.h"

#define ZMAGIC 0xFD2FB528u
#define BLOCK_MAX (128u << 10)	/* largest block of any frame */
#define HDR 13			/* magic, descriptor, 8-byte content size */

enum { BLOCK_RAW = 0, BLOCK_RLE = 1 };

static uint8_t *
put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

/* Single segment (no window descriptor), 8-byte content size, no
 * checksum, no dictionary: descriptor 0b11100000. The content size lets a
 * decoder check the length; TLS already protects the bytes. */
static uint8_t *
put_header(uint8_t *p, size_t n)
{
	p = put_le(p, ZMAGIC, 4);
	*p++ = 0xE0;
	return put_le(p, n, 8);
}

static uint8_t *
put_block_header(uint8_t *p, int type, size_t size, bool last)
{
	return put_le(p, (uint32_t)last | (uint32_t)type << 1 |
		      (uint32_t)size << 3, 3);
}

size_t
ferry_zframe_bound(size_t n)
{
	/* Raw: 3 bytes of header per block; RLE: 4 (matters when n < 1). */
	return HDR + n + 4 * (n / BLOCK_MAX + 1);
}

size_t
ferry_zframe_raw(uint8_t *out, const void *in, size_t n)
{
	uint8_t *p = put_header(out, n);
	const uint8_t *s = in;

	do {
		size_t k = n < BLOCK_MAX ? n : BLOCK_MAX;

		p = put_block_header(p, BLOCK_RAW, k, k == n);
		memcpy(p, s, k);
		p += k;
		s += k;
		n -= k;
	} while (n > 0);
	return (size_t)(p - out);
}

size_t
ferry_zframe_rle(uint8_t *out, uint8_t byte, size_t n)
{
	uint8_t *p = put_header(out, n);

	do {
		size_t k = n < BLOCK_MAX ? n : BLOCK_MAX;

		p = put_block_header(p, BLOCK_RLE, k, k == n);
		*p++ = byte;
		n -= k;
	} while (n > 0);
	return (size_t)(p - out);
}

bool
ferry_is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;
	static const uint8_t zeros[64];

	/* The first 64 bytes decide most cases; then each half of the rest
	 * is compared with the part already known to be zero. */
	if (n <= sizeof zeros)
		return memcmp(b, zeros, n) == 0;
	if (memcmp(b, zeros, sizeof zeros) != 0)
		return false;
	return memcmp(b, b + sizeof zeros, n - sizeof zeros) == 0;
}
