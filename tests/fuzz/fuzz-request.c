/* libFuzzer target: the request target any client sends ferry-export,
 * through libevent's URI parser (as evhttp does) and the exporter's router.
 * Whatever the bytes, a target is either refused with 400/404 and a reason
 * or names one endpoint; a disk name is always one an exporter could have
 * (no "..", "/", NUL or control byte once decoded), and digest parameters
 * are always inside their limits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "tools/export/route.h"
#include "tests/fuzz/fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evhttp_uri *uri;
	struct route rt;
	char *target, why[200] = "";
	int code;

	target = malloc(size + 1);
	if (!target)
		return 0;
	memcpy(target, data, size);
	target[size] = '\0';
	uri = evhttp_uri_parse_with_flags(target, EVHTTP_URI_NONCONFORMANT);
	free(target);
	if (!uri)
		return 0;
	code = export_route(evhttp_uri_get_path(uri), evhttp_uri_get_query(uri),
			    &rt, why, sizeof why);
	evhttp_uri_free(uri);
	CHECK(code == 0 || code == 400 || code == 404 || code == 503);
	if (code) {
		CHECK(why[0]);
		return 0;
	}
	if (rt.kind == ROUTE_LIST || rt.kind == ROUTE_INFO ||
	    rt.kind == ROUTE_METRICS)
		return 0;
	CHECK(rt.kind == ROUTE_DATA || rt.kind == ROUTE_EXTENTS ||
	      rt.kind == ROUTE_DIGESTS);
	CHECK(ferry_valid_disk_name(rt.name));
	CHECK(!strstr(rt.name, "/") && strcmp(rt.name, "..") != 0);
	if (rt.kind == ROUTE_DIGESTS) {
		CHECK(rt.chunk >= 4096 && rt.chunk <= (1u << 30));
		CHECK(rt.count >= 1 && rt.count <= DIGEST_MAX_COUNT);
		CHECK(rt.count * rt.chunk <= DIGEST_MAX_BYTES);
	}
	return 0;
}
