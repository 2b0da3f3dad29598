/* libFuzzer target: the partition table parser, on a disk that is the
 * input itself (reads past its end fail, as a short source would). Whatever
 * the bytes, it either refuses them with a reason or yields partitions that
 * lie inside the disk, are not empty and do not overlap. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/fsmap/parts.h"
#include "tests/fuzz/memfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct part_table t;
	struct memfile d = { data, size };
	char why[160];
	int r;

	r = parts_scan(size, mem_read, &d, &t, why, sizeof why);
	CHECK(r == 0 || r == -EINVAL || r == -EIO || r == -ENOMEM);
	if (r < 0) {
		CHECK(t.n == 0);
		CHECK(r != -EINVAL || why[0]);
		return 0;
	}
	CHECK(t.n <= PARTS_MAX);
	for (size_t i = 0; i < t.n; i++) {
		CHECK(t.v[i].len > 0);
		CHECK(t.v[i].off < size && t.v[i].len <= size - t.v[i].off);
		for (size_t j = 0; j < i; j++)
			CHECK(t.v[j].off + t.v[j].len <= t.v[i].off ||
			      t.v[i].off + t.v[i].len <= t.v[j].off);
	}
	return 0;
}
