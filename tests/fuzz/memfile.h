/* Fuzz targets' shared harness: the input as a file or disk that parsers
 * read through a callback; reads past its end fail with -EIO, as a short
 * file's would. */
#ifndef FERRY_FUZZ_MEMFILE_H
#define FERRY_FUZZ_MEMFILE_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n",	\
	__FILE__, __LINE__, #c); abort(); } } while (0)

struct memfile {
	const uint8_t *p;
	size_t n;
};

static inline int
mem_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	const struct memfile *f = ctx;

	if (off > f->n || len > f->n - off)
		return -EIO;
	memcpy(buf, f->p + off, len);
	return 0;
}

#endif
