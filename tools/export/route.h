/* ferry-export — which endpoint a request target names (doc/protocol.md).
 * Pure code apart from libevent's query and percent decoders: it is the
 * exporter's parser of what any client sends after the method. */
#ifndef FERRY_EXPORT_ROUTE_H
#define FERRY_EXPORT_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"

/* Digests: at most this many chunks, and this many bytes hashed, a
 * request, so that the event loop it runs on stays responsive; clients
 * ask in pieces. */
#define DIGEST_MAX_COUNT 65536u
#define DIGEST_MAX_BYTES (256u << 20)

enum route_kind {
	ROUTE_LIST,	/* /v1/disks */
	ROUTE_INFO,	/* /v1/info */
	ROUTE_DATA,	/* /v1/disks/NAME */
	ROUTE_EXTENTS,	/* /v1/disks/NAME/extents[?fresh=1] */
	ROUTE_DIGESTS,	/* /v1/disks/NAME/digests?chunk=&first=&count= */
	ROUTE_METRICS,	/* /metrics (Prometheus text format) */
};

struct route {
	enum route_kind kind;
	char name[FERRY_NAME_MAX + 1];	/* percent-decoded, a valid name */
	uint64_t chunk, first, count;	/* digests: within the limits above */
	bool fresh;			/* extents: map it anew */
};

/*! export_route() : the endpoint that @path (and @query, or NULL) name.
 * @return 0, or the HTTP status to refuse with (400, 404; 503 when out of
 * memory) and @why. */
int export_route(const char *path, const char *query, struct route *rt,
		 char *why, size_t whylen);

#endif
