/* ferry — which blocks of a disk its filesystems use.
 *
 * A block device reports every byte as data; the filesystems on it know
 * better. fsmap_disk() finds the partitions (parts.h), asks libblkid what
 * each holds (probe.c), and asks the filesystem's own parser (one file per
 * type, behind struct fsmap_fs) or, where the filesystem is mounted, the
 * kernel (mounted.c, FS_IOC_GETFSMAP) which of its blocks are free.
 *
 * Parsers report FREE ranges, never used ones: whatever a parser does not
 * name stays data, so a parser that stops early, or does not understand a
 * structure, can only keep too much. The rule that never breaks: a block a
 * filesystem uses is never reported free. Everything outside a recognised
 * filesystem's free space is used: partition tables, the gaps between
 * partitions (boot loaders live there), unknown, encrypted or damaged
 * volumes.
 *
 * Parsers are pure code over a read callback (like qcow2map.c), so that
 * unit tests and fuzz targets run them on bytes in memory.
 */
#ifndef FERRY_FSMAP_H
#define FERRY_FSMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/extents.h"

/* Read @len bytes at @off of a volume into @buf; 0 or -errno. */
typedef int (*fsmap_read_fn)(void *ctx, uint64_t off, void *buf, size_t len);

/* A volume: a partition, a whole disk, a logical volume. */
struct fsmap_vol {
	fsmap_read_fn read;
	void *ctx;
	uint64_t size;		/* bytes */
	/* Optional: the volume is also @fd from byte @fd_off (a partition
	 * of a block device), for libblkid to read only what it needs. */
	bool has_fd;
	int fd;
	uint64_t fd_off;
};

struct fsmap_fs {
	const char *name;	/* libblkid's TYPE, e.g. "ext4" */
	/* Add the ranges of @v that the filesystem does not use to @fr
	 * (initialised with v->size), in increasing order.
	 * @return 0; -EINVAL (not this filesystem, or damaged) or -ENOTSUP
	 * (a feature this parser does not read) with a reason in @why; or
	 * the read callback's error. On error @fr may hold some ranges:
	 * the caller drops them. */
	int (*free)(const struct fsmap_vol *v, struct ferry_extents *fr,
		    char *why, size_t whylen);
};

extern const struct fsmap_fs fsmap_ext2, fsmap_ext3, fsmap_ext4;
extern const struct fsmap_fs fsmap_xfs, fsmap_ntfs, fsmap_vfat, fsmap_swap;

/*! fsmap_fs_find() : the parser for libblkid's TYPE @type, or NULL. */
const struct fsmap_fs *fsmap_fs_find(const char *type);

/* How a volume's map was found, for reports. */
enum fsmap_method {
	FSMAP_UNKNOWN,		/* not read: every byte counts as used */
	FSMAP_BITMAP,		/* the filesystem's own structures on disk */
	FSMAP_KERNEL,		/* the kernel's, through the mount point */
	FSMAP_VOLUMES,		/* an LVM PV: its LVs, each mapped apart */
};

const char *fsmap_method_name(enum fsmap_method m);

/* One line of a report: a partition, a whole disk, a PV or an LV. */
struct fsmap_entry {
	char where[80];		/* "disk", "p2", "p3/vg0/root" */
	uint64_t off, len;	/* bytes on the disk (an LV: its first
				 * extent's place, and its size) */
	char type[32];		/* libblkid's TYPE, "" if none found */
	uint64_t used;		/* bytes the volume uses */
	enum fsmap_method method;
	char why[200];		/* for FSMAP_UNKNOWN: the reason */
};

struct fsmap_report {
	struct fsmap_entry *v;
	size_t n, cap;
};

void fsmap_report_free(struct fsmap_report *rep);

/* Where a volume is, for the kernel look-up: on the disk at [off, off+len),
 * or a logical volume (dm_name "vg-lv" as device-mapper names it). */
struct fsmap_place {
	uint64_t off, len;
	const char *dm_name;
};

/* Optional: the kernel's map of a mounted filesystem. */
struct fsmap_kernel {
	/* @return 1 with @fr (initialised with pl->len) filled in volume
	 * coordinates if a filesystem at @pl is mounted and mapped; 0 if
	 * it is not mounted; -errno with a reason if it is mounted but
	 * cannot be mapped (then the volume is all data: on-disk bitmaps of
	 * a mounted filesystem lag the kernel's). */
	int (*lookup)(void *ctx, const struct fsmap_place *pl,
		      struct ferry_extents *fr, char *why, size_t whylen);
	void *ctx;
};

/* Optional: what libblkid says a volume holds. */
struct fsmap_probe {
	/* Write the TYPE into @type ("" if nothing is recognised, or if
	 * several signatures disagree). @return 0 or -errno. */
	int (*probe)(void *ctx, const struct fsmap_vol *v, char *type,
		     size_t typelen);
	void *ctx;
};

/*! fsmap_probe_blkid : libblkid over the read callback (probe.c). */
extern const struct fsmap_probe fsmap_probe_blkid;

/*! fsmap_disk() :
 * The used ranges of the disk @v into @used (initialised with v->size,
 * empty), and a line per volume into @rep (initialised to zeros; NULL for
 * none). @kern may be NULL (nothing is mounted).
 * @return 0, or -errno of a failed read or of memory: then nothing is
 * known, and the caller treats the disk as all data. A malformed table or
 * filesystem is not an error: it is all data, and said in @rep. */
int fsmap_disk(const struct fsmap_vol *v, const struct fsmap_probe *probe,
	       const struct fsmap_kernel *kern, struct ferry_extents *used,
	       struct fsmap_report *rep);

/* Little-endian loads for the parsers. */
static inline uint16_t
fsmap_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t
fsmap_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t
fsmap_le64(const uint8_t *p)
{
	return (uint64_t)fsmap_le32(p) | (uint64_t)fsmap_le32(p + 4) << 32;
}

/*! fsmap_fail() : write a reason into @why and @return @r. */
int fsmap_fail(char *why, size_t whylen, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*! fsmap_add_free() : add [off, off+len) clipped to @free's size, in order
 * (a range that starts before the last one's end is refused, -EINVAL). */
int fsmap_add_free(struct ferry_extents *fr, uint64_t off, uint64_t len);

#endif
