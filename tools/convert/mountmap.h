/* ferry-convert — .ferry/map.json of a ferry mount, parsed (doc/mount.md).
 * Pure code: the document says, for the disk behind one file of the mount,
 * which ranges hold data and which chunks are already cached. */
#ifndef FERRY_MOUNTMAP_H
#define FERRY_MOUNTMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/bitmap.h"
#include "common/extents.h"

struct mount_map {
	char disk[128];		/* the disk the file shows */
	char generation[128];
	uint64_t layout;	/* resyncs that took a new map (0 if not said) */
	char format[16];	/* the file's format: raw, qcow2, vhd, fixedvhd */
	uint64_t offset, length; /* the disk range the file's content is */
	uint64_t size;		/* of the disk */
	uint64_t chunk;		/* cache chunk size */
	uint64_t nchunks;
	bool complete;		/* every data chunk cached */
	bool prefetch;		/* the mount hydrates in the background */
	struct ferry_extents data;	/* the disk's data ranges */
	struct ferry_bitmap present;	/* cached chunks */
	char raw_file[160];	/* a raw file of the whole disk, "" if none */
};

/*! mount_map_parse() : the entry of file @name in map.json @text.
 * @return 0; -ENOENT (no such file in the mount), -EPROTO (malformed: @why
 * says how) or -ENOMEM. On error @m holds nothing to free. */
int mount_map_parse(const char *text, size_t len, const char *name,
		    struct mount_map *m, char *why, size_t whylen);

void mount_map_free(struct mount_map *m);

/*! mount_map_ready() : are all chunks of disk range [off, off+len)
 * cached (or holes)? */
bool mount_map_ready(const struct mount_map *m, uint64_t off, uint64_t len);

#endif
