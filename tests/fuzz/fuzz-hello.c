/* libFuzzer target: the lines of a reverse connection's hello, which the
 * transit reads from anyone who dials it (ferry_hello_parse) and the
 * exporter reads from whatever answers (ferry_hello_reply_parse). A parsed
 * hello has well-formed fields and formats back to a line that parses to
 * the same; a parsed reply is OK with a usable directory name or NO with a
 * reason free of control characters. */
#include <stdint.h>
#include <string.h>

#include "common/reverse.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct ferry_hello h, h2;
	char why[200], out[FERRY_HELLO_MAX + 8], text[FERRY_HELLO_MAX];
	bool ok = false;
	int n;

	why[0] = '\0';
	if (ferry_hello_parse(line, size, &h, why, sizeof why) == 0) {
		CHECK(ferry_source_name_ok(h.name));
		CHECK(strlen(h.token) >= 16 && strlen(h.host_id) == 32 &&
		      strlen(h.session) == 32 && strlen(h.pin) == 52);
		n = ferry_hello_format(&h, out, sizeof out);
		CHECK(n > 0 && out[n - 1] == '\n');
		CHECK(ferry_hello_parse(out, (size_t)n, &h2, why,
					sizeof why) == 0);
		CHECK(memcmp(&h, &h2, sizeof h) == 0);
	} else {
		CHECK(why[0] != '\0');
	}
	if (ferry_hello_reply_parse(line, size, &ok, text, sizeof text) == 0) {
		for (const char *p = text; *p; p++)
			CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
		CHECK(!ok || ferry_source_name_ok(text));
		CHECK(strlen(text) < size);
	}
	return 0;
}
