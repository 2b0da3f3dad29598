/* ferry — per-chunk digests. See digest.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <xxhash.h>

#include "common/digest.h"

static const uint8_t zeros[64 * 1024];

int
ferry_hasher_init(struct ferry_hasher *h)
{
	h->state = XXH3_createState();
	if (!h->state)
		return -ENOMEM;
	ferry_hasher_reset(h);
	return 0;
}

void
ferry_hasher_reset(struct ferry_hasher *h)
{
	XXH3_128bits_reset(h->state);
}

void
ferry_hasher_update(struct ferry_hasher *h, const void *buf, size_t len)
{
	XXH3_128bits_update(h->state, buf, len);
}

void
ferry_hasher_zeros(struct ferry_hasher *h, uint64_t len)
{
	while (len > 0) {
		size_t n = len < sizeof zeros ? (size_t)len : sizeof zeros;

		XXH3_128bits_update(h->state, zeros, n);
		len -= n;
	}
}

void
ferry_hasher_final(struct ferry_hasher *h, struct ferry_digest *out)
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(h->state));
	memcpy(out->b, c.digest, sizeof out->b);
}

void
ferry_digest_of(const void *buf, size_t len, struct ferry_digest *out)
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits(buf, len));
	memcpy(out->b, c.digest, sizeof out->b);
}

void
ferry_hasher_free(struct ferry_hasher *h)
{
	if (h->state)
		XXH3_freeState(h->state);
	h->state = NULL;
}

bool
ferry_digest_equal(const struct ferry_digest *a, const struct ferry_digest *b)
{
	return memcmp(a->b, b->b, sizeof a->b) == 0;
}

void
ferry_digest_hex(const struct ferry_digest *d, char out[33])
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < sizeof d->b; i++) {
		out[2 * i] = hex[d->b[i] >> 4];
		out[2 * i + 1] = hex[d->b[i] & 15];
	}
	out[32] = '\0';
}

static int
unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
ferry_digests_from_json(const char *text, size_t len, uint64_t chunk,
			uint64_t first, size_t count, struct ferry_digest *out,
			char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, 0, &jerr), *arr, *v;
	const char *alg = NULL;
	json_int_t c = -1, f = -1;
	size_t i;
	int r = -EPROTO;

	if (!root) {
		snprintf(why, whylen, "not JSON: %s", jerr.text);
		return -EPROTO;
	}
	if (json_unpack(root, "{s:s, s:I, s:I, s:o}", "algorithm", &alg,
			"chunk", &c, "first", &f, "digests", &arr) < 0 ||
	    !json_is_array(arr)) {
		snprintf(why, whylen, "missing algorithm, chunk, first or "
			 "digests");
		goto out;
	}
	if (strcmp(alg, FERRY_DIGEST_NAME) != 0) {
		snprintf(why, whylen, "algorithm %.40s, not " FERRY_DIGEST_NAME,
			 alg);
		goto out;
	}
	if (c < 0 || (uint64_t)c != chunk || f < 0 || (uint64_t)f != first ||
	    json_array_size(arr) != count) {
		snprintf(why, whylen, "answers other chunks than asked");
		goto out;
	}
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);

		if (!s || strlen(s) != FERRY_DIGEST_HEX) {
			snprintf(why, whylen, "digest %zu is not %d hex digits",
				 i, FERRY_DIGEST_HEX);
			goto out;
		}
		for (size_t k = 0; k < sizeof out[i].b; k++) {
			int hi = unhex(s[2 * k]), lo = unhex(s[2 * k + 1]);

			if (hi < 0 || lo < 0) {
				snprintf(why, whylen, "digest %zu is not %d "
					 "hex digits", i, FERRY_DIGEST_HEX);
				goto out;
			}
			out[i].b[k] = (uint8_t)(hi << 4 | lo);
		}
	}
	r = 0;
out:
	json_decref(root);
	return r;
}

int
ferry_digests_header(char *out, size_t cap, uint64_t block, uint64_t first,
		     const struct ferry_digest *dg, size_t n)
{
	int k = snprintf(out, cap, FERRY_DIGEST_NAME " %" PRIu64 " %" PRIu64
			 " ", block, first);
	size_t len;

	if (k < 0 || (size_t)k + n * (FERRY_DIGEST_HEX + 1) + 1 > cap)
		return -ENOSPC;
	len = (size_t)k;
	for (size_t i = 0; i < n; i++) {
		char hex[33];

		ferry_digest_hex(&dg[i], hex);
		memcpy(out + len, hex, FERRY_DIGEST_HEX);
		len += FERRY_DIGEST_HEX;
		if (i + 1 < n)
			out[len++] = ',';
	}
	out[len] = '\0';
	return (int)len;
}

/* A decimal number at *@p (advanced past it) up to @end, written as the
 * exporter writes it: no leading zero. */
static bool
take_number(const char **p, const char *end, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;

	if (s == end || *s < '0' || *s > '9' ||
	    (*s == '0' && s + 1 < end && s[1] >= '0' && s[1] <= '9'))
		return false;
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*p = s;
	*out = v;
	return true;
}

int
ferry_digests_from_header(const char *v, size_t len, uint64_t block,
			  uint64_t first, size_t count,
			  struct ferry_digest *out, char *why, size_t whylen)
{
	const char *p = v, *end = v + len;
	size_t alen = strlen(FERRY_DIGEST_NAME);
	uint64_t b, f;

	if (count == 0) {
		snprintf(why, whylen, "no digests asked for");
		return -EPROTO;
	}
	while (end > p && (end[-1] == ' ' || end[-1] == '\t' ||
			   end[-1] == '\r' || end[-1] == '\n'))
		end--;
	if ((size_t)(end - p) < alen + 1 ||
	    memcmp(p, FERRY_DIGEST_NAME " ", alen + 1) != 0) {
		snprintf(why, whylen, "not " FERRY_DIGEST_NAME " digests");
		return -EPROTO;
	}
	p += alen + 1;
	if (!take_number(&p, end, &b) || p == end || *p++ != ' ' ||
	    !take_number(&p, end, &f) || p == end || *p++ != ' ') {
		snprintf(why, whylen, "no block size and first block");
		return -EPROTO;
	}
	if (b != block || f != first) {
		snprintf(why, whylen, "answers other blocks than asked");
		return -EPROTO;
	}
	for (size_t i = 0; i < count; i++) {
		if (i > 0 && (p == end || *p++ != ',')) {
			snprintf(why, whylen, "%zu digests, not %zu", i, count);
			return -EPROTO;
		}
		if ((size_t)(end - p) < FERRY_DIGEST_HEX) {
			snprintf(why, whylen, "digest %zu is not %d hex digits",
				 i, FERRY_DIGEST_HEX);
			return -EPROTO;
		}
		for (size_t k = 0; k < sizeof out[i].b; k++) {
			int hi = unhex(p[2 * k]), lo = unhex(p[2 * k + 1]);

			if (hi < 0 || lo < 0) {
				snprintf(why, whylen, "digest %zu is not %d "
					 "hex digits", i, FERRY_DIGEST_HEX);
				return -EPROTO;
			}
			out[i].b[k] = (uint8_t)(hi << 4 | lo);
		}
		p += FERRY_DIGEST_HEX;
	}
	if (p != end) {
		snprintf(why, whylen, "more than %zu digests", count);
		return -EPROTO;
	}
	return 0;
}
