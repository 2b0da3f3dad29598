/* Independent readers of the qcow2 and VHD images the views present, for
 * unit tests and fuzzers: they decode an image held in memory back into
 * the disk it stores, following the format documents rather than the view
 * code, and check the invariants a real reader relies on (offsets inside
 * the file, refcounts, checksums). Written for clarity, not speed. */
#ifndef FERRY_IMGREAD_H
#define FERRY_IMGREAD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t
rd_be(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Decode qcow2 @img (@n bytes) into @out (@size bytes, the disk size; the
 * image's virtual size is that rounded up to a sector). @return NULL, or what is wrong. */
static inline const char *
ref_qcow2_read(const uint8_t *img, uint64_t n, uint8_t *out, uint64_t size)
{
	uint64_t cs, l1_size, l1_off, rt_off, rt_clusters, nclusters, per_l2;
	uint8_t *refs;		/* references per host cluster */
	const char *err = NULL;

	if (n < 104 || rd_be(img, 4) != 0x514649fb || rd_be(img + 4, 4) != 3)
		return "bad magic or version";
	if (rd_be(img + 20, 4) < 9 || rd_be(img + 20, 4) > 21)
		return "bad cluster bits";
	cs = 1ull << rd_be(img + 20, 4);
	if (rd_be(img + 24, 8) != (size + 511) / 512 * 512)
		return "virtual size is not the disk's, rounded to a sector";
	if (rd_be(img + 96, 4) != 4 || rd_be(img + 100, 4) < 104 ||
	    rd_be(img + 72, 8) || rd_be(img + 8, 8) || rd_be(img + 32, 4))
		return "unexpected header fields";
	if (n % cs)
		return "file is not whole clusters";
	nclusters = n / cs;
	per_l2 = cs / 8;
	l1_size = rd_be(img + 36, 4);
	l1_off = rd_be(img + 40, 8);
	rt_off = rd_be(img + 48, 8);
	rt_clusters = rd_be(img + 56, 4);
	if (l1_size * per_l2 * cs < size)
		return "L1 table too small";
	if (l1_off % cs || rt_off % cs || l1_off + l1_size * 8 > n ||
	    rt_off + rt_clusters * cs > n)
		return "table outside the file";
	refs = calloc(nclusters, 1);
	if (!refs)
		return "out of memory";
	refs[0]++;
	for (uint64_t c = 0; c < (l1_size * 8 + cs - 1) / cs; c++)
		refs[l1_off / cs + c]++;
	for (uint64_t c = 0; c < rt_clusters; c++)
		refs[rt_off / cs + c]++;
	memset(out, 0, size);
	for (uint64_t i = 0; i < l1_size && !err; i++) {
		uint64_t e = rd_be(img + l1_off + i * 8, 8);
		uint64_t l2 = e & 0x00fffffffffffe00ull;

		if (!e)
			continue;
		if (!(e >> 63) || l2 % cs || l2 + cs > n) {
			err = "bad L1 entry";
			break;
		}
		refs[l2 / cs]++;
		for (uint64_t j = 0; j < per_l2; j++) {
			uint64_t f = rd_be(img + l2 + j * 8, 8);
			uint64_t h = f & 0x00fffffffffffe00ull;
			uint64_t v = (i * per_l2 + j) * cs;

			if (!f)
				continue;
			if (!(f >> 63) || (f & 0x3fffffffffffffffull) != h ||
			    h % cs || h + cs > n || v >= size) {
				err = "bad L2 entry";
				break;
			}
			refs[h / cs]++;
			memcpy(out + v, img + h, size - v < cs ? size - v : cs);
		}
	}
	/* Refcounts: every cluster in use exactly once, and counted 1. */
	for (uint64_t r = 0; r < rt_clusters * cs / 8 && !err; r++) {
		uint64_t rb = rd_be(img + rt_off + r * 8, 8);

		if (!rb)
			continue;
		if (rb % cs || rb + cs > n) {
			err = "bad refcount table entry";
			break;
		}
		refs[rb / cs]++;
	}
	for (uint64_t c = 0; c < nclusters && !err; c++) {
		uint64_t ri = c / (cs / 2), rb, rc;

		rb = ri < rt_clusters * cs / 8 ?
		     rd_be(img + rt_off + ri * 8, 8) : 0;
		rc = rb ? rd_be(img + rb + (c % (cs / 2)) * 2, 2) : 0;

		if (refs[c] != 1)
			err = refs[c] ? "cluster used twice" : "cluster unused";
		else if (rc != 1)
			err = "refcount is not 1";
	}
	free(refs);
	return err;
}

static inline uint32_t
ref_vhd_checksum(const uint8_t *p, size_t n, size_t at)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < n; i++)
		if (i < at || i >= at + 4)
			sum += p[i];
	return ~sum;
}

/* Decode a dynamic or fixed VHD. @size is the disk size; the VHD holds it
 * rounded up to a sector. @return NULL, or what is wrong. */
static inline const char *
ref_vhd_read(const uint8_t *img, uint64_t n, uint8_t *out, uint64_t size)
{
	const uint8_t *f = img + n - 512, *dh;
	uint64_t vsize = (size + 511) / 512 * 512, bat, bs, entries;

	if (n < 512 || memcmp(f, "conectix", 8) != 0)
		return "no footer";
	if (rd_be(f + 64, 4) != ref_vhd_checksum(f, 512, 64))
		return "footer checksum";
	if (rd_be(f + 48, 8) != vsize || memcmp(f + 28, "qem2", 4) != 0)
		return "footer size or creator";
	if (rd_be(f + 60, 4) == 2) {
		if (n != vsize + 512)
			return "fixed VHD of the wrong length";
		memcpy(out, img, size);
		for (uint64_t i = size; i < vsize; i++)
			if (img[i])
				return "padding is not zero";
		return NULL;
	}
	if (rd_be(f + 60, 4) != 3 || memcmp(img, f, 512) != 0)
		return "not dynamic, or footer copy differs";
	if (n < 1536 + 512 || rd_be(f + 16, 8) != 512)
		return "no dynamic header";
	dh = img + 512;
	if (memcmp(dh, "cxsparse", 8) != 0 ||
	    rd_be(dh + 36, 4) != ref_vhd_checksum(dh, 1024, 36))
		return "dynamic header";
	bat = rd_be(dh + 16, 8);
	entries = rd_be(dh + 28, 4);
	bs = rd_be(dh + 32, 4);
	if (bs != 2u << 20 || entries * bs < vsize || bat + entries * 4 > n)
		return "BAT";
	memset(out, 0, size);
	for (uint64_t b = 0; b < entries; b++) {
		uint64_t s = rd_be(img + bat + b * 4, 4), at, len;

		if (s == 0xffffffff)
			continue;
		at = s * 512;
		if (at < bat + entries * 4 || at + 512 + bs > n - 512)
			return "block outside the file";
		for (int k = 0; k < 512; k++)
			if (img[at + k] != 0xff)
				return "sector bitmap not full";
		if (b * bs >= size)
			return "block past the disk";
		len = size - b * bs < bs ? size - b * bs : bs;
		memcpy(out + b * bs, img + at + 512, len);
	}
	return NULL;
}

#endif
