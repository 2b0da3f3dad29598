/* ferry — VHD block allocation tables. See vhdmap.h.
 *
 * Layout (Microsoft's VHD specification): a 512-byte footer ("conectix")
 * at the end, copied at the start of dynamic disks; its data offset points
 * at the dynamic header ("cxsparse"), which gives the table's place, its
 * number of entries and the block size. Entry i, a big-endian sector
 * number, is 0xFFFFFFFF when block i is not stored.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/vhdmap.h"
#include "common/util.h"

#define FOOTER 512
#define DYN_HEADER 1024
#define UNUSED 0xffffffffu
#define TYPE_FIXED 2
#define TYPE_DYNAMIC 3
#define TYPE_DIFF 4
#define BAT_MAX (UINT32_C(1) << 24)	/* entries: 32 PiB of 2 MiB blocks */

static int
fail(char *why, size_t whylen, int r, const char *what)
{
	snprintf(why, whylen, "%s", what);
	return r;
}

int
vhdmap_read(uint64_t file_size, vhdmap_read_fn read, void *ctx,
	    struct vhdmap *m, char *why, size_t whylen)
{
	uint8_t f[FOOTER], h[DYN_HEADER], *bat = NULL;
	uint64_t dyn, table, block;
	uint32_t type, n;
	int r;

	memset(m, 0, sizeof *m);
	if (file_size < FOOTER + DYN_HEADER)
		return fail(why, whylen, -EINVAL, "too short for a VHD");
	if ((r = read(ctx, 0, f, 8)) < 0)
		return r;
	if (memcmp(f, "vhdxfile", 8) == 0)
		return fail(why, whylen, -ENOTSUP, "a VHDX (no table read)");
	/* The footer at the end; a dynamic disk's copy at the start will
	 * do if the end is damaged. */
	if ((r = read(ctx, file_size - FOOTER, f, FOOTER)) < 0)
		return r;
	if (memcmp(f, "conectix", 8) != 0 &&
	    ((r = read(ctx, 0, f, FOOTER)) < 0 || memcmp(f, "conectix", 8)))
		return r < 0 ? r : fail(why, whylen, -EINVAL, "no VHD footer");
	type = ferry_be32(f + 60);
	m->size = ferry_be64(f + 48);
	if (type == TYPE_FIXED)
		return fail(why, whylen, -ENOTSUP, "a fixed VHD (no table)");
	if (type != TYPE_DYNAMIC && type != TYPE_DIFF)
		return fail(why, whylen, -EINVAL, "unknown disk type");
	m->differencing = type == TYPE_DIFF;
	dyn = ferry_be64(f + 16);
	if (dyn > file_size || DYN_HEADER > file_size - dyn)
		return fail(why, whylen, -EINVAL,
			    "dynamic header outside the file");
	if ((r = read(ctx, dyn, h, DYN_HEADER)) < 0)
		return r;
	if (memcmp(h, "cxsparse", 8) != 0)
		return fail(why, whylen, -EINVAL, "no dynamic header");
	table = ferry_be64(h + 16);
	n = ferry_be32(h + 28);
	block = ferry_be32(h + 32);
	if (block < 512 || (block & (block - 1)) || block > (256u << 20))
		return fail(why, whylen, -EINVAL, "block size out of range");
	if (n > BAT_MAX || (uint64_t)n * block < m->size)
		return fail(why, whylen, -EINVAL,
			    "table too small for the disk");
	if (table > file_size || (uint64_t)n * 4 > file_size - table)
		return fail(why, whylen, -EINVAL, "table outside the file");
	bat = malloc((size_t)n * 4 + 1);
	m->bat = calloc((size_t)n + 1, sizeof *m->bat);
	if (!bat || !m->bat) {
		free(bat);
		free(m->bat);
		m->bat = NULL;
		return fail(why, whylen, -ENOMEM, "out of memory");
	}
	m->block = (uint32_t)block;
	/* One bit a sector, in whole sectors. */
	m->bitmap = (uint32_t)((block / 512 / 8 + 511) / 512 * 512);
	m->nbat = n;
	if (n && (r = read(ctx, table, bat, (size_t)n * 4)) < 0)
		goto out;
	ferry_extents_init(&m->data, m->size);
	for (uint32_t i = 0; i < n; i++)
		m->bat[i] = ferry_be32(bat + (size_t)i * 4);
	for (uint32_t i = 0; i < n && (uint64_t)i * block < m->size; i++) {
		uint64_t off = (uint64_t)i * block;

		if (m->bat[i] == UNUSED)
			continue;
		r = ferry_extents_add(&m->data, off,
				      FERRY_MIN((uint64_t)block,
						m->size - off));
		if (r < 0) {
			fail(why, whylen, r, "out of memory");
			break;
		}
	}
out:
	free(bat);
	if (r < 0)
		vhdmap_free(m);
	return r < 0 ? r : 0;
}

void
vhdmap_free(struct vhdmap *m)
{
	ferry_extents_free(&m->data);
	free(m->bat);
	m->bat = NULL;
}

int
vhdmap_pread(const struct vhdmap *m, uint64_t file_size, vhdmap_read_fn read,
	     void *ctx, uint8_t *buf, size_t len, uint64_t off)
{
	uint8_t bits[4096];
	uint64_t end = off + len;

	if (off > m->size || len > m->size - off)
		return -EINVAL;
	memset(buf, 0, len);
	while (off < end) {
		uint64_t b = off / m->block, in = off % m->block;
		uint64_t n = FERRY_MIN(end - off, m->block - in);
		uint64_t start, s0, s1;
		int r;

		if (b >= m->nbat || m->bat[b] == UNUSED) {
			off += n;
			continue;	/* not stored: zeros */
		}
		start = (uint64_t)m->bat[b] * 512;
		if (start > file_size ||
		    (uint64_t)m->bitmap + m->block > file_size - start ||
		    m->bitmap > sizeof bits)
			return -EINVAL;
		if ((r = read(ctx, start, bits, m->bitmap)) < 0)
			return r;
		/* Runs of present sectors, most significant bit first; the
		 * ends of the range may cut a sector. */
		for (s0 = in / 512; s0 * 512 < in + n;) {
			bool set = bits[s0 / 8] & (0x80 >> (s0 % 8));

			for (s1 = s0 + 1; s1 * 512 < in + n &&
			     !!(bits[s1 / 8] & (0x80 >> (s1 % 8))) == set;
			     s1++)
				;
			if (set) {
				uint64_t a = FERRY_MAX(s0 * 512, in);
				uint64_t e = FERRY_MIN(s1 * 512, in + n);

				r = read(ctx, start + m->bitmap + a,
					 buf + (b * m->block + a - (end - len)),
					 (size_t)(e - a));
				if (r < 0)
					return r;
			}
			s0 = s1;
		}
		off += n;
	}
	return 0;
}
