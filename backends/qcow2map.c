/* ferry — qcow2 allocation maps from the L1/L2 tables. See qcow2map.h.
 *
 * Layout (qemu's docs/interop/qcow2.txt): a big-endian header with the
 * cluster size, virtual size and the L1 table's place; each L1 entry
 * points at an L2 table of cluster_size/8 entries, one per guest cluster.
 * An L2 entry is compressed data (bit 62), explicit zeros (bit 0, v3), a
 * host offset of stored data (bits 9-55), or 0: not in this image.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/qcow2map.h"
#include "common/util.h"

#define QCOW2_MAGIC 0x514649fbu
#define OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define COMPRESSED (UINT64_C(1) << 62)
#define ZERO_FLAG UINT64_C(1)
#define L1_MAX_BYTES (32u << 20)	/* qemu's own limit */
#define HEADER_V2 72
#define HEADER_V3 104

static int
fail(char *why, size_t whylen, int r, const char *what)
{
	snprintf(why, whylen, "%s", what);
	return r;
}

/* Add [off, off+len) clipped to the disk to @m; runs come in order. */
static int
add(struct ferry_extents *m, uint64_t off, uint64_t len)
{
	if (off >= m->size)
		return 0;
	return ferry_extents_add(m, off, FERRY_MIN(len, m->size - off));
}

int
qcow2map_read(uint64_t file_size, qcow2map_read_fn read, void *ctx,
	      struct qcow2map *m, char *why, size_t whylen)
{
	uint8_t h[HEADER_V3];
	uint64_t csize, l2n, nclusters, l1need, l1off, *l1 = NULL;
	uint8_t *l2 = NULL;
	uint32_t version, bits, l1n;
	int r;

	memset(m, 0, sizeof *m);
	if (file_size < HEADER_V2)
		return fail(why, whylen, -EINVAL, "shorter than a header");
	r = read(ctx, 0, h, file_size < HEADER_V3 ? HEADER_V2 : HEADER_V3);
	if (r < 0)
		return r;
	version = ferry_be32(h + 4);
	if (ferry_be32(h) != QCOW2_MAGIC || (version != 2 && version != 3))
		return fail(why, whylen, -EINVAL, "not a qcow2 v2/v3 header");
	if (version == 3 && file_size < HEADER_V3)
		return fail(why, whylen, -EINVAL, "truncated v3 header");
	bits = ferry_be32(h + 20);
	if (bits < 9 || bits > 21)
		return fail(why, whylen, -EINVAL, "cluster size out of range");
	m->cluster = UINT32_C(1) << bits;
	if (ferry_be32(h + 32) != 0)
		return fail(why, whylen, -ENOTSUP, "encrypted");
	if (version == 3) {
		uint64_t incompat = ferry_be64(h + 72);

		if (incompat & 2)
			return fail(why, whylen, -EINVAL, "marked corrupt");
		if (incompat & 4)
			return fail(why, whylen, -ENOTSUP,
				    "an external data file");
		if (incompat & 16)
			return fail(why, whylen, -ENOTSUP,
				    "extended L2 entries");
		if (incompat & ~UINT64_C(0x1f))
			return fail(why, whylen, -ENOTSUP,
				    "unknown incompatible features");
	}
	csize = UINT64_C(1) << bits;
	l2n = csize / 8;
	m->size = ferry_be64(h + 24);
	m->backing_off = ferry_be64(h + 8);
	m->backing_len = ferry_be32(h + 16);
	if (m->size > (UINT64_C(1) << 62))
		return fail(why, whylen, -EINVAL, "virtual size too large");
	if (m->backing_off && (m->backing_off > file_size ||
			       m->backing_len > 1023 ||
			       m->backing_len > file_size - m->backing_off))
		return fail(why, whylen, -EINVAL,
			    "backing file name outside the file");
	nclusters = (m->size + csize - 1) / csize;
	l1need = (nclusters + l2n - 1) / l2n;
	l1n = ferry_be32(h + 36);
	l1off = ferry_be64(h + 40);
	if (l1n < l1need || (uint64_t)l1n * 8 > L1_MAX_BYTES)
		return fail(why, whylen, -EINVAL, "L1 table size wrong");
	if ((l1off & (csize - 1)) || l1off > file_size ||
	    l1need * 8 > file_size - l1off)
		return fail(why, whylen, -EINVAL, "L1 table outside the file");
	ferry_extents_init(&m->data, m->size);
	ferry_extents_init(&m->zero, m->size);
	l1 = malloc(l1need * 8 + 1);
	l2 = malloc(csize);
	if (!l1 || !l2) {
		r = -ENOMEM;
		goto out;
	}
	if (l1need && (r = read(ctx, l1off, l1, l1need * 8)) < 0)
		goto out;
	for (uint64_t i = 0; i < l1need; i++) {
		uint64_t l2off = ferry_be64((uint8_t *)&l1[i]) & OFFSET_MASK;
		uint64_t first = i * l2n;

		if (l2off == 0)
			continue;	/* none of these clusters here */
		if ((l2off & (csize - 1)) || l2off > file_size ||
		    csize > file_size - l2off) {
			r = fail(why, whylen, -EINVAL,
				 "an L2 table outside the file");
			goto out;
		}
		if ((r = read(ctx, l2off, l2, csize)) < 0)
			goto out;
		for (uint64_t j = 0; j < l2n && first + j < nclusters; j++) {
			uint64_t e = ferry_be64(l2 + j * 8);
			uint64_t goff = (first + j) * csize;

			if (e & COMPRESSED)
				r = add(&m->data, goff, csize);
			else if (version == 3 && (e & ZERO_FLAG))
				r = add(&m->zero, goff, csize);
			else if (e & OFFSET_MASK)
				r = add(&m->data, goff, csize);
			if (r < 0)
				goto out;
		}
	}
out:
	free(l1);
	free(l2);
	if (r < 0) {
		if (r == -ENOMEM)
			snprintf(why, whylen, "out of memory");
		qcow2map_free(m);
	}
	return r < 0 ? r : 0;
}

void
qcow2map_free(struct qcow2map *m)
{
	ferry_extents_free(&m->data);
	ferry_extents_free(&m->zero);
}

int
qcow2map_chain(const struct qcow2map *maps, size_t n, uint64_t size,
	       struct ferry_extents *out)
{
	struct ferry_extents below, rest;
	int r = 0;

	/* From the bottom up: below = data_i + (below - zero_i). */
	ferry_extents_init(&below, size);
	for (size_t k = n; r == 0 && k-- > 0;) {
		ferry_extents_init(&rest, size);
		r = ferry_extents_subtract(&below, &maps[k].zero, &rest);
		ferry_extents_free(&below);
		ferry_extents_init(&below, size);
		if (r == 0)
			r = ferry_extents_unite(&maps[k].data, &rest, &below);
		ferry_extents_free(&rest);
	}
	if (r == 0)
		r = ferry_extents_unite(&below,
					&(struct ferry_extents){ .size = size },
					out);
	ferry_extents_free(&below);
	return r;
}
