/* libFuzzer target: the disk listing an exporter sends (GET /v1/disks).
 * Whatever the bytes, the parser either refuses them with a reason or
 * yields disks with valid, distinct names, generations fit for a header,
 * a power-of-two sector size and no more allocated bytes than the disk. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/listing.h"
#include "common/log.h"
#include "tests/fuzz/fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_listing l;
	char why[200] = "";
	int r;

	ferry_log_quiet(true);
	r = ferry_listing_parse((const char *)data, size, &l, why, sizeof why);
	CHECK(r == 0 || r == -EPROTO || r == -ENOENT || r == -ENOMEM);
	if (r < 0) {
		CHECK(why[0]);
		CHECK(l.disks == NULL && l.ndisks == 0);
		return 0;
	}
	CHECK(l.ndisks > 0);
	CHECK(strlen(l.host_id) == 0 || strlen(l.host_id) >= 16);
	CHECK(strspn(l.host_id, "0123456789abcdef") == strlen(l.host_id));
	for (size_t i = 0; i < l.ndisks; i++) {
		const struct ferry_disk_info *d = &l.disks[i];

		CHECK(ferry_valid_disk_name(d->name));
		CHECK(ferry_valid_generation(d->generation));
		CHECK(d->sector_size >= 1 && d->sector_size <= 65536);
		CHECK((d->sector_size & (d->sector_size - 1)) == 0);
		CHECK(d->allocated <= d->size);
		CHECK(d->size <= INT64_MAX);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(l.disks[j].name, d->name) != 0);
	}
	ferry_listing_free(&l);
	return 0;
}
