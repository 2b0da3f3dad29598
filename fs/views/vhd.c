/* ferry — VHD views (Microsoft's "Virtual Hard Disk Image Format
 * Specification" 1.0).
 *
 * Dynamic:  footer copy | dynamic header | BAT | zeros | blocks | zeros |
 *           footer
 *           Only blocks (2 MiB) holding data are stored, each as a sector
 *           bitmap (all present) and its data, in disk order. The first
 *           block's data starts on a 1 MiB boundary: the kernel reads ahead
 *           of a reader of the headers (128 KiB at most), and that must not
 *           reach disk data, or reading metadata would fetch it. For the
 *           same reason the footer starts a page: the kernel reads whole
 *           pages, and the footer's must not hold the last block's data.
 * Fixed:    the disk | footer    (the form Azure takes)
 *
 * The size. A VHD has two: "current size" in the footer and the CHS
 * geometry, which can only express sizes in whole cylinders. Hyper-V and
 * libvhdi read the current size; qemu reads the geometry unless the creator
 * application is one it knows to mean "the current size is exact" ("win ",
 * "qem2", "d2v ", "tap\0", "CTXS") or the geometry is the maximum. We write
 * "qem2", qemu's own tag for exactly that, so every reader sees the current
 * size, which is the disk size. A disk whose size is not a multiple of
 * 512 is padded with zeros to the next sector (VHD counts sectors).
 *
 * Stable bytes: the timestamp is 0 and the unique id comes from the view's
 * parameters, so every mount presents the same file.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/views/view.h"

#define SECTOR		512u
#define BLOCK		(2u << 20)
#define BITMAP		SECTOR		/* 4096 sectors: 512 bytes */
#define FOOTER		512u
#define DYN_HEADER	1024u
#define BAT_OFF		(FOOTER + DYN_HEADER)
/* qemu's VHD_MAX_SECTORS: the largest disk a dynamic VHD holds. */
#define VHD_MAX_SIZE	(0xff000000ull * SECTOR)
#define MAX_CHS		(65535ull * 16 * 255)
#define DATA_ALIGN	(1u << 20)	/* of the first block's data */
#define PAGE		4096u		/* of the dynamic VHD's footer */

enum { VHD_FIXED = 2, VHD_DYNAMIC = 3 };

struct vhd {
	bool fixed;
	uint64_t vsize;		/* disk size rounded up to a sector */
	uint64_t nblocks;	/* BAT entries */
	uint64_t bat_end;	/* BAT padded to a sector */
	uint64_t first;		/* first block (its bitmap) */
	uint64_t blocks_end;	/* after the last block */
	struct granules blocks;	/* allocated blocks */
	uint8_t footer[FOOTER];
	uint8_t dyn[DYN_HEADER];
};

static inline const struct vhd *
h_of(const struct view *v)
{
	return v->priv;
}

static uint32_t
checksum(const uint8_t *p, size_t n)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += p[i];
	return ~sum;
}

/* CHS geometry of @sectors, as the specification's appendix computes it. */
static uint32_t
geometry(uint64_t sectors)
{
	uint64_t spt, heads, cth;

	if (sectors > MAX_CHS)
		sectors = MAX_CHS;
	if (sectors >= 65535ull * 16 * 63) {
		spt = 255;
		heads = 16;
		cth = sectors / spt;
	} else {
		spt = 17;
		cth = sectors / spt;
		heads = (cth + 1023) / 1024;
		if (heads < 4)
			heads = 4;
		if (cth >= heads * 1024 || heads > 16) {
			spt = 31;
			heads = 16;
			cth = sectors / spt;
		}
		if (cth >= heads * 1024) {
			spt = 63;
			heads = 16;
			cth = sectors / spt;
		}
	}
	return (uint32_t)((cth / heads) << 16 | heads << 8 | spt);
}

static void
make_footer(const struct view *v, struct vhd *h)
{
	uint8_t *f = h->footer;

	memset(f, 0, FOOTER);
	memcpy(f, "conectix", 8);
	view_be32(f + 8, 2);				/* features: reserved */
	view_be32(f + 12, 0x00010000);			/* format version */
	view_be64(f + 16, h->fixed ? UINT64_MAX : FOOTER);	/* data offset */
	view_be32(f + 24, 0);				/* timestamp */
	memcpy(f + 28, "qem2", 4);			/* see the top */
	view_be32(f + 32, 0x00010000);			/* creator version */
	memcpy(f + 36, "Wi2k", 4);			/* creator host OS */
	view_be64(f + 40, h->vsize);			/* original size */
	view_be64(f + 48, h->vsize);			/* current size */
	view_be32(f + 56, geometry(h->vsize / SECTOR));
	view_be32(f + 60, h->fixed ? VHD_FIXED : VHD_DYNAMIC);
	memcpy(f + 68, v->p.uuid, 16);
	view_be32(f + 64, checksum(f, FOOTER));
}

static void
make_dyn_header(struct vhd *h)
{
	uint8_t *d = h->dyn;

	memset(d, 0, DYN_HEADER);
	memcpy(d, "cxsparse", 8);
	view_be64(d + 8, UINT64_MAX);			/* data offset */
	view_be64(d + 16, BAT_OFF);			/* table offset */
	view_be32(d + 24, 0x00010000);			/* header version */
	view_be32(d + 28, (uint32_t)h->nblocks);	/* max table entries */
	view_be32(d + 32, BLOCK);
	view_be32(d + 36, checksum(d, DYN_HEADER));
}

static void
vhd_close(struct view *v)
{
	struct vhd *h = v->priv;

	if (h) {
		granules_free(&h->blocks);
		free(h);
	}
	v->priv = NULL;
}

static int
open_common(struct view *v, bool fixed)
{
	struct vhd *h;
	int r;

	if (v->p.size > VHD_MAX_SIZE)
		return -EFBIG;
	h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	v->priv = h;
	h->fixed = fixed;
	h->vsize = (v->p.size + SECTOR - 1) / SECTOR * SECTOR;
	make_footer(v, h);
	if (fixed) {
		v->size = h->vsize + FOOTER;
		v->allocated = v->p.map->data_bytes + FOOTER;
		return 0;
	}
	h->nblocks = (h->vsize + BLOCK - 1) / BLOCK;
	h->bat_end = (BAT_OFF + h->nblocks * 4 + SECTOR - 1) / SECTOR * SECTOR;
	r = granules_build(&h->blocks, v->p.map, BLOCK);
	if (r < 0) {
		vhd_close(v);
		return r;
	}
	make_dyn_header(h);
	h->first = h->blocks.total ?
		   (h->bat_end + BITMAP + DATA_ALIGN - 1) / DATA_ALIGN *
		   DATA_ALIGN - BITMAP : h->bat_end;
	h->blocks_end = h->first + h->blocks.total * (BITMAP + BLOCK);
	v->size = (h->blocks_end + PAGE - 1) / PAGE * PAGE + FOOTER;
	v->allocated = v->size;
	return 0;
}

static int
vhd_open(struct view *v)
{
	return open_common(v, false);
}

static int
fixedvhd_open(struct view *v)
{
	return open_common(v, true);
}

/* Disk bytes from @disk_off on, at most @len, then zeros past the end. */
static void
disk_or_zero(const struct view *v, uint64_t disk_off, uint64_t len,
	     struct view_seg *seg)
{
	if (disk_off >= v->p.size) {
		seg->kind = VIEW_ZERO;
		seg->len = len;
		return;
	}
	seg->kind = VIEW_DISK;
	seg->disk_off = disk_off;
	seg->len = v->p.size - disk_off < len ? v->p.size - disk_off : len;
}

static void
vhd_map(const struct view *v, uint64_t off, struct view_seg *seg)
{
	const struct vhd *h = h_of(v);
	uint64_t footer = v->size - FOOTER, in, b;
	size_t run;

	if (off >= footer) {
		seg->kind = VIEW_META;
		seg->len = v->size - off;
		return;
	}
	if (h->fixed) {
		disk_or_zero(v, off, footer - off, seg);
		return;
	}
	if (off < h->bat_end) {
		seg->kind = VIEW_META;
		seg->len = h->bat_end - off;
		return;
	}
	if (off < h->first || off >= h->blocks_end) {
		seg->kind = VIEW_ZERO;
		seg->len = (off < h->first ? h->first : footer) - off;
		return;
	}
	in = (off - h->first) % (BITMAP + BLOCK);
	if (in < BITMAP) {
		seg->kind = VIEW_META;
		seg->len = BITMAP - in;
		return;
	}
	b = granules_select(&h->blocks, (off - h->first) / (BITMAP + BLOCK),
			    &run);
	disk_or_zero(v, b * BLOCK + in - BITMAP, BITMAP + BLOCK - in, seg);
}

static uint64_t
bat_entry(const struct view *v, uint64_t i)
{
	const struct vhd *h = h_of(v);
	uint64_t rank;

	if (i >= h->nblocks || !granules_rank(&h->blocks, i, &rank))
		return UINT32_MAX;	/* unallocated; also the padding */
	return (h->first + rank * (BITMAP + BLOCK)) / SECTOR;
}

static void
vhd_meta(const struct view *v, uint64_t off, uint8_t *buf, size_t len)
{
	const struct vhd *h = h_of(v);
	uint64_t footer = v->size - FOOTER;

	while (len) {
		size_t n;

		if (off >= footer || off < FOOTER) {
			uint64_t in = off >= footer ? off - footer : off;

			n = FOOTER - in < len ? (size_t)(FOOTER - in) : len;
			memcpy(buf, h->footer + in, n);
		} else if (off < BAT_OFF) {
			uint64_t in = off - FOOTER;

			n = DYN_HEADER - in < len ? (size_t)(DYN_HEADER - in)
						  : len;
			memcpy(buf, h->dyn + in, n);
		} else if (off < h->bat_end) {
			n = h->bat_end - off < len ? (size_t)(h->bat_end - off)
						   : len;
			view_fill_table(v, off - BAT_OFF, buf, n, 4, bat_entry);
		} else {
			/* A sector bitmap: every sector of the block is
			 * present (holes inside it read as zeros). */
			uint64_t in = (off - h->first) % (BITMAP + BLOCK);

			n = BITMAP - in < len ? (size_t)(BITMAP - in) : len;
			memset(buf, 0xff, n);
		}
		buf += n;
		off += n;
		len -= n;
	}
}

const struct view_ops view_vhd_ops = {
	.format = "vhd",
	.open = vhd_open,
	.close = vhd_close,
	.map = vhd_map,
	.meta = vhd_meta,
};

const struct view_ops view_fixedvhd_ops = {
	.format = "fixedvhd",
	.open = fixedvhd_open,
	.close = vhd_close,
	.map = vhd_map,
	.meta = vhd_meta,
};
