/* Sizes ("-o chunk=1M") and HTTP Range headers as ferry-export reads them. */
#include <errno.h>
#include <string.h>

#include "common/util.h"
#include "check.h"

static void
test_sizes(void)
{
	static const struct { const char *s; uint64_t v; } good[] = {
		{ "0", 0 }, { "4096", 4096 }, { "64K", 65536 },
		{ "64k", 65536 }, { "1M", 1u << 20 }, { "1MiB", 1u << 20 },
		{ "1MB", 1u << 20 }, { "2G", 2ull << 30 }, { "3T", 3ull << 40 },
		{ "18446744073709551615", UINT64_MAX },
	};
	static const char *bad[] = {
		"", "K", "-1", "1X", "1 M", "1MM", "1.5M", " 1",
		"18446744073709551616", "16777216T", "1Bi", "0x10", "1KiBB",
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		CHECK(ferry_parse_size(good[i].s, &v) == 0);
		CHECK_EQ_U64(v, good[i].v);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int r = ferry_parse_size(bad[i], &v);

		if (r == 0)
			fprintf(stderr, "accepted size \"%s\"\n", bad[i]);
		CHECK(r == -EINVAL || r == -ERANGE);
	}
}

static void
test_if_match(void)
{
	CHECK(ferry_if_match("\"g1\"", "g1"));
	CHECK(ferry_if_match("*", "g1"));
	CHECK(ferry_if_match(" \"x\" , \"g1\" ", "g1"));
	CHECK(!ferry_if_match("\"g2\"", "g1"));
	CHECK(!ferry_if_match("g1", "g1"));
	CHECK(!ferry_if_match("W/\"g1\"", "g1"));
	CHECK(!ferry_if_match("\"g1", "g1"));
	CHECK(!ferry_if_match("\"g1\"x", "g1"));
	CHECK(!ferry_if_match("", "g1"));
	CHECK(!ferry_if_match(",,", "g1"));
	CHECK(!ferry_if_match("\"\"", "g1"));
	CHECK(ferry_if_match("\"\"", ""));
}

static void
test_durations(void)
{
	static const struct { const char *s; double v; } good[] = {
		{ "0", 0 }, { "30", 30 }, { "30s", 30 }, { "1.5", 1.5 },
		{ "5m", 300 }, { "2h", 7200 }, { "0.25s", 0.25 }, { "7.", 7 },
	};
	static const char *bad[] = {
		"", "s", "-1", "1x", "1 s", "1ss", ".", "1e3", " 1", "5d",
		"99999999999", "1.2.3",
	};
	double v;

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		CHECK(ferry_parse_duration(good[i].s, &v) == 0);
		CHECK(v > good[i].v - 1e-9 && v < good[i].v + 1e-9);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (ferry_parse_duration(bad[i], &v) == 0)
			fprintf(stderr, "accepted duration \"%s\"\n", bad[i]);
		CHECK(ferry_parse_duration(bad[i], &v) == -EINVAL);
	}
}

static void
test_ranges(void)
{
	static const struct {
		const char *h;
		uint64_t size;
		int r;
		uint64_t off, len;
	} t[] = {
		{ "bytes=0-0", 100, 0, 0, 1 },
		{ "bytes=0-99", 100, 0, 0, 100 },
		{ "bytes=10-", 100, 0, 10, 90 },
		{ "bytes=90-1000", 100, 0, 90, 10 },	/* clipped */
		{ "bytes=-10", 100, 0, 90, 10 },
		{ "bytes=-1000", 100, 0, 0, 100 },
		{ "bytes=99-99", 100, 0, 99, 1 },
		{ "bytes=0-18446744073709551615", 100, 0, 0, 100 },
		{ "bytes=0-99999999999999999999999", 100, 0, 0, 100 },
		{ "bytes=100-", 100, -ERANGE, 0, 0 },
		{ "bytes=100-200", 100, -ERANGE, 0, 0 },
		{ "bytes=-0", 100, -ERANGE, 0, 0 },
		{ "bytes=-5", 0, -ERANGE, 0, 0 },
		{ "bytes=0-", 0, -ERANGE, 0, 0 },
		{ "bytes=99999999999999999999999-", 100, -ERANGE, 0, 0 },
		{ "bytes=5-4", 100, -EINVAL, 0, 0 },
		{ "bytes=0-1,5-6", 100, -EINVAL, 0, 0 },
		{ "bytes=a-b", 100, -EINVAL, 0, 0 },
		{ "bytes=", 100, -EINVAL, 0, 0 },
		{ "bytes=-", 100, -EINVAL, 0, 0 },
		{ "items=0-1", 100, -EINVAL, 0, 0 },
		{ "bytes=1", 100, -EINVAL, 0, 0 },
		{ "bytes=--1", 100, -EINVAL, 0, 0 },
	};

	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		uint64_t off = 0, len = 0;
		int r = ferry_parse_range(t[i].h, t[i].size, &off, &len);

		if (r != t[i].r)
			fprintf(stderr, "\"%s\" size %" PRIu64 ": %d\n",
				t[i].h, t[i].size, r);
		CHECK(r == t[i].r);
		if (r == 0 && t[i].r == 0) {
			CHECK_EQ_U64(off, t[i].off);
			CHECK_EQ_U64(len, t[i].len);
		}
	}
}

static void
test_codings(void)
{
	CHECK(ferry_accepts_coding("zstd", "zstd"));
	CHECK(ferry_accepts_coding("gzip, deflate, br, zstd", "zstd"));
	CHECK(ferry_accepts_coding(" ZSTD ;q=0.5,gzip", "zstd"));
	CHECK(ferry_accepts_coding("zstd;q=1", "zstd"));
	CHECK(ferry_accepts_coding("zstd; q=0.001", "zstd"));
	CHECK(!ferry_accepts_coding("zstd;q=0", "zstd"));
	CHECK(!ferry_accepts_coding("zstd; q=0.000 , gzip", "zstd"));
	CHECK(!ferry_accepts_coding("gzip, zstdx, xzstd", "zstd"));
	CHECK(!ferry_accepts_coding("*", "zstd"));
	CHECK(!ferry_accepts_coding("", "zstd"));
	CHECK(!ferry_accepts_coding(NULL, "zstd"));
	CHECK(!ferry_accepts_coding(",,,;", "zstd"));
}

int
main(void)
{
	test_codings();
	test_durations();
	test_if_match();
	char hex[9], tok[65], tok2[65];
	const unsigned char raw[4] = { 0x00, 0x9f, 0xa0, 0xff };

	test_sizes();
	test_ranges();
	ferry_hex(raw, 4, hex);
	CHECK(strcmp(hex, "009fa0ff") == 0);
	CHECK(ferry_random_token(tok) == 0 && ferry_random_token(tok2) == 0);
	CHECK(strlen(tok) == 64 && strcmp(tok, tok2) != 0);
	return check_result("unit-util");
}
