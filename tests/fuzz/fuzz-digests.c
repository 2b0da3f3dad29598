/* libFuzzer target: the digests reply a server sends (GET .../digests).
 * The first 4 bytes pick how many digests are asked for (0-255) and which
 * chunk first; the rest is the reply. Whatever the bytes, the parser either
 * refuses them or fills exactly the digests asked for, and the hex of each
 * is what the reply said. */
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
	char why[200], hex[33];
	size_t count;
	uint64_t first;
	int r;

	if (size < 4)
		return 0;
	count = data[0];
	first = (uint64_t)data[1] | (uint64_t)data[2] << 8;
	r = ferry_digests_from_json((const char *)data + 4, size - 4, 65536,
				    first, count, out, why, sizeof why);
	CHECK(r == 0 || r == -EPROTO);
	if (r == 0) {
		CHECK(count > 0 || memchr(data + 4, '[', size - 4));
		for (size_t i = 0; i < count; i++) {
			ferry_digest_hex(&out[i], hex);
			CHECK(strlen(hex) == 32);
			CHECK(memmem(data + 4, size - 4, hex, 32));
		}
	} else {
		CHECK(why[0]);
	}
	return 0;
}
