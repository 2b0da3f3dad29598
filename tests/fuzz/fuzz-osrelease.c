/* libFuzzer target: /etc/os-release as ferry-export reads it for
 * GET /v1/info. Whatever the bytes, the result is an object of known keys
 * whose values are strings without control bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/osrelease.h"
#include "tests/fuzz/fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *o = ferry_os_release((const char *)data, size), *v;
	const char *k;

	CHECK(o && json_is_object(o));
	CHECK(json_object_size(o) <= 8);
	json_object_foreach(o, k, v) {
		const char *s = json_string_value(v);

		CHECK(s && strlen(s) < 256);
		for (; *s; s++)
			CHECK((unsigned char)*s >= 0x20 && *s != 0x7f);
	}
	json_decref(o);
	return 0;
}
