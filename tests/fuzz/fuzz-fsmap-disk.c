/* libFuzzer target: a whole disk's used map (fsmap_disk: the partition
 * table, each volume's parser, LVM PVs and their LVs), on a disk that is
 * the input itself. The probe is a stand-in for libblkid that names a
 * volume's type by its first byte, so that every parser and the LVM
 * recursion are reached. Whatever the bytes: the used map lies inside the
 * disk, never drops the first sector, and each volume's report is sane. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/memfile.h"
#include "backends/fsmap/fsmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
probe(void *ctx, const struct fsmap_vol *v, char *type, size_t len)
{
	static const char *const types[] = { "", "ext4", "xfs", "ntfs",
					     "vfat", "swap", "LVM2_member",
					     "crypto_LUKS" };
	uint8_t b = 0;
	int r;

	(void)ctx;
	if (v->size == 0) {
		type[0] = '\0';
		return 0;
	}
	r = v->read(v->ctx, 0, &b, 1);
	if (r < 0)
		return r;
	snprintf(type, len, "%s", types[b % 8]);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct memfile f = { data, size };
	struct fsmap_vol v = { .read = mem_read, .ctx = &f, .size = size };
	struct fsmap_probe pr = { probe, NULL };
	struct fsmap_report rep = { 0 };
	struct ferry_extents used;
	int r;

	ferry_extents_init(&used, size);
	r = fsmap_disk(&v, &pr, NULL, &used, &rep);
	CHECK(r == 0 || r == -EIO || r == -ENOMEM);
	if (r == 0) {
		for (size_t i = 0; i < used.n; i++)
			CHECK(used.v[i].len > 0 &&
			      used.v[i].off + used.v[i].len <= size);
		CHECK(size < 512 ||
		      ferry_extents_data_in(&used, 0, 512) == 512);
		for (size_t i = 0; i < rep.n; i++)
			CHECK(rep.v[i].used <= rep.v[i].len);
	}
	ferry_extents_free(&used);
	fsmap_report_free(&rep);
	return 0;
}
