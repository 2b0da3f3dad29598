/* ferry-export — request targets to endpoints. See route.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "common/util.h"
#include "tools/export/route.h"

/* A query parameter as an unsigned number, or -1 if absent or bad. */
static int64_t
query_u64(const struct evkeyvalq *q, const char *key)
{
	const char *v = evhttp_find_header(q, key);
	uint64_t n;

	if (!v || !*v || strspn(v, "0123456789") != strlen(v) ||
	    ferry_parse_size(v, &n) < 0 || n > INT64_MAX)
		return -1;
	return (int64_t)n;
}

static int
digests_query(const char *query, struct route *rt, char *why, size_t whylen)
{
	struct evkeyvalq q;
	int64_t chunk, first, count;
	int code = 0;

	TAILQ_INIT(&q);
	if (!query || evhttp_parse_query_str(query, &q) < 0) {
		snprintf(why, whylen, "digests need chunk=, first= and count=");
		code = 400;
		goto out;
	}
	chunk = query_u64(&q, "chunk");
	first = query_u64(&q, "first");
	count = query_u64(&q, "count");
	if (chunk < 4096 || chunk > (1 << 30) || first < 0 || count < 1 ||
	    count > (int64_t)DIGEST_MAX_COUNT ||
	    (uint64_t)count * (uint64_t)chunk > DIGEST_MAX_BYTES) {
		snprintf(why, whylen, "digests: chunk 4096-1G, count 1-%u, "
			 "at most %u MiB a request", DIGEST_MAX_COUNT,
			 DIGEST_MAX_BYTES >> 20);
		code = 400;
		goto out;
	}
	rt->chunk = (uint64_t)chunk;
	rt->first = (uint64_t)first;
	rt->count = (uint64_t)count;
out:
	evhttp_clear_headers(&q);
	return code;
}

/* ?fresh=1: a map computed after the request came (a resync's). */
static int
extents_query(const char *query, struct route *rt, char *why, size_t whylen)
{
	struct evkeyvalq q;
	int64_t fresh;
	int code = 0;

	if (!query || !*query)
		return 0;
	TAILQ_INIT(&q);
	if (evhttp_parse_query_str(query, &q) < 0) {
		snprintf(why, whylen, "malformed query");
		code = 400;
		goto out;
	}
	fresh = query_u64(&q, "fresh");
	if (evhttp_find_header(&q, "fresh") && fresh != 0 && fresh != 1) {
		snprintf(why, whylen, "extents: fresh=0 or fresh=1");
		code = 400;
		goto out;
	}
	rt->fresh = fresh == 1;
out:
	evhttp_clear_headers(&q);
	return code;
}

int
export_route(const char *path, const char *query, struct route *rt,
	     char *why, size_t whylen)
{
	const char *rest, *slash;
	char *seg, *name;
	size_t seglen, namelen;
	bool ok;

	memset(rt, 0, sizeof *rt);
	if (!path || path[0] != '/') {
		snprintf(why, whylen, "malformed request target");
		return 400;
	}
	if (strcmp(path, "/v1/disks") == 0) {
		rt->kind = ROUTE_LIST;
		return 0;
	}
	if (strcmp(path, "/v1/info") == 0) {
		rt->kind = ROUTE_INFO;
		return 0;
	}
	if (strcmp(path, "/metrics") == 0) {
		rt->kind = ROUTE_METRICS;
		return 0;
	}
	if (strncmp(path, "/v1/disks/", 10) != 0) {
		snprintf(why, whylen, "no such endpoint");
		return 404;
	}
	rest = path + 10;
	slash = strchr(rest, '/');
	seglen = slash ? (size_t)(slash - rest) : strlen(rest);
	if (seglen > 3 * FERRY_NAME_MAX) {
		snprintf(why, whylen, "no such disk");
		return 404;
	}
	seg = strndup(rest, seglen);
	name = seg ? evhttp_uridecode(seg, 0, &namelen) : NULL;
	free(seg);
	if (!name) {
		snprintf(why, whylen, "out of memory");
		return 503;
	}
	if (strlen(name) != namelen) {
		free(name);
		snprintf(why, whylen, "NUL byte in disk name");
		return 400;
	}
	/* Only names that could have been exported are looked up, so no
	 * decoded "..", "/" or control byte goes any further. */
	ok = ferry_valid_disk_name(name);
	if (ok)
		snprintf(rt->name, sizeof rt->name, "%s", name);
	free(name);
	if (!ok) {
		snprintf(why, whylen, "no such disk");
		return 404;
	}
	if (!slash) {
		rt->kind = ROUTE_DATA;
		return 0;
	}
	if (strcmp(slash, "/extents") == 0) {
		rt->kind = ROUTE_EXTENTS;
		return extents_query(query, rt, why, whylen);
	}
	if (strcmp(slash, "/digests") == 0) {
		rt->kind = ROUTE_DIGESTS;
		return digests_query(query, rt, why, whylen);
	}
	snprintf(why, whylen, "no such endpoint");
	return 404;
}
