/* libFuzzer target: one filesystem's free-space parser (-DFS=ext4, xfs,
 * ntfs, vfat, swap), on a volume that is the input itself (reads past its
 * end fail). Whatever the bytes, it refuses them with a reason or gives
 * free ranges inside the volume, in order, never overlapping. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/memfile.h"
#include "backends/fsmap/fsmap.h"

#define STR2(x) #x
#define STR(x) STR2(x)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct memfile f = { data, size };
	struct fsmap_vol v = { .read = mem_read, .ctx = &f, .size = size };
	const struct fsmap_fs *fs = fsmap_fs_find(STR(FS));
	struct ferry_extents fr;
	char why[200] = "";
	uint64_t end = 0;
	int r;

	CHECK(fs);
	ferry_extents_init(&fr, size);
	r = fs->free(&v, &fr, why, sizeof why);
	CHECK(r == 0 || r == -EINVAL || r == -ENOTSUP || r == -EIO ||
	      r == -ENOMEM);
	CHECK(r != -EINVAL || why[0]);
	CHECK(r != -ENOTSUP || why[0]);
	for (size_t i = 0; r == 0 && i < fr.n; i++) {
		CHECK(fr.v[i].len > 0 && fr.v[i].off >= end &&
		      fr.v[i].off + fr.v[i].len <= size);
		end = fr.v[i].off + fr.v[i].len;
	}
	ferry_extents_free(&fr);
	return 0;
}
