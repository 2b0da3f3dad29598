/* libFuzzer target: the qcow2 table parser, on an image file that is the
 * input itself (reads past its end fail). Whatever the bytes, it either
 * refuses them with a reason or yields data and zero runs inside the
 * virtual disk that never overlap, and a chain map within them. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/memfile.h"
#include "backends/qcow2map.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct memfile f = { data, size };
	struct qcow2map m;
	struct ferry_extents out;
	char why[160] = "";
	int r;

	r = qcow2map_read(size, mem_read, &f, &m, why, sizeof why);
	CHECK(r == 0 || r == -EINVAL || r == -ENOTSUP || r == -EIO ||
	      r == -ENOMEM);
	if (r < 0) {
		CHECK(r == -EIO || r == -ENOMEM || why[0]);
		return 0;
	}
	for (size_t i = 0; i < m.data.n; i++)
		CHECK(m.data.v[i].len > 0 &&
		      m.data.v[i].off + m.data.v[i].len <= m.size);
	for (size_t i = 0; i < m.zero.n; i++)
		CHECK(m.zero.v[i].len > 0 &&
		      m.zero.v[i].off + m.zero.v[i].len <= m.size);
	for (size_t i = 0; i < m.zero.n; i++)
		CHECK(ferry_extents_data_in(&m.data, m.zero.v[i].off,
					    m.zero.v[i].len) == 0);
	ferry_extents_init(&out, m.size);
	CHECK(qcow2map_chain(&m, 1, m.size, &out) == 0);
	CHECK(out.data_bytes == m.data.data_bytes);
	ferry_extents_free(&out);
	qcow2map_free(&m);
	return 0;
}
