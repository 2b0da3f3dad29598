/* ferry — qcow2 view: a qcow2 version 3 image of the disk in which only
 * allocated clusters are stored (qemu's docs/interop/qcow2.txt).
 *
 * Host clusters, in order:
 *
 *   0                  header (+ end-of-extensions marker)
 *   l1 ..              L1 table
 *   rt ..              refcount table
 *   rb ..              refcount blocks (16-bit refcounts)
 *   l2 ..              one L2 table per L1 entry that maps any data
 *   data ..            the allocated clusters, in disk order
 *
 * The virtual size is the disk size rounded up to a sector: qemu counts
 * whole sectors and would drop a partial last one (its own qcow2 creation
 * rounds up the same way); the padding reads as zeros.
 *
 * Every host cluster is used once, so every refcount is 1 and every L1 and
 * L2 entry carries QCOW_OFLAG_COPIED. The host cluster of disk cluster c is
 * data + rank(c) among allocated clusters; L2 tables likewise. Nothing is
 * stored per cluster: tables are generated from granule runs when read, so
 * a multi-TiB sparse disk costs memory in proportion to its extents.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/views/view.h"

#define QCOW_MAGIC		0x514649fbu
#define QCOW_OFLAG_COPIED	(1ull << 63)
#define QCOW_HEADER_LEN		104u
#define QCOW_MAX_L1_ENTRIES	(32u << 20) / 8	/* qemu's QCOW_MAX_L1_SIZE */

struct qcow2 {
	unsigned cbits;
	uint64_t csize;		/* cluster size */
	uint64_t per_l2;	/* entries in an L2 table */
	uint64_t nclusters;	/* disk clusters */
	uint64_t l1_size;	/* L1 entries */
	struct granules data;	/* allocated disk clusters */
	struct granules tables;	/* L1 entries with an L2 table */
	/* First host cluster of each region, and counts. */
	uint64_t l1, l1_clusters;
	uint64_t rt, rt_clusters;
	uint64_t rb, rb_count;
	uint64_t l2, data_first;
	uint64_t total;		/* host clusters */
};

static inline const struct qcow2 *
q_of(const struct view *v)
{
	return v->priv;
}

static uint64_t
div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

static void
qcow2_close(struct view *v)
{
	struct qcow2 *q = v->priv;

	if (q) {
		granules_free(&q->data);
		granules_free(&q->tables);
		free(q);
	}
	v->priv = NULL;
}

static int
qcow2_open(struct view *v)
{
	unsigned cbits = v->p.qcow2_cluster_bits ? v->p.qcow2_cluster_bits : 16;
	struct qcow2 *q;
	uint64_t fixed, per_rb;
	int r;

	if (cbits < 9 || cbits > 21)
		return -EINVAL;
	q = calloc(1, sizeof *q);
	if (!q)
		return -ENOMEM;
	v->priv = q;
	q->cbits = cbits;
	q->csize = 1ull << cbits;
	q->per_l2 = q->csize / 8;
	q->nclusters = div_up((v->p.size + 511) / 512 * 512, q->csize);
	q->l1_size = div_up(q->nclusters, q->per_l2);
	if (q->l1_size > QCOW_MAX_L1_ENTRIES) {
		qcow2_close(v);
		return -EFBIG;
	}
	if ((r = granules_build(&q->data, v->p.map, q->csize)) < 0 ||
	    (r = granules_build(&q->tables, v->p.map,
				q->csize * q->per_l2)) < 0) {
		qcow2_close(v);
		return r;
	}
	q->l1 = 1;
	q->l1_clusters = div_up(q->l1_size * 8, q->csize);
	/* Refcount blocks cover every host cluster, themselves and the
	 * refcount table included: grow both until they cover the total. */
	fixed = 1 + q->l1_clusters + q->tables.total + q->data.total;
	per_rb = q->csize / 2;
	for (;;) {
		uint64_t total = fixed + q->rt_clusters + q->rb_count;
		uint64_t rb = div_up(total, per_rb);
		uint64_t rt = div_up(rb * 8, q->csize);

		if (rb == q->rb_count && rt == q->rt_clusters)
			break;
		q->rb_count = rb;
		q->rt_clusters = rt;
	}
	q->rt = q->l1 + q->l1_clusters;
	q->rb = q->rt + q->rt_clusters;
	q->l2 = q->rb + q->rb_count;
	q->data_first = q->l2 + q->tables.total;
	q->total = q->data_first + q->data.total;
	v->size = q->total * q->csize;
	v->allocated = v->size;
	return 0;
}

static void
qcow2_map(const struct view *v, uint64_t off, struct view_seg *seg)
{
	const struct qcow2 *q = q_of(v);
	uint64_t h = off / q->csize, in = off % q->csize, c, dend;
	size_t run;

	if (h < q->data_first) {
		seg->kind = VIEW_META;
		seg->len = q->data_first * q->csize - off;
		return;
	}
	/* Host clusters of one run are consecutive disk clusters. */
	c = granules_select(&q->data, h - q->data_first, &run);
	seg->kind = VIEW_DISK;
	seg->disk_off = c * q->csize + in;
	seg->len = (q->data.v[run].end - c) * q->csize - in;
	dend = seg->disk_off + seg->len;
	if (seg->disk_off >= v->p.size) {
		/* The tail of the last cluster, past the disk's end. */
		seg->kind = VIEW_ZERO;
		seg->len = q->csize - in;
	} else if (dend > v->p.size) {
		seg->len = v->p.size - seg->disk_off;
	}
}

static void
qcow2_header(const struct view *v, uint8_t *hdr)
{
	const struct qcow2 *q = q_of(v);

	memset(hdr, 0, QCOW_HEADER_LEN + 8);
	view_be32(hdr + 0, QCOW_MAGIC);
	view_be32(hdr + 4, 3);				/* version */
	view_be32(hdr + 20, q->cbits);
	view_be64(hdr + 24, (v->p.size + 511) / 512 * 512);	/* virtual size */
	view_be32(hdr + 36, (uint32_t)q->l1_size);
	view_be64(hdr + 40, q->l1 * q->csize);
	view_be64(hdr + 48, q->rt * q->csize);
	view_be32(hdr + 56, (uint32_t)q->rt_clusters);
	view_be32(hdr + 96, 4);				/* refcount_order */
	view_be32(hdr + 100, QCOW_HEADER_LEN);
	/* Then the end of header extensions: type 0, length 0. */
}

static uint64_t
l1_entry(const struct view *v, uint64_t i)
{
	const struct qcow2 *q = q_of(v);
	uint64_t rank;

	if (i >= q->l1_size || !granules_rank(&q->tables, i, &rank))
		return 0;
	return ((q->l2 + rank) * q->csize) | QCOW_OFLAG_COPIED;
}

static uint64_t
rt_entry(const struct view *v, uint64_t i)
{
	const struct qcow2 *q = q_of(v);

	return i < q->rb_count ? (q->rb + i) * q->csize : 0;
}

static uint64_t
refcount(const struct view *v, uint64_t i)
{
	return i < q_of(v)->total;
}

/* Entry i of the concatenated L2 tables. */
static uint64_t
l2_entry(const struct view *v, uint64_t i)
{
	const struct qcow2 *q = q_of(v);
	uint64_t t = i / q->per_l2, c, rank;
	size_t run;

	c = granules_select(&q->tables, t, &run) * q->per_l2 + i % q->per_l2;
	if (c >= q->nclusters || !granules_rank(&q->data, c, &rank))
		return 0;
	return ((q->data_first + rank) * q->csize) | QCOW_OFLAG_COPIED;
}

static void
qcow2_meta(const struct view *v, uint64_t off, uint8_t *buf, size_t len)
{
	const struct qcow2 *q = q_of(v);

	while (len) {
		uint64_t h = off / q->csize, start, end;
		size_t n;

		if (h < q->l1)
			start = 0, end = q->l1;
		else if (h < q->rt)
			start = q->l1, end = q->rt;
		else if (h < q->rb)
			start = q->rt, end = q->rb;
		else if (h < q->l2)
			start = q->rb, end = q->l2;
		else
			start = q->l2, end = q->data_first;
		end *= q->csize;
		start *= q->csize;
		n = end - off < len ? (size_t)(end - off) : len;
		if (h < q->l1) {
			uint8_t hdr[QCOW_HEADER_LEN + 8];
			uint64_t o = off;

			qcow2_header(v, hdr);
			memset(buf, 0, n);
			if (o < sizeof hdr)
				memcpy(buf, hdr + o,
				       sizeof hdr - o < n ? sizeof hdr - o : n);
		} else if (h < q->rt) {
			view_fill_table(v, off - start, buf, n, 8, l1_entry);
		} else if (h < q->rb) {
			view_fill_table(v, off - start, buf, n, 8, rt_entry);
		} else if (h < q->l2) {
			/* 16-bit refcounts: two per fill_table 4-byte entry
			 * would complicate; write them directly. */
			for (size_t k = 0; k < n; k++) {
				uint64_t b = off - start + k;
				uint64_t rc = refcount(v, b / 2);

				buf[k] = b % 2 ? (uint8_t)rc : (uint8_t)(rc >> 8);
			}
		} else {
			view_fill_table(v, off - start, buf, n, 8, l2_entry);
		}
		buf += n;
		off += n;
		len -= n;
	}
}

const struct view_ops view_qcow2_ops = {
	.format = "qcow2",
	.open = qcow2_open,
	.close = qcow2_close,
	.map = qcow2_map,
	.meta = qcow2_meta,
};
