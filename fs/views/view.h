/* ferry — views: the files a disk is presented as (raw, qcow2, VHD, one
 * partition), as pure layout code.
 *
 * A view is a function of (disk size, allocation map, a few parameters).
 * For any offset of the presented file it says what the bytes there are:
 * metadata the view generates, a range of the disk, or zeros. It never does
 * I/O, so the same map always gives the same bytes, across reads and
 * remounts, and a view is unit-tested and fuzzed without a mount.
 *
 *   raw.c    the disk itself, or a slice of it (a partition)
 *   qcow2.c  qcow2 version 3, only allocated clusters stored
 *   vhd.c    dynamic VHD (only allocated blocks) and fixed VHD
 *   parts.c  MBR/GPT parser that finds the slices (reads through a callback)
 */
#ifndef FERRY_VIEW_H
#define FERRY_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/extents.h"

enum view_seg_kind {
	VIEW_META,	/* bytes the view generates: view_meta() */
	VIEW_DISK,	/* disk bytes from disk_off on */
	VIEW_ZERO,	/* zeros */
};

/* A run of the presented file whose bytes are all of one kind. */
struct view_seg {
	enum view_seg_kind kind;
	uint64_t len;		/* > 0 */
	uint64_t disk_off;	/* VIEW_DISK: disk offset of the first byte */
};

/* What a view is made from. The map must outlive the view. */
struct view_params {
	uint64_t size;				/* disk size */
	const struct ferry_extents *map;	/* the disk's data ranges */
	uint64_t slice_off, slice_len;		/* raw: the slice shown */
	unsigned qcow2_cluster_bits;		/* qcow2: 9..21 */
	uint8_t uuid[16];			/* vhd: the disk's unique id */
};

struct view;

struct view_ops {
	const char *format;	/* "raw", "qcow2", "vhd", "fixedvhd" */
	/* Compute the layout. @return 0, -EINVAL (bad parameters), -EFBIG
	 * (the disk is too large for the format) or -ENOMEM. */
	int (*open)(struct view *v);
	void (*close)(struct view *v);
	/* The segment that starts at @off (< v->size). */
	void (*map)(const struct view *v, uint64_t off, struct view_seg *seg);
	/* Bytes [off, off+len) of the file, inside one VIEW_META segment. */
	void (*meta)(const struct view *v, uint64_t off, uint8_t *buf,
		     size_t len);
};

struct view {
	const struct view_ops *ops;
	struct view_params p;
	uint64_t size;		/* of the presented file */
	uint64_t allocated;	/* bytes it occupies (st_blocks) */
	void *priv;
};

extern const struct view_ops view_raw_ops, view_qcow2_ops, view_vhd_ops,
	view_fixedvhd_ops;

/*! view_open() : set up @v as a view @ops of @p. On error @v is empty.
 * @return as view_ops.open. */
int view_open(struct view *v, const struct view_ops *ops,
	      const struct view_params *p);
void view_close(struct view *v);

/*! view_map() : the segment at @off, clipped to at most @len bytes.
 * @off must be < v->size. */
void view_map(const struct view *v, uint64_t off, uint64_t len,
	      struct view_seg *seg);

/*! view_render() :
 * The bytes [off, off+len) of the file (clipped to its size) into @buf,
 * given the disk's whole content in @disk. For tests and fuzzers.
 * @return the number of bytes written. */
size_t view_render(const struct view *v, uint64_t off, size_t len,
		   uint8_t *buf, const uint8_t *disk);

/*! view_seek() :
 * lseek(2) SEEK_DATA (@data) or SEEK_HOLE in the presented file, from
 * @off (< v->size): metadata is data, zeros are holes, and disk ranges are
 * what the disk's map says. So cp --sparse and qemu-img skip holes in any
 * view, as they would in a sparse file.
 * @return the offset, or -ENXIO (no data after @off). */
int64_t view_seek(const struct view *v, uint64_t off, bool data);

/* Granule runs: the allocation map seen at a coarser granularity (qcow2
 * clusters, VHD blocks, qcow2 L2 tables). A granule is allocated if any
 * byte of it is data. Stored as runs of allocated granules with the count
 * before each, so rank and select are binary searches, and memory grows
 * with the number of extents, never with the disk size. */
struct granule_run {
	uint64_t start, end;	/* granules [start, end) */
	uint64_t before;	/* allocated granules before start */
};

struct granules {
	uint64_t size;		/* granule size in bytes, a power of 2 */
	struct granule_run *v;
	size_t n;
	uint64_t total;		/* allocated granules */
};

/*! granules_build() : runs of @m at granules of @gsize bytes.
 * @return 0 or -ENOMEM. */
int granules_build(struct granules *g, const struct ferry_extents *m,
		   uint64_t gsize);
void granules_free(struct granules *g);

/*! granules_rank() : is granule @i allocated? If so, *rank is its index
 * among the allocated ones. */
bool granules_rank(const struct granules *g, uint64_t i, uint64_t *rank);

/*! granules_select() : the allocated granule of index @k (< total), and
 * the run it is in (*run). */
uint64_t granules_select(const struct granules *g, uint64_t k, size_t *run);

/* Big- and little-endian stores for the metadata writers. */
static inline void
view_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void
view_be32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline void
view_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/*! view_fill_table() :
 * Write bytes [off, off+len) of a table of big-endian @width-byte entries
 * (4 or 8) whose entry i is entry(v, i), into @buf. */
void view_fill_table(const struct view *v, uint64_t off, uint8_t *buf,
		     size_t len, unsigned width,
		     uint64_t (*entry)(const struct view *v, uint64_t i));

#endif
