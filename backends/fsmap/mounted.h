/* ferry — where a volume of an exported disk is mounted, and the kernel's
 * map of it (mounted.c). Not pure: reads sysfs and /proc/self/mountinfo. */
#ifndef FERRY_FSMAP_MOUNTED_H
#define FERRY_FSMAP_MOUNTED_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backends/fsmap/fsmap.h"

/* What a device or file is underneath: a file (dev, ino) or a plain
 * block device (dev), and the offset into it. */
struct mounted_base {
	bool file;
	dev_t dev;
	ino_t ino;
	uint64_t off;
};

struct mounted_ctx {
	struct mounted_base base;	/* the exported path's */
};

/*! mounted_init() : a kernel look-up (fsmap.h) for the disk at @path
 * (a block device or file). @return 0 or -errno. */
int mounted_init(struct mounted_ctx *c, const char *path,
		 struct fsmap_kernel *k);

/*! mounted_resolve_path() : @path's base (see above). */
int mounted_resolve_path(const char *path, struct mounted_base *b);

#endif
