/* libFuzzer target: a mount's .ferry/map.json as ferry-convert reads it.
 * Whatever the bytes, the parser either refuses them (with a reason) or
 * gives a disk whose data ranges, file range and cached chunks lie inside
 * it, and mount_map_ready() answers for any range without reading past
 * the map. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tools/convert/mountmap.h"
#include "tests/fuzz/fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *names[] = { "disk.raw", "disk.qcow2", "disk.p1.raw" };
	char why[300];

	ferry_log_quiet(true);
	for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
		struct mount_map m;
		int r;

		why[0] = '\0';
		r = mount_map_parse((const char *)data, size, names[k], &m, why,
				    sizeof why);
		CHECK(r == 0 || r == -ENOENT || r == -EPROTO || r == -ENOMEM);
		if (r < 0) {
			CHECK(r != -EPROTO || why[0]);
			continue;
		}
		CHECK(m.chunk >= 4096 && m.nchunks ==
		      (m.size + m.chunk - 1) / m.chunk);
		CHECK(m.offset <= m.size && m.length <= m.size - m.offset);
		CHECK(m.data.data_bytes <= m.size);
		for (size_t i = 0; i < m.data.n; i++)
			CHECK(m.data.v[i].off + m.data.v[i].len <= m.size);
		(void)mount_map_ready(&m, 0, m.size);
		(void)mount_map_ready(&m, m.offset, m.length);
		if (m.size > 1)
			(void)mount_map_ready(&m, m.size / 2, m.size);
		mount_map_free(&m);
	}
	return 0;
}
