/* libFuzzer target: the VHD block allocation table parser, on an image
 * file that is the input itself (reads past its end fail). Whatever the
 * bytes, it either refuses them with a reason or yields data runs inside
 * the virtual disk, and reading them gives zeros outside those runs. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/memfile.h"
#include "backends/vhdmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct memfile f = { data, size };
	struct vhdmap m;
	char why[160] = "";
	int r;

	r = vhdmap_read(size, mem_read, &f, &m, why, sizeof why);
	CHECK(r == 0 || r == -EINVAL || r == -ENOTSUP || r == -EIO ||
	      r == -ENOMEM);
	if (r < 0) {
		CHECK(r == -EIO || why[0]);
		return 0;
	}
	for (size_t i = 0; i < m.data.n; i++)
		CHECK(m.data.v[i].len > 0 &&
		      m.data.v[i].off + m.data.v[i].len <= m.size);
	CHECK(m.data.data_bytes <= m.size);
	/* Reading: whatever the blocks hold, bytes outside the data runs
	 * are zeros, and nothing is read past the file. */
	{
		uint8_t buf[8192];
		uint64_t len = m.size < sizeof buf ? m.size : sizeof buf;

		for (uint64_t off = 0; off < m.size && off < 4 * sizeof buf;
		     off += len) {
			size_t n = (size_t)(m.size - off < len ? m.size - off
							       : len);

			if (vhdmap_pread(&m, size, mem_read, &f, buf, n,
					 off) < 0)
				break;
			for (size_t i = 0; i < n; i++)
				CHECK(buf[i] == 0 ||
				      ferry_extents_data_in(&m.data, off + i,
							    1) == 1);
		}
	}
	vhdmap_free(&m);
	return 0;
}
