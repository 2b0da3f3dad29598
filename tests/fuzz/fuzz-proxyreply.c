/* libFuzzer target: an HTTP CONNECT proxy's reply, read by a dialling
 * exporter from whatever its proxy setting points at. A whole head has a
 * status code in 100-599 and ends within the bytes given, at a blank line;
 * its prefix parses the same; a head still incomplete is short of the cap. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "common/reverse.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t head = 0, head2 = 0;
	int code = 0, code2 = 0;
	int r = ferry_proxy_reply_parse(buf, size, &code, &head);

	if (r == 0) {
		CHECK(code >= 100 && code <= 599);
		CHECK(head >= 16 && head <= size && head <= 16384);
		CHECK(memcmp(buf + head - 4, "\r\n\r\n", 4) == 0);
		CHECK(ferry_proxy_reply_parse(buf, head, &code2, &head2) == 0);
		CHECK(code2 == code && head2 == head);
	} else if (r == -EAGAIN) {
		CHECK(size < 16384);
	} else {
		CHECK(r == -EPROTO);
	}
	return 0;
}
