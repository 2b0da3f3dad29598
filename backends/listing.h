/* ferry — the disk listing a ferry-export serves (GET /v1/disks), parsed.
 * Pure code: the reply comes from the network, so every field is checked
 * before it names a file, goes into a header or sizes anything. */
#ifndef FERRY_LISTING_H
#define FERRY_LISTING_H

#include <stddef.h>

#include "backends/backend.h"

struct ferry_listing {
	char host_id[65];		/* hex, "" if the exporter did not say */
	struct ferry_disk_info *disks;	/* the well-formed entries, in order */
	size_t ndisks;
	size_t skipped;			/* malformed or repeated entries */
};

/*! ferry_listing_parse() : parse @len bytes of @body into @out. Entries
 * that are malformed (a bad name, size, sector size or generation) or that
 * repeat an earlier name are skipped, each with a log line, and counted.
 * @return 0; -EPROTO (not JSON, no "disks" array, or only malformed
 * entries), -ENOENT (no disks at all) or -ENOMEM, @why saying which. On error @out holds nothing to free. */
int ferry_listing_parse(const char *body, size_t len,
			struct ferry_listing *out, char *why, size_t whylen);

void ferry_listing_free(struct ferry_listing *l);

/*! ferry_valid_generation() : usable in an If-Match header: 1-127
 * printable characters, no quotes or backslashes. */
bool ferry_valid_generation(const char *g);

#endif
