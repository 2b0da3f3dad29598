/* Extent maps: building, queries, and the JSON wire form both ways,
 * including the malformed maps a hostile or broken server could send. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "common/chunk.h"
#include "common/extents.h"
#include "check.h"

static void
test_build(void)
{
	struct ferry_extents m;

	ferry_extents_init(&m, 1000);
	CHECK(ferry_extents_add(&m, 100, 50) == 0);
	CHECK(ferry_extents_add(&m, 150, 50) == 0);	/* merges */
	CHECK(m.n == 1 && m.v[0].len == 100);
	CHECK(ferry_extents_add(&m, 120, 10) == -EINVAL); /* overlaps */
	CHECK(ferry_extents_add(&m, 990, 20) == -EINVAL); /* past end */
	CHECK(ferry_extents_add(&m, 500, 0) == 0);	/* ignored */
	CHECK(ferry_extents_add(&m, 900, 100) == 0);
	CHECK(m.n == 2);
	CHECK_EQ_U64(m.data_bytes, 200);
	CHECK_EQ_U64(ferry_extents_data_in(&m, 0, 1000), 200);
	CHECK_EQ_U64(ferry_extents_data_in(&m, 0, 100), 0);
	CHECK_EQ_U64(ferry_extents_data_in(&m, 150, 800), 50 + 50);
	CHECK_EQ_U64(ferry_extents_data_in(&m, 199, 1), 1);
	CHECK_EQ_U64(ferry_extents_data_in(&m, 200, 700), 0);
	CHECK_EQ_U64(ferry_extents_data_in(&m, 950, 1000), 50); /* clipped */
	CHECK_EQ_U64(ferry_extents_data_in(&m, 2000, 10), 0);
	CHECK(ferry_extents_find(&m, 0) == 0);
	CHECK(ferry_extents_find(&m, 199) == 0);
	CHECK(ferry_extents_find(&m, 200) == 1);
	CHECK(ferry_extents_find(&m, 1000) == 2);
	CHECK(ferry_extents_all_data(&m) == 0);
	CHECK(m.n == 1 && m.data_bytes == 1000);
	ferry_extents_free(&m);
}

static void
test_json_roundtrip(void)
{
	struct ferry_extents m, back;
	char why[200], *text;

	ferry_extents_init(&m, 1u << 20);
	ferry_extents_add(&m, 4096, 8192);
	ferry_extents_add(&m, 65536, 1000);
	ferry_extents_add(&m, (1u << 20) - 10, 10);
	text = ferry_extents_to_json(&m);
	CHECK(text != NULL);
	CHECK(strcmp(text, "{\"size\":1048576,\"extents\":[[0,4096,\"zero\"],"
		     "[4096,8192,\"data\"],[12288,53248,\"zero\"],"
		     "[65536,1000,\"data\"],[66536,982030,\"zero\"],"
		     "[1048566,10,\"data\"]]}") == 0);
	CHECK(ferry_extents_from_json(text, strlen(text), 1u << 20, &back, why,
				      sizeof why) == 0);
	CHECK(back.n == 3 && back.data_bytes == m.data_bytes);
	for (size_t i = 0; i < back.n && i < m.n; i++)
		CHECK(back.v[i].off == m.v[i].off &&
		      back.v[i].len == m.v[i].len);
	ferry_extents_free(&back);
	/* Wrong expected size is refused. */
	CHECK(ferry_extents_from_json(text, strlen(text), 4096, &back, why,
				      sizeof why) == -EINVAL);
	free(text);
	ferry_extents_free(&m);

	/* An empty disk. */
	ferry_extents_init(&m, 0);
	text = ferry_extents_to_json(&m);
	CHECK(ferry_extents_from_json(text, strlen(text), 0, &back, why,
				      sizeof why) == 0 && back.n == 0);
	free(text);
}

static void
test_json_bad(void)
{
	static const char *bad[] = {
		"",
		"[]",
		"{\"size\":10}",
		"{\"size\":10,\"extents\":{}}",
		"{\"size\":-1,\"extents\":[]}",
		"{\"size\":10,\"extents\":[]}",			/* gap */
		"{\"size\":10,\"extents\":[[0,5,\"data\"]]}",	/* short */
		"{\"size\":10,\"extents\":[[0,5,\"data\"],[4,6,\"zero\"]]}",
		"{\"size\":10,\"extents\":[[0,0,\"data\"],[0,10,\"zero\"]]}",
		"{\"size\":10,\"extents\":[[0,11,\"data\"]]}",
		"{\"size\":10,\"extents\":[[0,10,\"hole\"]]}",
		"{\"size\":10,\"extents\":[[0,10]]}",
		"{\"size\":10,\"extents\":[[0,10,\"data\",1]]}",
		"{\"size\":10,\"extents\":[[\"0\",10,\"data\"]]}",
		"{\"size\":10,\"extents\":[[0,10,\"data\"]],\"x\":1}",
		"{\"size\":10,\"size\":10,\"extents\":[[0,10,\"data\"]]}",
		"{\"size\":18446744073709551615,\"extents\":[]}",
		"{\"size\":9223372036854775807,\"extents\":[[0,9223372036854775807,\"data\"],[9223372036854775807,1,\"data\"]]}",
	};
	struct ferry_extents m;
	char why[200];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why[0] = '\0';
		int r = ferry_extents_from_json(bad[i], strlen(bad[i]),
						UINT64_MAX, &m, why,
						sizeof why);
		if (r != -EINVAL)
			fprintf(stderr, "accepted bad map %zu: %s\n", i,
				bad[i]);
		CHECK(r == -EINVAL);
		CHECK(why[0] != '\0');
		CHECK(m.v == NULL && m.n == 0);
	}
}

static void
test_chunks(void)
{
	struct ferry_extents m;
	uint64_t first, last;
	const uint64_t K = 1024, M = K * K;

	CHECK_EQ_U64(ferry_chunk_count(0, M), 0);
	CHECK_EQ_U64(ferry_chunk_count(1, M), 1);
	CHECK_EQ_U64(ferry_chunk_count(M, M), 1);
	CHECK_EQ_U64(ferry_chunk_count(M + 1, M), 2);
	CHECK_EQ_U64(ferry_chunk_count(4 * K * K * M, M), 4 * M); /* 4 TiB */

	CHECK(ferry_chunk_span(0, 1, 10 * M, M, &first, &last));
	CHECK(first == 0 && last == 0);
	CHECK(ferry_chunk_span(M - 1, 2, 10 * M, M, &first, &last));
	CHECK(first == 0 && last == 1);
	CHECK(ferry_chunk_span(M, M, 10 * M, M, &first, &last));
	CHECK(first == 1 && last == 1);
	CHECK(ferry_chunk_span(9 * M, 5 * M, 10 * M, M, &first, &last));
	CHECK(first == 9 && last == 9);		/* clipped at the end */
	CHECK(!ferry_chunk_span(10 * M, 1, 10 * M, M, &first, &last));
	CHECK(!ferry_chunk_span(0, 0, 10 * M, M, &first, &last));
	/* A disk that is not a multiple of the chunk size. */
	CHECK(ferry_chunk_span(10 * M, 100, 10 * M + 50, M, &first, &last));
	CHECK(first == 10 && last == 10);

	ferry_extents_init(&m, 10 * M + 50);
	ferry_extents_add(&m, M + 512, 1024);	/* inside chunk 1 */
	ferry_extents_add(&m, 3 * M - 10, 20);	/* straddles 2 and 3 */
	ferry_extents_add(&m, 10 * M, 50);	/* the short last chunk */
	CHECK_EQ_U64(ferry_chunk_data(&m, M, 0), 0);
	CHECK_EQ_U64(ferry_chunk_data(&m, M, 1), 1024);
	CHECK_EQ_U64(ferry_chunk_data(&m, M, 2), 10);
	CHECK_EQ_U64(ferry_chunk_data(&m, M, 3), 10);
	CHECK_EQ_U64(ferry_chunk_data(&m, M, 4), 0);
	CHECK_EQ_U64(ferry_chunk_data(&m, M, 10), 50);
	/* A 4 KiB read in the hole part of chunk 1 needs nothing. */
	CHECK_EQ_U64(ferry_chunk_data_in_range(&m, M, 1, M + 8192, 4096), 0);
	CHECK_EQ_U64(ferry_chunk_data_in_range(&m, M, 1, M, 4096), 1024);
	CHECK_EQ_U64(ferry_chunk_data_in_range(&m, M, 2, 0, 100 * M), 10);
	CHECK_EQ_U64(ferry_chunk_data_in_range(&m, M, 3, 3 * M, 5), 5);
	ferry_extents_free(&m);
}

/* Known-zero blocks leave the map; partial blocks and the short last
 * block are cut right. */
static void
test_minus_blocks(void)
{
	struct ferry_extents m, out;
	struct ferry_bitmap z;
	const uint64_t G = 64 << 10, size = 10 * G + 100;

	ferry_extents_init(&m, size);
	ferry_extents_add(&m, 0, 3 * G);		/* blocks 0-2 */
	ferry_extents_add(&m, 4 * G + 10, G);		/* parts of 4 and 5 */
	ferry_extents_add(&m, 10 * G, 100);		/* short block 10 */
	ferry_bitmap_init(&z, 11);
	ferry_bitmap_set(&z, 1);
	ferry_bitmap_set(&z, 5);
	ferry_bitmap_set(&z, 10);
	ferry_bitmap_set(&z, 7);			/* a hole already */
	ferry_extents_init(&out, size);
	CHECK(ferry_extents_minus_blocks(&m, &z, G, &out) == 0);
	CHECK_EQ_U64(out.n, 3);
	CHECK_EQ_U64(out.v[0].off, 0);
	CHECK_EQ_U64(out.v[0].len, G);
	CHECK_EQ_U64(out.v[1].off, 2 * G);
	CHECK_EQ_U64(out.v[1].len, G);
	CHECK_EQ_U64(out.v[2].off, 4 * G + 10);
	CHECK_EQ_U64(out.v[2].len, G - 10);
	CHECK_EQ_U64(out.data_bytes, 3 * G - 10);
	ferry_extents_free(&out);

	/* No zero blocks: the same map. */
	ferry_bitmap_free(&z);
	ferry_bitmap_init(&z, 11);
	ferry_extents_init(&out, size);
	CHECK(ferry_extents_minus_blocks(&m, &z, G, &out) == 0);
	CHECK_EQ_U64(out.n, m.n);
	CHECK_EQ_U64(out.data_bytes, m.data_bytes);
	ferry_extents_free(&out);
	ferry_extents_free(&m);
	ferry_bitmap_free(&z);
}

/* A used map's holes read as zeros (the usedmap backend's pread): only the
 * bytes outside every data range are cleared, at any offset and length,
 * across ranges, before the first and after the last. */
static void
test_zero_holes(void)
{
	struct ferry_extents m;
	uint8_t buf[1000], want[1000];

	ferry_extents_init(&m, 10000);
	CHECK(ferry_extents_add(&m, 1100, 100) == 0);
	CHECK(ferry_extents_add(&m, 1300, 50) == 0);
	CHECK(ferry_extents_add(&m, 1900, 500) == 0);
	for (uint64_t off = 900; off < 1400; off += 37)
		for (size_t len = 1; len <= sizeof buf; len += 111) {
			memset(buf, 0xa5, sizeof buf);
			ferry_extents_zero_holes(&m, buf, off, len);
			for (size_t k = 0; k < sizeof buf; k++) {
				uint64_t at = off + k;
				bool data = (at >= 1100 && at < 1200) ||
					    (at >= 1300 && at < 1350) ||
					    (at >= 1900 && at < 2400);

				want[k] = k < len && !data ? 0 : 0xa5;
			}
			CHECK(memcmp(buf, want, sizeof buf) == 0);
		}
	ferry_extents_free(&m);
	/* No data at all: everything is zeroed. */
	ferry_extents_init(&m, 10000);
	memset(buf, 0xa5, sizeof buf);
	ferry_extents_zero_holes(&m, buf, 5000, sizeof buf);
	memset(want, 0, sizeof want);
	CHECK(memcmp(buf, want, sizeof buf) == 0);
	ferry_extents_free(&m);
}

int
main(void)
{
	test_zero_holes();
	test_minus_blocks();
	test_build();
	test_json_roundtrip();
	test_json_bad();
	test_chunks();
	return check_result("unit-extents");
}
