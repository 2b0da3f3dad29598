/* libFuzzer target for one view (compiled once per view with -DVIEW=name):
 * a random disk size and random allocation map. Whatever they are, the
 * view either refuses the disk (-EFBIG: too large for the format) or
 * presents a file whose segments tile it exactly, whose disk ranges stay
 * inside the disk, never overlap and cover every data byte, and whose
 * metadata can be generated anywhere. Small disks are rendered whole and
 * decoded by the independent readers of tests/unit/imgread.h, which must
 * give back the disk byte for byte.
 *
 * Input: byte 0 = flags (bit 7: small disk, bit 6: 4 KiB units, bits 0-4:
 * qcow2 cluster bits - 9), bytes 1-8 = size, then (gap, length) pairs of
 * little-endian u32 for the data extents (for raw: the first pair is the
 * slice). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/views/view.h"
#include "tests/unit/imgread.h"
#include "tests/fuzz/fuzz.h"


#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define VIEW_OPS CAT(CAT(view_, VIEW), _ops)
#define STR2(a) #a
#define STR(a) STR2(a)

#define SMALL_MAX (4u << 20)
#define MAX_SEGS 100000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t
le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int
cmp_seg(const void *a, const void *b)
{
	const struct ferry_extent *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* Every byte of [off, off+len) is inside some range of @r (sorted). */
static int
covered(const struct ferry_extent *r, size_t n, uint64_t off, uint64_t len)
{
	size_t lo = 0, hi = n;

	while (len) {
		while (lo < hi) {	/* first range ending after off */
			size_t mid = lo + (hi - lo) / 2;

			if (r[mid].off + r[mid].len <= off)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo == n || r[lo].off > off)
			return 0;
		uint64_t take = r[lo].off + r[lo].len - off;

		if (take >= len)
			return 1;
		off += take;
		len -= take;
		hi = n;
	}
	return 1;
}

static void
check_view(const struct view *v, const struct ferry_extents *m, bool whole)
{
	struct ferry_extent *disk = malloc(MAX_SEGS * sizeof *disk);
	size_t nd = 0, nsegs = 0;
	uint64_t pos = 0;
	uint8_t buf[4096];

	CHECK(disk);
	while (pos < v->size && nsegs < MAX_SEGS) {
		struct view_seg s;

		view_map(v, pos, UINT64_MAX, &s);
		CHECK(s.len > 0 && s.len <= v->size - pos);
		if (s.kind == VIEW_DISK) {
			CHECK(s.disk_off < m->size &&
			      s.len <= m->size - s.disk_off);
			disk[nd++] = (struct ferry_extent){ s.disk_off, s.len };
		} else if (s.kind == VIEW_META) {
			size_t n = s.len < sizeof buf ? s.len : sizeof buf;

			v->ops->meta(v, pos, buf, n);
			v->ops->meta(v, pos + s.len - n, buf, n);
		} else {
			CHECK(s.kind == VIEW_ZERO);
		}
		pos += s.len;
		nsegs++;
	}
	if (nsegs == MAX_SEGS) {
		free(disk);
		return;		/* too many to check whole; fine so far */
	}
	CHECK(pos == v->size);
	qsort(disk, nd, sizeof *disk, cmp_seg);
	for (size_t i = 1; i < nd; i++)
		CHECK(disk[i - 1].off + disk[i - 1].len <= disk[i].off);
	if (whole)
		for (size_t i = 0; i < m->n; i++)
			CHECK(covered(disk, nd, m->v[i].off, m->v[i].len));
	free(disk);
}

static void
roundtrip(const struct view *v, const struct ferry_extents *m)
{
	uint8_t *disk = calloc(m->size + 1, 1), *img = malloc(v->size + 1),
		*back = malloc(m->size + 1);
	const char *err = NULL;

	CHECK(disk && img && back);
	for (size_t i = 0; i < m->n; i++)
		for (uint64_t b = 0; b < m->v[i].len; b++)
			disk[m->v[i].off + b] =
				(uint8_t)((m->v[i].off + b) * 13 + 5);
	CHECK(view_render(v, 0, v->size, img, disk) == v->size);
	if (v->ops == &view_qcow2_ops)
		err = ref_qcow2_read(img, v->size, back, m->size);
	else if (v->ops == &view_raw_ops)
		memcpy(back, img, v->size);
	else
		err = ref_vhd_read(img, v->size, back, m->size);
	if (err)
		fprintf(stderr, "reader: %s\n", err);
	CHECK(err == NULL);
	if (v->ops == &view_raw_ops)
		CHECK(memcmp(back, disk + v->p.slice_off, v->size) == 0);
	else
		CHECK(memcmp(back, disk, m->size) == 0);
	free(disk);
	free(img);
	free(back);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_extents m;
	struct view_params p = { 0 };
	struct view v;
	uint64_t dsize, unit, pos = 0;
	bool small;
	int r;

	if (size < 9)
		return 0;
	small = data[0] & 0x80;
	unit = data[0] & 0x40 ? 4096 : 1;
	dsize = le(data + 1, 8) & ((1ull << 45) - 1);
	if (small)
		dsize %= SMALL_MAX + 1;
	data += 9;
	size -= 9;
	ferry_extents_init(&m, dsize);
	p.size = dsize;
	p.map = &m;
	p.qcow2_cluster_bits = 9 + (data[-9] & 0x1f) % 13;
	memcpy(p.uuid, "fuzz-fuzz-fuzz!!", 16);
	if (strcmp(STR(VIEW), "raw") == 0 && size >= 8) {
		p.slice_off = le(data, 4) * unit;
		p.slice_len = le(data + 4, 4) * unit;
		data += 8;
		size -= 8;
	}
	for (; size >= 8; data += 8, size -= 8) {
		uint64_t gap = le(data, 4) * unit, len = le(data + 4, 4) * unit;

		if (pos > dsize || gap > dsize - pos ||
		    len > dsize - pos - gap || len == 0)
			break;
		/* Touching extents merge, so leave a gap of at least 1. */
		if (m.n && gap == 0)
			gap = 1;
		if (gap > dsize - pos || len > dsize - pos - gap)
			break;
		CHECK(ferry_extents_add(&m, pos + gap, len) == 0);
		pos += gap + len;
	}
	r = view_open(&v, &VIEW_OPS, &p);
	if (r == -EFBIG || (r == -EINVAL && strcmp(STR(VIEW), "raw") == 0)) {
		/* raw refuses a slice outside the disk; the others only
		 * refuse disks too large for the format */
		ferry_extents_free(&m);
		return 0;
	}
	CHECK(r == 0);
	check_view(&v, &m, strcmp(STR(VIEW), "raw") != 0);
	if (small)
		roundtrip(&v, &m);
	view_close(&v);
	ferry_extents_free(&m);
	return 0;
}
