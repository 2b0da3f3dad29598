/* libFuzzer target: the Ferry-Digests header of a data reply (in-band
 * digests of the blocks a small range touches). The first 3 bytes pick how
 * many digests are asked for (0-255) and the first block; the rest is the
 * header's value. Whatever the bytes, the parser either refuses them with
 * a reason or fills exactly the digests asked for, and formatting them
 * again gives the value back (less trailing white space). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_digest out[256];
	char why[200], back[256 * 33 + 64];
	const char *v = (const char *)data + 3;
	size_t count, len;
	uint64_t first;
	int r, k;

	if (size < 3)
		return 0;
	count = data[0];
	first = (uint64_t)data[1] | (uint64_t)data[2] << 8;
	len = size - 3;
	why[0] = '\0';
	r = ferry_digests_from_header(v, len, 4096, first, count, out, why,
				      sizeof why);
	CHECK(r == 0 || r == -EPROTO);
	if (r != 0) {
		CHECK(why[0]);
		return 0;
	}
	CHECK(count > 0);
	k = ferry_digests_header(back, sizeof back, 4096, first, out, count);
	CHECK(k > 0);
	CHECK((size_t)k <= len && memcmp(back, v, (size_t)k) == 0);
	for (size_t i = (size_t)k; i < len; i++)
		CHECK(strchr(" \t\r\n", v[i]) && v[i]);
	return 0;
}
