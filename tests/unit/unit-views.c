/* Unit tests of the views' layouts against hand-computed expectations, and
 * of whole rendered images against the independent readers in imgread.h. */
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "fs/views/view.h"
#include "tests/unit/check.h"
#include "tests/unit/imgread.h"

#define K 1024ull
#define M (1024 * K)
#define G (1024 * M)
#define T (1024 * G)
#define COPIED (1ull << 63)

static struct ferry_extents map;
static struct view v;

static void
setup(uint64_t size, const uint64_t *ext, size_t n)
{
	ferry_extents_free(&map);
	ferry_extents_init(&map, size);
	for (size_t i = 0; i < n; i++)
		CHECK(ferry_extents_add(&map, ext[2 * i], ext[2 * i + 1]) == 0);
}

static int
open_view(const struct view_ops *ops, unsigned cbits)
{
	struct view_params p = { .size = map.size, .map = &map,
				 .qcow2_cluster_bits = cbits };

	memcpy(p.uuid, "0123456789abcdef", 16);
	return view_open(&v, ops, &p);
}

static uint64_t
meta64(uint64_t off)
{
	uint8_t b[8];

	v.ops->meta(&v, off, b, 8);
	return rd_be(b, 8);
}

static uint64_t
meta32(uint64_t off)
{
	uint8_t b[4];

	v.ops->meta(&v, off, b, 4);
	return rd_be(b, 4);
}

static void
expect_seg(uint64_t off, enum view_seg_kind kind, uint64_t len,
	   uint64_t disk_off)
{
	struct view_seg s;

	view_map(&v, off, UINT64_MAX, &s);
	CHECK_EQ_U64(s.kind, kind);
	CHECK_EQ_U64(s.len, len);
	if (kind == VIEW_DISK)
		CHECK_EQ_U64(s.disk_off, disk_off);
}

/* Render the whole view over a disk whose data bytes are a pattern and
 * decode it with the reference reader. */
static void
roundtrip(const char *(*reader)(const uint8_t *, uint64_t, uint8_t *,
				uint64_t))
{
	uint8_t *disk = calloc(map.size + 1, 1), *img = malloc(v.size),
		*back = malloc(map.size + 1);
	const char *err;

	for (size_t i = 0; i < map.n; i++)
		for (uint64_t b = 0; b < map.v[i].len; b++)
			disk[map.v[i].off + b] =
				(uint8_t)((map.v[i].off + b) * 7 + 1);
	CHECK_EQ_U64(view_render(&v, 0, v.size, img, disk), v.size);
	err = reader(img, v.size, back, map.size);
	if (err)
		fprintf(stderr, "reader: %s\n", err);
	CHECK(err == NULL);
	CHECK(memcmp(back, disk, map.size) == 0);
	free(disk);
	free(img);
	free(back);
}

static void
test_qcow2_empty(void)
{
	uint8_t hdr[120];

	setup(1 * G, NULL, 0);
	CHECK(open_view(&view_qcow2_ops, 16) == 0);
	/* header, L1 (2 entries), refcount table, one refcount block */
	CHECK_EQ_U64(v.size, 4 * 64 * K);
	v.ops->meta(&v, 0, hdr, sizeof hdr);
	CHECK_EQ_U64(rd_be(hdr, 4), 0x514649fb);
	CHECK_EQ_U64(rd_be(hdr + 4, 4), 3);
	CHECK_EQ_U64(rd_be(hdr + 20, 4), 16);
	CHECK_EQ_U64(rd_be(hdr + 24, 8), 1 * G);
	CHECK_EQ_U64(rd_be(hdr + 36, 4), 2);
	CHECK_EQ_U64(rd_be(hdr + 40, 8), 64 * K);
	CHECK_EQ_U64(rd_be(hdr + 48, 8), 128 * K);
	CHECK_EQ_U64(rd_be(hdr + 56, 4), 1);
	CHECK_EQ_U64(rd_be(hdr + 96, 4), 4);
	CHECK_EQ_U64(rd_be(hdr + 100, 4), 104);
	CHECK_EQ_U64(rd_be(hdr + 104, 8), 0);	/* end of extensions */
	CHECK_EQ_U64(meta64(64 * K), 0);
	CHECK_EQ_U64(meta64(64 * K + 8), 0);
	CHECK_EQ_U64(meta64(128 * K), 192 * K);
	CHECK_EQ_U64(meta64(128 * K + 8), 0);
	for (uint64_t c = 0; c < 5; c++) {
		uint8_t b[2];

		v.ops->meta(&v, 192 * K + 2 * c, b, 2);
		CHECK_EQ_U64(rd_be(b, 2), c < 4);
	}
	expect_seg(0, VIEW_META, 4 * 64 * K, 0);
	view_close(&v);

	setup(3 * M + 1, NULL, 0);
	CHECK(open_view(&view_qcow2_ops, 16) == 0);
	roundtrip(ref_qcow2_read);
	view_close(&v);
}

static void
test_qcow2_full(void)
{
	uint64_t e[] = { 0, 1 * G };

	setup(1 * G, e, 1);
	CHECK(open_view(&view_qcow2_ops, 16) == 0);
	/* 16384 data clusters, 2 L2 tables, 1 + 1 + 1 + 1 metadata */
	CHECK_EQ_U64(v.size, (6 + 16384) * 64 * K);
	CHECK_EQ_U64(meta64(64 * K), (4 * 64 * K) | COPIED);
	CHECK_EQ_U64(meta64(64 * K + 8), (5 * 64 * K) | COPIED);
	/* L2 entry of cluster 9000 (second table, index 808) */
	CHECK_EQ_U64(meta64(5 * 64 * K + 808 * 8),
		     ((6 + 9000) * 64 * K) | COPIED);
	expect_seg(6 * 64 * K, VIEW_DISK, 1 * G, 0);
	expect_seg(6 * 64 * K + 100, VIEW_DISK, 1 * G - 100, 100);
	view_close(&v);
}

static void
test_qcow2_straddle(void)
{
	/* Crosses the cluster 0/1 boundary; a bit of data in the partial
	 * last cluster of a disk that is not whole clusters. */
	uint64_t size = 1 * M + 100;
	uint64_t e[] = { 64 * K - 10, 20, 1 * M + 50, 50 };

	setup(size, e, 2);
	CHECK(open_view(&view_qcow2_ops, 16) == 0);
	CHECK_EQ_U64(v.size, 8 * 64 * K);
	CHECK_EQ_U64(meta64(24), 1 * M + 512);	/* rounded up to a sector */
	CHECK_EQ_U64(meta64(64 * K), (4 * 64 * K) | COPIED);
	CHECK_EQ_U64(meta64(4 * 64 * K + 0), (5 * 64 * K) | COPIED);
	CHECK_EQ_U64(meta64(4 * 64 * K + 8), (6 * 64 * K) | COPIED);
	CHECK_EQ_U64(meta64(4 * 64 * K + 16), 0);
	CHECK_EQ_U64(meta64(4 * 64 * K + 16 * 8), (7 * 64 * K) | COPIED);
	CHECK_EQ_U64(meta64(4 * 64 * K + 17 * 8), 0);
	expect_seg(5 * 64 * K, VIEW_DISK, 2 * 64 * K, 0);
	expect_seg(7 * 64 * K, VIEW_DISK, 100, 1 * M);
	expect_seg(7 * 64 * K + 100, VIEW_ZERO, 64 * K - 100, 0);
	roundtrip(ref_qcow2_read);
	view_close(&v);

	/* 512-byte clusters: many L2 tables and refcount blocks. */
	CHECK(open_view(&view_qcow2_ops, 9) == 0);
	roundtrip(ref_qcow2_read);
	view_close(&v);
	CHECK(open_view(&view_qcow2_ops, 8) == -EINVAL);
	CHECK(open_view(&view_qcow2_ops, 22) == -EINVAL);
}

static void
test_qcow2_4t(void)
{
	uint64_t e[] = { 0, 1 * M, 2 * T, 64 * K, 4 * T - 4096, 4096 };
	struct timespec a, b;
	struct rusage ru0, ru1;
	uint8_t *buf = malloc(8 * 64 * K);
	double ms;

	getrusage(RUSAGE_SELF, &ru0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	setup(4 * T, e, 3);
	CHECK(open_view(&view_qcow2_ops, 16) == 0);
	/* all the metadata: header, L1 (8192 entries, one cluster),
	 * refcount table and block, three L2 tables */
	view_render(&v, 0, 7 * 64 * K, buf, NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	getrusage(RUSAGE_SELF, &ru1);
	ms = (double)(b.tv_sec - a.tv_sec) * 1e3 +
	     (double)(b.tv_nsec - a.tv_nsec) / 1e6;
	printf("4 TiB sparse qcow2: metadata in %.2f ms, %ld KiB more RSS\n",
	       ms, ru1.ru_maxrss - ru0.ru_maxrss);
	CHECK(ms < 1000);
	CHECK(ru1.ru_maxrss - ru0.ru_maxrss < 16 * 1024);
	CHECK_EQ_U64(v.size, (7 + 16 + 1 + 1) * 64 * K);
	CHECK_EQ_U64(rd_be(buf + 36, 4), 8192);
	CHECK_EQ_U64(rd_be(buf + 64 * K, 8), (4 * 64 * K) | COPIED);
	CHECK_EQ_U64(rd_be(buf + 64 * K + 4096 * 8, 8), (5 * 64 * K) | COPIED);
	CHECK_EQ_U64(rd_be(buf + 64 * K + 8191 * 8, 8), (6 * 64 * K) | COPIED);
	CHECK_EQ_U64(rd_be(buf + 64 * K + 8190 * 8, 8), 0);
	CHECK_EQ_U64(rd_be(buf + 5 * 64 * K, 8), ((7 + 16) * 64 * K) | COPIED);
	CHECK_EQ_U64(rd_be(buf + 6 * 64 * K + 8191 * 8, 8),
		     ((7 + 17) * 64 * K) | COPIED);
	expect_seg(7 * 64 * K, VIEW_DISK, 1 * M, 0);
	expect_seg(23 * 64 * K, VIEW_DISK, 64 * K, 2 * T);
	expect_seg(24 * 64 * K, VIEW_DISK, 64 * K, 4 * T - 64 * K);
	view_close(&v);
	free(buf);
}

static void
test_vhd(void)
{
	uint64_t size = 5 * M + 1000, vsize = 10242 * 512;
	uint64_t e[] = { 2 * M - 10, 20, 5 * M + 500, 100 };
	uint64_t blk = 512 + 2 * M, footer;
	uint8_t f[512];

	setup(size, e, 2);
	CHECK(open_view(&view_vhd_ops, 0) == 0);
	/* the first block's data on a 1 MiB boundary, the footer on a page */
	/* blocks end at 7341056 = 1792 pages + 1024 */
	CHECK_EQ_U64(v.size, 1 * M - 512 + 3 * blk + 3072 + 512);
	footer = v.size - 512;
	v.ops->meta(&v, footer, f, 512);
	CHECK(memcmp(f, "conectix", 8) == 0);
	CHECK_EQ_U64(rd_be(f + 16, 8), 512);
	CHECK(memcmp(f + 28, "qem2", 4) == 0);
	CHECK_EQ_U64(rd_be(f + 40, 8), vsize);
	CHECK_EQ_U64(rd_be(f + 48, 8), vsize);
	CHECK_EQ_U64(rd_be(f + 56, 4), 150u << 16 | 4 << 8 | 17);
	CHECK_EQ_U64(rd_be(f + 60, 4), 3);
	CHECK_EQ_U64(rd_be(f + 64, 4), ref_vhd_checksum(f, 512, 64));
	CHECK(memcmp(f + 68, "0123456789abcdef", 16) == 0);
	CHECK_EQ_U64(meta64(512 + 16), 1536);		/* BAT offset */
	CHECK_EQ_U64(meta32(512 + 28), 3);		/* entries */
	CHECK_EQ_U64(meta32(1536), 2047);
	CHECK_EQ_U64(meta32(1540), 2047 + 4097);
	CHECK_EQ_U64(meta32(1544), 2047 + 2 * 4097);
	CHECK_EQ_U64(meta32(1548), 0xffffffff);		/* padding */
	expect_seg(0, VIEW_META, 2048, 0);
	expect_seg(2048, VIEW_ZERO, 1 * M - 512 - 2048, 0);
	expect_seg(1 * M - 512, VIEW_META, 512, 0);
	expect_seg(1 * M, VIEW_DISK, 2 * M, 0);
	expect_seg(1 * M - 512 + blk, VIEW_META, 512, 0);
	expect_seg(1 * M + 2 * blk, VIEW_DISK, size - 4 * M, 4 * M);
	expect_seg(1 * M + 2 * blk + size - 4 * M, VIEW_ZERO,
		   6 * M - size, 0);
	expect_seg(1 * M - 512 + 3 * blk, VIEW_ZERO, 3072, 0);
	expect_seg(footer, VIEW_META, 512, 0);
	roundtrip(ref_vhd_read);
	view_close(&v);

	setup(3 * M, NULL, 0);
	CHECK(open_view(&view_vhd_ops, 0) == 0);
	CHECK_EQ_U64(v.size, 4096 + 512);	/* footer on a page */
	roundtrip(ref_vhd_read);
	view_close(&v);

	setup(2040 * G, NULL, 0);
	CHECK(open_view(&view_vhd_ops, 0) == 0);
	view_close(&v);
	setup(2041 * G, NULL, 0);
	CHECK(open_view(&view_vhd_ops, 0) == -EFBIG);
	CHECK(open_view(&view_fixedvhd_ops, 0) == -EFBIG);
}

static void
test_fixedvhd(void)
{
	uint64_t e[] = { 100, 800 };

	setup(1000, e, 1);
	CHECK(open_view(&view_fixedvhd_ops, 0) == 0);
	CHECK_EQ_U64(v.size, 1024 + 512);
	CHECK_EQ_U64(v.allocated, 800 + 512);
	expect_seg(0, VIEW_DISK, 1000, 0);
	expect_seg(1000, VIEW_ZERO, 24, 0);
	expect_seg(1024, VIEW_META, 512, 0);
	CHECK_EQ_U64(meta64(1024 + 16), UINT64_MAX);
	CHECK_EQ_U64(meta32(1024 + 60), 2);
	roundtrip(ref_vhd_read);
	view_close(&v);

	/* Large disks: the geometry saturates, the size does not. */
	setup(1 * T, NULL, 0);
	CHECK(open_view(&view_fixedvhd_ops, 0) == 0);
	CHECK_EQ_U64(meta64(1 * T + 48), 1 * T);
	CHECK_EQ_U64(meta32(1 * T + 56), 65535u << 16 | 16 << 8 | 255);
	view_close(&v);
}

static void
test_slice(void)
{
	struct view_params p;
	uint64_t e[] = { 0, 600, 2000, 100 };

	setup(4096, e, 2);
	p = (struct view_params){ .size = 4096, .map = &map };
	CHECK(view_open(&v, &view_raw_ops, &p) == 0);
	CHECK_EQ_U64(v.size, 4096);
	CHECK_EQ_U64(v.allocated, 700);
	view_close(&v);
	p.slice_off = 512;
	p.slice_len = 1536;
	CHECK(view_open(&v, &view_raw_ops, &p) == 0);
	CHECK_EQ_U64(v.size, 1536);
	CHECK_EQ_U64(v.allocated, 88 + 48);
	expect_seg(10, VIEW_DISK, 1526, 522);
	view_close(&v);
	p.slice_off = 4000;
	p.slice_len = 97;
	CHECK(view_open(&v, &view_raw_ops, &p) == -EINVAL);
	p.slice_off = UINT64_MAX;
	p.slice_len = 2;
	CHECK(view_open(&v, &view_raw_ops, &p) == -EINVAL);
}

static void
test_seek(void)
{
	struct view_params p;
	uint64_t e[] = { 1 * M, 100, 3 * M, 64 * K };

	setup(4 * M, e, 2);
	p = (struct view_params){ .size = 4 * M, .map = &map };
	CHECK(view_open(&v, &view_raw_ops, &p) == 0);
	CHECK(view_seek(&v, 0, true) == (int64_t)(1 * M));
	CHECK(view_seek(&v, 0, false) == 0);
	CHECK(view_seek(&v, 1 * M + 10, false) == (int64_t)(1 * M + 100));
	CHECK(view_seek(&v, 1 * M + 100, true) == (int64_t)(3 * M));
	CHECK(view_seek(&v, 3 * M + 64 * K, true) == -ENXIO);
	CHECK(view_seek(&v, 3 * M + 5, false) == (int64_t)(3 * M + 64 * K));
	view_close(&v);
	/* A slice starting inside data. */
	p.slice_off = 1 * M + 50;
	p.slice_len = 3 * M - 50;
	CHECK(view_open(&v, &view_raw_ops, &p) == 0);
	CHECK(view_seek(&v, 0, true) == 0);
	CHECK(view_seek(&v, 0, false) == 50);
	CHECK(view_seek(&v, 50, true) == (int64_t)(2 * M - 50));
	view_close(&v);
	/* qcow2: metadata is data; holes inside stored clusters too. */
	CHECK(open_view(&view_qcow2_ops, 16) == 0);
	CHECK(view_seek(&v, 0, true) == 0);
	/* header, L1, refcount table and block, one L2; then clusters
	 * 16 (1 MiB) and 48 (3 MiB) */
	CHECK(view_seek(&v, 0, false) == (int64_t)(5 * 64 * K + 100));
	CHECK(view_seek(&v, 5 * 64 * K + 100, true) == (int64_t)(6 * 64 * K));
	CHECK(view_seek(&v, 6 * 64 * K, false) == (int64_t)(7 * 64 * K));
	view_close(&v);
	/* fixed VHD: the footer is data. */
	CHECK(open_view(&view_fixedvhd_ops, 0) == 0);
	CHECK(view_seek(&v, 3 * M + 64 * K, true) == (int64_t)(4 * M));
	CHECK(view_seek(&v, 4 * M, false) == (int64_t)(4 * M + 512));
	view_close(&v);
}

static void
test_granules(void)
{
	struct granules g;
	uint64_t e[] = { 10, 5, 100, 1, 4095, 2, 10000, 1 };
	uint64_t rank;
	size_t run;

	setup(20000, e, 4);
	CHECK(granules_build(&g, &map, 4096) == 0);
	/* granules 0 (10, 100, 4095) and 1 (4096) merge; 2 (10000) */
	CHECK_EQ_U64(g.n, 1);
	CHECK_EQ_U64(g.total, 3);
	CHECK(granules_rank(&g, 2, &rank) && rank == 2);
	CHECK(!granules_rank(&g, 3, &rank));
	CHECK_EQ_U64(granules_select(&g, 2, &run), 2);
	granules_free(&g);
	CHECK(granules_build(&g, &map, 1024) == 0);
	/* 0, 3-4, 9 */
	CHECK_EQ_U64(g.n, 3);
	CHECK_EQ_U64(g.total, 4);
	CHECK(granules_rank(&g, 4, &rank) && rank == 2);
	CHECK(granules_rank(&g, 9, &rank) && rank == 3);
	CHECK(!granules_rank(&g, 5, &rank));
	CHECK_EQ_U64(granules_select(&g, 3, &run), 9);
	CHECK_EQ_U64(run, 2);
	granules_free(&g);
}

int
main(void)
{
	test_granules();
	test_slice();
	test_seek();
	test_qcow2_empty();
	test_qcow2_full();
	test_qcow2_straddle();
	test_qcow2_4t();
	test_vhd();
	test_fixedvhd();
	ferry_extents_free(&map);
	return check_result("unit-views");
}
