/* ferry — GET /v1/disks replies, parsed. See listing.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backends/listing.h"
#include "common/digest.h"
#include "common/log.h"

bool
ferry_valid_generation(const char *g)
{
	size_t n = strlen(g);

	if (n == 0 || n >= sizeof ((struct ferry_disk_info *)0)->generation)
		return false;
	for (size_t i = 0; i < n; i++)
		if (g[i] < 0x21 || g[i] > 0x7e || g[i] == '"' || g[i] == '\\')
			return false;
	return true;
}

static bool
seen_name(const struct ferry_listing *l, const char *name)
{
	for (size_t i = 0; i < l->ndisks; i++)
		if (strcmp(l->disks[i].name, name) == 0)
			return true;
	return false;
}

/* One entry of "disks" into @d; false if it is not usable. */
static bool
parse_disk(json_t *e, struct ferry_disk_info *d)
{
	const char *name, *gen = "", *alg = "";
	json_int_t size, alloc = -1, sector = 512;
	int live = 0;

	if (json_unpack(e, "{s:s, s:I, s?:I, s?:I, s?:s, s?:b, s?:s}",
			"name", &name, "size", &size, "allocated", &alloc,
			"sector_size", &sector, "generation", &gen,
			"live", &live, "digests", &alg) < 0)
		return false;
	if (size < 0 || !ferry_valid_disk_name(name) || sector <= 0 ||
	    sector > 65536 || (sector & (sector - 1)) ||
	    !ferry_valid_generation(gen))
		return false;
	memset(d, 0, sizeof *d);
	snprintf(d->name, sizeof d->name, "%s", name);
	snprintf(d->generation, sizeof d->generation, "%s", gen);
	d->size = (uint64_t)size;
	/* The allocated count is only shown, but never more than the disk. */
	d->allocated = alloc >= 0 && (uint64_t)alloc <= d->size ?
		       (uint64_t)alloc : d->size;
	d->sector_size = (uint32_t)sector;
	d->live = live;
	d->digests = strcmp(alg, FERRY_DIGEST_NAME) == 0;
	return true;
}

int
ferry_listing_parse(const char *body, size_t len, struct ferry_listing *out,
		    char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *root, *arr, *e;
	size_t i;
	int r = 0;

	memset(out, 0, sizeof *out);
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(why, whylen, "not JSON: %s", jerr.text);
		return -EPROTO;
	}
	/* The exporter's host, when it says: the cache then follows the
	 * source whatever address or key it has this time. */
	e = json_object_get(root, "host_id");
	if (json_is_string(e) && json_string_length(e) >= 16 &&
	    json_string_length(e) < sizeof out->host_id &&
	    strspn(json_string_value(e), "0123456789abcdef") ==
		    json_string_length(e))
		snprintf(out->host_id, sizeof out->host_id, "%s",
			 json_string_value(e));
	arr = json_object_get(root, "disks");
	if (!json_is_array(arr)) {
		snprintf(why, whylen, "no \"disks\" array");
		r = -EPROTO;
		goto out;
	}
	out->disks = calloc(json_array_size(arr) + 1, sizeof *out->disks);
	if (!out->disks) {
		snprintf(why, whylen, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	json_array_foreach(arr, i, e) {
		struct ferry_disk_info *d = &out->disks[out->ndisks];

		if (!parse_disk(e, d)) {
			ferry_error("disk listing: entry %zu is malformed; "
				    "skipped", i);
			out->skipped++;
		} else if (seen_name(out, d->name)) {
			ferry_error("disk listing: entry %zu repeats disk "
				    "\"%s\"; skipped", i, d->name);
			out->skipped++;
		} else {
			out->ndisks++;
		}
	}
	if (out->ndisks == 0 && out->skipped == 0) {
		snprintf(why, whylen, "the exporter serves no disks");
		r = -ENOENT;
	} else if (out->ndisks == 0) {
		snprintf(why, whylen, "no usable disk (%zu malformed)",
			 out->skipped);
		r = -EPROTO;
	}
out:
	json_decref(root);
	if (r < 0)
		ferry_listing_free(out);
	return r;
}

void
ferry_listing_free(struct ferry_listing *l)
{
	free(l->disks);
	l->disks = NULL;
	l->ndisks = 0;
}
