/* ferry-export — blocks that read as zeros leave the extent map.
 *
 * A disk's allocation map (SEEK_DATA/SEEK_HOLE) says where data may be;
 * blocks of written zeros are "data" to it. Every ZERO_BLOCK found all
 * zeros, by an up-front scan (--scan-zeros) or while serving a read, is
 * remembered, and the maps served afterwards leave it out, so clients
 * treat it as a hole and it never travels again. A block is only ever
 * marked from bytes just read from the source; when the source changes
 * (export_look() finds another generation) every mark is forgotten, and a
 * read that started before the change marks nothing.
 *
 * A live source (a block device, or a file with a filesystem mounted here)
 * changes without a new generation: what its server writes next may be a
 * block read as zeros now, and a block learnt as a hole would stay one in
 * every map after, the cutover's too. Nothing is learnt of it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/util.h"
#include "common/zframe.h"
#include "tools/export/export.h"

#define SCAN_PIECE (4u << 20)

int
zeros_init(struct export_disk *d)
{
	uint64_t size = d->src->disks[0].size;

	return ferry_bitmap_init(&d->zero, (size + ZERO_BLOCK - 1) / ZERO_BLOCK);
}

void
zeros_free(struct export_disk *d)
{
	ferry_bitmap_free(&d->zero);
}

void
zeros_note(struct export_disk *d, unsigned epoch, uint64_t off,
	   const uint8_t *buf, size_t len)
{
	uint64_t size, b = (off + ZERO_BLOCK - 1) / ZERO_BLOCK;

	if (!d->learn_zeros)
		return;
	pthread_mutex_lock(&d->lock);
	if (d->source_live) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	size = d->src->disks[0].size;
	/* Whole blocks only; the disk's last block ends at the disk's end;
	 * blocks past the size the map was made for are not tracked. */
	for (; epoch == d->epoch && b < d->zero.nbits; b++) {
		uint64_t start = b * ZERO_BLOCK;
		uint64_t end = FERRY_MIN(start + ZERO_BLOCK, size);

		if (start >= size || end > off + len)
			break;
		if (!ferry_bitmap_test(&d->zero, b) &&
		    ferry_is_zero(buf + (start - off), (size_t)(end - start)))
			ferry_bitmap_set(&d->zero, b);
	}
	pthread_mutex_unlock(&d->lock);
}

void
zeros_forget(struct export_disk *d)
{
	for (uint64_t b = 0; b < d->zero.nbits; b++)
		ferry_bitmap_clear(&d->zero, b);
}

void
zeros_live(struct export_disk *d)
{
	d->source_live = true;
	zeros_forget(d);
	if (d->learn_zeros)
		ferry_info("%s: live (a block device, or a filesystem mounted "
			   "here): blocks read as zeros are not learnt as "
			   "holes, its server may write them", d->name);
}

unsigned
export_look(struct export_disk *d, char *gen, size_t genlen, uint64_t *size)
{
	struct ferry_disk_info *di = &d->src->disks[0];
	unsigned epoch;
	int r = 0;

	pthread_mutex_lock(&d->lock);
	if (d->src->ops->refresh)
		r = d->src->ops->refresh(d->src, 0);
	if (r == 1) {
		if (di->live && !d->source_live)
			zeros_live(d);
		if (d->disk_id) {
			snprintf(di->generation, sizeof di->generation,
				 "id-%s-%" PRIu64, d->disk_id, di->size);
			di->live = false;
		}
		zeros_forget(d);
		d->epoch++;
		ferry_info("%s: changed at the source (generation %s, %"
			   PRIu64 " bytes); clients resync", d->name,
			   di->generation, di->size);
	}
	epoch = d->epoch;
	if (gen)
		snprintf(gen, genlen, "%s", di->generation);
	if (size)
		*size = di->size;
	pthread_mutex_unlock(&d->lock);
	return epoch;
}

int
zeros_scan(struct export_disk *d)
{
	struct ferry_extents m;
	uint64_t scanned = 0, before, after;
	double t0 = ferry_now();
	uint8_t *buf = malloc(SCAN_PIECE);
	char a[32], b[32], c[32];
	int r;

	if (d->source_live)
		return 0;	/* zeros_live() said why */
	if (!buf)
		return -ENOMEM;
	ferry_extents_init(&m, d->src->disks[0].size);
	r = d->src->ops->extents(d->src, 0, &m);
	before = m.data_bytes;
	for (size_t i = 0; r == 0 && i < m.n; i++) {
		/* Read block-aligned pieces, so every block is seen whole. */
		uint64_t off = m.v[i].off / ZERO_BLOCK * ZERO_BLOCK;
		uint64_t end = FERRY_MIN(m.v[i].off + m.v[i].len, m.size);

		while (r == 0 && off < end) {
			size_t n = (size_t)FERRY_MIN(end - off,
						     (uint64_t)SCAN_PIECE);

			unsigned e = export_look(d, NULL, 0, NULL);

			r = d->src->ops->pread(d->src, 0, buf, n, off);
			if (r == 0)
				zeros_note(d, e, off, buf, n);
			off += n;
			scanned += n;
		}
	}
	free(buf);
	ferry_extents_free(&m);
	if (r < 0)
		return r;
	r = zeros_map(d, &m);
	if (r < 0)
		return r;
	after = m.data_bytes;
	ferry_extents_free(&m);
	d->src->disks[0].allocated = after;
	ferry_info("%s: scanned %s in %.1f s: %s were zeros, %s of data "
		   "left", d->name, ferry_format_size(scanned, a, sizeof a),
		   ferry_now() - t0,
		   ferry_format_size(before - after, c, sizeof c),
		   ferry_format_size(after, b, sizeof b));
	return 0;
}

int
zeros_map(struct export_disk *d, struct ferry_extents *out)
{
	struct ferry_extents m;
	int r;

	ferry_extents_init(&m, d->src->disks[0].size);
	ferry_extents_init(out, m.size);
	r = d->src->ops->extents(d->src, 0, &m);
	if (r == 0)
		r = ferry_extents_minus_blocks(&m, &d->zero, ZERO_BLOCK, out);
	ferry_extents_free(&m);
	if (r < 0)
		ferry_extents_free(out);
	return r;
}
