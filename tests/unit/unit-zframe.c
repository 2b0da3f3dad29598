/* Raw and RLE zstd frames decode with libzstd to what they were made of,
 * alone and concatenated with a compressed frame; ferry_is_zero. */
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "common/zframe.h"
#include "tests/unit/check.h"

static uint8_t *
rnd(size_t n, unsigned seed)
{
	uint8_t *p = malloc(n ? n : 1);

	srand(seed);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rand();
	return p;
}

/* Decode @z (@zn bytes) with the streaming decoder, as the client does;
 * @return the decoded size, or SIZE_MAX on a decoder error. */
static size_t
decode(const uint8_t *z, size_t zn, uint8_t *out, size_t cap)
{
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	ZSTD_inBuffer in = { z, zn, 0 };
	ZSTD_outBuffer o = { out, cap, 0 };
	size_t rc = 0;

	while (in.pos < in.size) {
		rc = ZSTD_decompressStream(dc, &o, &in);
		if (ZSTD_isError(rc)) {
			ZSTD_freeDCtx(dc);
			return SIZE_MAX;
		}
	}
	ZSTD_freeDCtx(dc);
	return rc == 0 ? o.pos : SIZE_MAX;	/* rc 0: frame complete */
}

int
main(void)
{
	static const size_t sizes[] = {
		0, 1, 4095, 128 << 10, (128 << 10) + 1, (1 << 20) + 5,
	};

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t n = sizes[i], bound = ferry_zframe_bound(n), k;
		uint8_t *data = rnd(n, (unsigned)i + 1);
		uint8_t *z = malloc(bound), *out = malloc(n + 64);

		k = ferry_zframe_raw(z, data, n);
		CHECK(k <= bound);
		CHECK_EQ_U64(k, 13 + n + 3 * (n ? (n + (128 << 10) - 1) /
						   (128 << 10) : 1));
		CHECK_EQ_U64(ZSTD_getFrameContentSize(z, k), n);
		CHECK_EQ_U64(decode(z, k, out, n + 64), n);
		CHECK(memcmp(out, data, n) == 0);

		k = ferry_zframe_rle(z, 0, n);
		CHECK(k <= 13 + 4 * (n / (128 << 10) + 1));
		memset(out, 0xAA, n + 64);
		CHECK_EQ_U64(decode(z, k, out, n + 64), n);
		CHECK(ferry_is_zero(out, n));
		k = ferry_zframe_rle(z, 0x5c, n);
		CHECK_EQ_U64(decode(z, k, out, n + 64), n);
		CHECK(n == 0 || (out[0] == 0x5c && out[n - 1] == 0x5c));
		free(data);
		free(z);
		free(out);
	}

	/* raw | compressed | RLE frames back to back: one stream. */
	{
		size_t n = 300000, cap = 3 * ZSTD_compressBound(n);
		uint8_t *a = rnd(n, 7), *b = malloc(n), *z = malloc(cap);
		uint8_t *out = malloc(3 * n), *want = calloc(3, n);
		size_t k = ferry_zframe_raw(z, a, n), c;

		for (size_t i = 0; i < n; i++)
			b[i] = (uint8_t)"ferry text "[i % 11];
		c = ZSTD_compress(z + k, cap - k, b, n, 1);
		CHECK(!ZSTD_isError(c) && c < n / 10);
		k += c;
		k += ferry_zframe_rle(z + k, 0, n);
		memcpy(want, a, n);
		memcpy(want + n, b, n);
		CHECK_EQ_U64(decode(z, k, out, 3 * n), 3 * n);
		CHECK(memcmp(out, want, 3 * n) == 0);
		/* Cut short: the decoder must not call it complete. */
		CHECK(decode(z, k - 1, out, 3 * n) == SIZE_MAX);
		free(a);
		free(b);
		free(z);
		free(out);
		free(want);
	}

	{
		uint8_t buf[70000] = { 0 };

		CHECK(ferry_is_zero(buf, 0));
		CHECK(ferry_is_zero(buf, sizeof buf));
		buf[sizeof buf - 1] = 1;
		CHECK(!ferry_is_zero(buf, sizeof buf));
		CHECK(ferry_is_zero(buf, sizeof buf - 1));
		buf[10] = 1;
		CHECK(!ferry_is_zero(buf, 11));
		CHECK(ferry_is_zero(buf, 10));
		buf[10] = 0;
		buf[64] = 1;
		CHECK(!ferry_is_zero(buf, 65));
	}
	return check_result("unit-zframe");
}
