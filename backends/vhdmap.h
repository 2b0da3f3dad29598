/* ferry — the allocation map of a dynamic or differencing VHD, read from
 * its block allocation table (libvhdi reads the data but exposes no map).
 * Pure code over a read callback; nothing read is trusted. A fixed VHD,
 * a VHDX, or anything not understood is reported, and the caller counts
 * every block as data.
 */
#ifndef FERRY_VHDMAP_H
#define FERRY_VHDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/extents.h"

typedef int (*vhdmap_read_fn)(void *ctx, uint64_t off, void *buf,
			      size_t len);

struct vhdmap {
	uint64_t size;			/* virtual disk size */
	bool differencing;		/* blocks it lacks are its parent's */
	struct ferry_extents data;	/* blocks this image stores */
	uint32_t block;			/* block size, bytes */
	uint32_t bitmap;		/* bytes of a block's sector bitmap */
	uint32_t nbat;
	uint32_t *bat;			/* first sector of each block, or
					 * 0xFFFFFFFF: not stored */
};

/*! vhdmap_read() : the map of the VHD of @file_size bytes. @return 0;
 * -EINVAL (not a VHD, or malformed), -ENOTSUP (fixed: no table), -ENOMEM
 * or the callback's error, with @why. On error @m holds nothing. */
int vhdmap_read(uint64_t file_size, vhdmap_read_fn read, void *ctx,
		struct vhdmap *m, char *why, size_t whylen);

void vhdmap_free(struct vhdmap *m);

/*! vhdmap_pread() : @len bytes of the virtual disk at @off, read from the
 * file of @file_size bytes through @read, as a dynamic (not differencing)
 * VHD stores them: sectors its blocks' bitmaps mark present from the
 * block's data, all others zeros. libvhdi does the same at a few tens of
 * MB/s; this reads whole runs of sectors at once.
 * @return 0, -EINVAL (a block outside the file) or the callback's error. */
int vhdmap_pread(const struct vhdmap *m, uint64_t file_size,
		 vhdmap_read_fn read, void *ctx, uint8_t *buf, size_t len,
		 uint64_t off);

#endif
