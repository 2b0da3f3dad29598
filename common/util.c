/* ferry — small pure helpers. See util.h. */
#include <ctype.h>
#include <stdbool.h>
#include <strings.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "common/util.h"

int
ferry_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mult = 1;
	const char *p = s;

	if (!s || !isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	switch (toupper((unsigned char)*p)) {
	case '\0': break;
	case 'K': mult = 1ULL << 10; p++; break;
	case 'M': mult = 1ULL << 20; p++; break;
	case 'G': mult = 1ULL << 30; p++; break;
	case 'T': mult = 1ULL << 40; p++; break;
	case 'B': break;
	default: return -EINVAL;
	}
	if (mult > 1 && *p == 'i')
		p++;
	if (*p == 'B' || *p == 'b')
		p++;
	if (*p != '\0')
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*out = v * mult;
	return 0;
}

int
ferry_parse_duration(const char *s, double *out)
{
	double v = 0, scale = 1;
	const char *p = s;
	bool digits = false;

	if (!s)
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++, digits = true)
		v = v * 10 + (*p - '0');
	if (*p == '.')
		for (double f = 0.1; isdigit((unsigned char)*++p); f /= 10)
			v += f * (*p - '0'), digits = true;
	switch (*p) {
	case '\0': break;
	case 's': p++; break;
	case 'm': scale = 60; p++; break;
	case 'h': scale = 3600; p++; break;
	default: return -EINVAL;
	}
	if (!digits || *p != '\0' || v * scale > 10 * 366 * 86400.0)
		return -EINVAL;
	*out = v * scale;
	return 0;
}

char *
ferry_format_size(uint64_t n, char *buf, size_t len)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)n;
	unsigned u = 0;

	while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", n);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

void
ferry_hex(const void *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *b = in;

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * len] = '\0';
}

int
ferry_random_token(char out[65])
{
	unsigned char raw[32];

	if (RAND_bytes(raw, sizeof raw) != 1)
		return -EIO;
	ferry_hex(raw, sizeof raw, out);
	return 0;
}

int
ferry_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

double
ferry_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
parse_u64(const char **p, uint64_t *out)
{
	uint64_t v = 0;
	bool overflow = false;

	if (**p < '0' || **p > '9')
		return -EINVAL;
	for (; **p >= '0' && **p <= '9'; (*p)++) {
		unsigned d = (unsigned)(**p - '0');

		if (v > (UINT64_MAX - d) / 10)
			overflow = true;
		else
			v = v * 10 + d;
	}
	*out = overflow ? UINT64_MAX : v;
	return overflow ? -ERANGE : 0;
}

int
ferry_parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
	const char *p = h;
	uint64_t a = 0, b = 0;
	int r;

	while (*p == ' ')
		p++;
	if (strncasecmp(p, "bytes=", 6) != 0)
		return -EINVAL;
	p += 6;
	while (*p == ' ')
		p++;
	if (*p == '-') {
		p++;
		r = parse_u64(&p, &b);
		if (r == -EINVAL)
			return -EINVAL;
		while (*p == ' ')
			p++;
		if (*p)
			return -EINVAL;
		if (b == 0)
			return -ERANGE;	/* "the last 0 bytes" */
		if (size == 0)
			return -ERANGE;
		*len = FERRY_MIN(b, size);
		*off = size - *len;
		return 0;
	}
	r = parse_u64(&p, &a);
	if (r == -EINVAL || *p != '-')
		return -EINVAL;
	p++;
	if (*p >= '0' && *p <= '9') {
		/* An overflowing end means "to the end": parse_u64 gave
		 * UINT64_MAX. */
		if (parse_u64(&p, &b) == -EINVAL)
			return -EINVAL;
		if (b < a)
			return -EINVAL;
	} else {
		b = UINT64_MAX;
	}
	while (*p == ' ')
		p++;
	if (*p)
		return -EINVAL;	/* junk, or a second range */
	if (a >= size)
		return -ERANGE;
	*off = a;
	*len = FERRY_MIN(b, size - 1) - a + 1;
	return 0;
}


bool
ferry_if_match(const char *h, const char *tag)
{
	size_t tlen = strlen(tag);

	while (*h) {
		const char *end = h + strcspn(h, ","), *v = h;
		size_t n;

		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		n = (size_t)(end - v);
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		if ((n == 1 && v[0] == '*') ||
		    (n == tlen + 2 && v[0] == '"' && v[n - 1] == '"' &&
		     memcmp(v + 1, tag, tlen) == 0))
			return true;
		h = *end ? end + 1 : end;
	}
	return false;
}

bool
ferry_accepts_coding(const char *h, const char *coding)
{
	size_t clen = strlen(coding);

	while (h && *h) {
		const char *end = h + strcspn(h, ","), *name = h, *semi;
		size_t nlen;

		while (name < end && (*name == ' ' || *name == '\t'))
			name++;
		semi = memchr(name, ';', (size_t)(end - name));
		nlen = (size_t)((semi ? semi : end) - name);
		while (nlen > 0 && (name[nlen - 1] == ' ' ||
				    name[nlen - 1] == '\t'))
			nlen--;
		if (nlen == clen && strncasecmp(name, coding, clen) == 0) {
			/* "q=0", "q=0.0", "q=0.000": refused. */
			const char *q = semi;

			while (q && q < end && (*q == ';' || *q == ' ' ||
						*q == '\t'))
				q++;
			if (q && end - q >= 3 &&
			    (q[0] == 'q' || q[0] == 'Q') && q[1] == '=') {
				const char *v = q + 2;

				if (*v == '0') {
					v++;
					if (*v == '.')
						v++;
					while (v < end && *v == '0')
						v++;
					while (v < end && (*v == ' ' ||
							   *v == '\t'))
						v++;
					if (v == end)
						return false;
				}
			}
			return true;
		}
		h = *end ? end + 1 : end;
	}
	return false;
}
