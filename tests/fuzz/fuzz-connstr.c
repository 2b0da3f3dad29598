/* libFuzzer target: connection strings pasted by users. A parsed string
 * has a token, a host, a port in range and a well-formed pin, and formats
 * back to a string that parses to the same fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/connstr.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_connstr c, c2;
	char why[200], out[1024];
	char *s = malloc(size + 1);

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (ferry_connstr_parse(s, &c, why, sizeof why) == 0) {
		CHECK(c.token[0] && c.host[0]);
		CHECK(c.port >= 1 && c.port <= 65535);
		CHECK(strncmp(c.pin, "sha256//", 8) == 0 &&
		       strlen(c.pin) == 8 + 44);
		CHECK(ferry_connstr_format(&c, out, sizeof out) > 0);
		CHECK(ferry_connstr_parse(out, &c2, why, sizeof why) == 0);
		CHECK(strcmp(c.token, c2.token) == 0 &&
		       strcmp(c.host, c2.host) == 0 && c.port == c2.port &&
		       strcmp(c.pin, c2.pin) == 0);
	} else {
		CHECK(why[0] != '\0');
	}
	free(s);
	return 0;
}
