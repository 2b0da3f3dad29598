/* libFuzzer target: the VHD block allocation table parser, on an image
 * file that is the input itself (reads past its end fail). Whatever the
 * bytes, it either refuses them with a reason or yields data runs inside
 * the virtual disk, and reading them gives zeros outside those runs. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/vhdmap.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n",	\
	__FILE__, __LINE__, #c); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct file {
	const uint8_t *p;
	size_t n;
};

static int
mem_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	const struct file *f = ctx;

	if (off > f->n || len > f->n - off)
		return -EIO;
	memcpy(buf, f->p + off, len);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct file f = { data, size };
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
