/* ferry — the allocation map of one qcow2 image, read from its L1 and L2
 * tables (libqcow reads the data but exposes no map). Pure code: the image
 * is read through a callback, and nothing read is trusted: offsets are
 * checked against the file, table sizes are bounded, and an image the
 * parser does not understand (extended L2 entries, an external data file,
 * encryption) is reported, so the caller falls back to "all data".
 */
#ifndef FERRY_QCOW2MAP_H
#define FERRY_QCOW2MAP_H

#include <stddef.h>
#include <stdint.h>

#include "common/extents.h"

/* Read @len bytes at @off of the image file into @buf; 0 or -errno. */
typedef int (*qcow2map_read_fn)(void *ctx, uint64_t off, void *buf,
				size_t len);

struct qcow2map {
	uint64_t size;			/* virtual disk size */
	struct ferry_extents data;	/* clusters this image stores */
	struct ferry_extents zero;	/* clusters it marks as zeros (v3),
					 * hiding any backing image's data */
	uint64_t backing_off;		/* the backing file name, if any */
	uint32_t backing_len;
	uint32_t cluster;		/* bytes; set once the header is read,
					 * even when the map is not */
};

/*! qcow2map_read() : the map of the qcow2 image of @file_size bytes.
 * @return 0; -EINVAL (not a qcow2 image, or malformed: @why says how),
 * -ENOTSUP (a feature this parser does not read: @why says which),
 * -ENOMEM, or the read callback's error. On error @m holds nothing but
 * @m->cluster (0 if the header was not understood). */
int qcow2map_read(uint64_t file_size, qcow2map_read_fn read, void *ctx,
		  struct qcow2map *m, char *why, size_t whylen);

void qcow2map_free(struct qcow2map *m);

/*! qcow2map_chain() : the map of a virtual disk of @size bytes made of
 * @n images, @maps[0] on top: each image's data, and below it what its
 * backing images hold where it neither stores data nor marks zeros.
 * @out initialised with @size. @return 0 or -ENOMEM. */
int qcow2map_chain(const struct qcow2map *maps, size_t n, uint64_t size,
		   struct ferry_extents *out);

#endif
