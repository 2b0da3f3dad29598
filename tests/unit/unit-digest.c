/* Per-chunk digests: piecewise hashing equals one pass, holes hash as the
 * zeros they read as, and replies parse only when they answer what was
 * asked. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "common/digest.h"
#include "check.h"

static void
test_hasher(void)
{
	static uint8_t buf[300000];
	struct ferry_hasher h;
	struct ferry_digest a, b, z;
	XXH128_canonical_t c;
	char hex[33], want[33];

	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)(i * 7 + i / 251);
	memset(buf + 100000, 0, 70000);	/* a hole inside */
	CHECK(ferry_hasher_init(&h) == 0);
	ferry_hasher_update(&h, buf, sizeof buf);
	ferry_hasher_final(&h, &a);
	/* The library's own one-shot hash, in canonical form. */
	XXH128_canonicalFromHash(&c, XXH3_128bits(buf, sizeof buf));
	CHECK(memcmp(a.b, c.digest, 16) == 0);

	ferry_hasher_reset(&h);
	ferry_hasher_update(&h, buf, 1);
	ferry_hasher_update(&h, buf + 1, 99999);
	ferry_hasher_zeros(&h, 70000);
	ferry_hasher_update(&h, buf + 170000, sizeof buf - 170000);
	ferry_hasher_final(&h, &b);
	CHECK(ferry_digest_equal(&a, &b));

	ferry_hasher_reset(&h);
	ferry_hasher_zeros(&h, 70001);
	ferry_hasher_final(&h, &z);
	CHECK(!ferry_digest_equal(&a, &z));
	ferry_hasher_free(&h);

	ferry_digest_hex(&a, hex);
	for (int i = 0; i < 16; i++)
		sprintf(want + 2 * i, "%02x", c.digest[i]);
	CHECK(strcmp(hex, want) == 0);
}

static void
test_parse(void)
{
	struct ferry_digest d[2];
	char why[200], text[300];
	const char *h1 = "00112233445566778899aabbccddeeff";
	const char *h2 = "ffeeddccbbaa99887766554433221100";
	char hex[33];

	snprintf(text, sizeof text, "{\"algorithm\":\"xxh3-128\",\"chunk\":"
		 "1048576,\"first\":7,\"digests\":[\"%s\",\"%s\"]}", h1, h2);
	CHECK(ferry_digests_from_json(text, strlen(text), 1048576, 7, 2, d,
				      why, sizeof why) == 0);
	ferry_digest_hex(&d[0], hex);
	CHECK(strcmp(hex, h1) == 0);
	ferry_digest_hex(&d[1], hex);
	CHECK(strcmp(hex, h2) == 0);
	/* Not what was asked: another first chunk, chunk size, count. */
	CHECK(ferry_digests_from_json(text, strlen(text), 1048576, 8, 2, d,
				      why, sizeof why) == -EPROTO);
	CHECK(ferry_digests_from_json(text, strlen(text), 65536, 7, 2, d,
				      why, sizeof why) == -EPROTO);
	CHECK(ferry_digests_from_json(text, strlen(text), 1048576, 7, 3, d,
				      why, sizeof why) == -EPROTO);
	snprintf(text, sizeof text, "{\"algorithm\":\"md5\",\"chunk\":1,"
		 "\"first\":0,\"digests\":[\"%s\"]}", h1);
	CHECK(ferry_digests_from_json(text, strlen(text), 1, 0, 1, d, why,
				      sizeof why) == -EPROTO);
	CHECK(strstr(why, "md5") != NULL);
	snprintf(text, sizeof text, "{\"algorithm\":\"xxh3-128\",\"chunk\":1,"
		 "\"first\":0,\"digests\":[\"%.31sX\"]}", h1);
	CHECK(ferry_digests_from_json(text, strlen(text), 1, 0, 1, d, why,
				      sizeof why) == -EPROTO);
	CHECK(ferry_digests_from_json("[", 1, 1, 0, 1, d, why,
				      sizeof why) == -EPROTO);
}

/* The in-band header: what the exporter writes, the client reads back;
 * anything but exactly the blocks asked for is refused. */
static void
test_header(void)
{
	struct ferry_digest d[3], back[3];
	char why[200], v[300], w[320];
	int n;

	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 16; k++)
			d[i].b[k] = (uint8_t)(i * 16 + k);
	n = ferry_digests_header(v, sizeof v, 4096, 12, d, 3);
	CHECK(n == (int)strlen(v));
	CHECK(strncmp(v, "xxh3-128 4096 12 000102", 23) == 0);
	CHECK(ferry_digests_from_header(v, (size_t)n, 4096, 12, 3, back, why,
					sizeof why) == 0);
	CHECK(memcmp(back, d, sizeof d) == 0);
	snprintf(w, sizeof w, "%s\r\n", v);	/* as the header line ends */
	CHECK(ferry_digests_from_header(w, strlen(w), 4096, 12, 3, back, why,
					sizeof why) == 0);
	CHECK(ferry_digests_from_header(v, (size_t)n, 4096, 13, 3, back, why,
					sizeof why) == -EPROTO);
	CHECK(ferry_digests_from_header(v, (size_t)n, 8192, 12, 3, back, why,
					sizeof why) == -EPROTO);
	CHECK(ferry_digests_from_header(v, (size_t)n, 4096, 12, 2, back, why,
					sizeof why) == -EPROTO);
	CHECK(strstr(why, "more than") != NULL);
	CHECK(ferry_digests_from_header(v, (size_t)n, 4096, 12, 4, back, why,
					sizeof why) == -EPROTO);
	CHECK(ferry_digests_from_header(v, (size_t)n - 1, 4096, 12, 3, back,
					why, sizeof why) == -EPROTO);
	CHECK(ferry_digests_from_header(v, 0, 4096, 12, 3, back, why,
					sizeof why) == -EPROTO);
	CHECK(ferry_digests_header(v, 40, 4096, 12, d, 3) == -ENOSPC);
	/* Numbers as the exporter writes them: no leading zero (found by
	 * fuzz-digesthdr, corpus/digesthdr/leading-zero). */
	n = ferry_digests_header(v, sizeof v, 4096, 12, d, 1);
	snprintf(w, sizeof w, "xxh3-128 04096 12 %s", v + 17);
	CHECK(ferry_digests_from_header(w, strlen(w), 4096, 12, 1, back, why,
					sizeof why) == -EPROTO);
	snprintf(w, sizeof w, "xxh3-128 4096 012 %s", v + 17);
	CHECK(ferry_digests_from_header(w, strlen(w), 4096, 12, 1, back, why,
					sizeof why) == -EPROTO);
	snprintf(w, sizeof w, "xxh3-128 4096 0 %s", v + 17);
	CHECK(ferry_digests_from_header(w, strlen(w), 4096, 0, 1, back, why,
					sizeof why) == 0);
}

int
main(void)
{
	test_hasher();
	test_parse();
	test_header();
	return check_result("unit-digest");
}
