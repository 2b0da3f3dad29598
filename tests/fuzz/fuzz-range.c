/* libFuzzer target: the request headers ferry-export parses from any
 * client, Range, Accept-Encoding and If-Match. The first 8 bytes pick the disk size,
 * the rest is the header value. A parsed range is never empty and never
 * leaves the disk; the coding parser never reads past the string. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t disk = 0, off = 0, len = 0;
	char *h;
	int r;

	if (size < 8)
		return 0;
	memcpy(&disk, data, 8);
	h = malloc(size - 8 + 1);
	if (!h)
		return 0;
	memcpy(h, data + 8, size - 8);
	h[size - 8] = '\0';
	(void)ferry_accepts_coding(h, "zstd");
	(void)ferry_if_match(h, "file-803-1a2b-1048576-1700000000.000000000");
	r = ferry_parse_range(h, disk, &off, &len);
	CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (r == 0) {
		CHECK(len > 0);
		CHECK(off < disk);
		CHECK(len <= disk - off);
	}
	free(h);
	return 0;
}
