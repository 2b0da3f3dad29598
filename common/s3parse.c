/* ferry — s3:// URLs, AWS INI files and S3's XML, parsed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/s3parse.h"

static bool
bucket_ok(const char *b, size_t n)
{
	if (n < 3 || n > S3_BUCKET_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = b[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && c != '.' && c != '-')
			return false;
		if ((i == 0 || i == n - 1) && !alnum)
			return false;
	}
	return true;
}

int
s3_url_parse(const char *url, struct s3_target *t, char *why, size_t whylen)
{
	const char *b, *slash;
	size_t kn;

	if (strncmp(url, "s3://", 5) != 0) {
		snprintf(why, whylen, "%s: not s3://BUCKET/KEY", url);
		return -EINVAL;
	}
	b = url + 5;
	slash = strchr(b, '/');
	if (!slash || !bucket_ok(b, (size_t)(slash - b))) {
		snprintf(why, whylen, "%s: the bucket must be 3-63 of a-z, 0-9, "
			 "'.' and '-', then /KEY", url);
		return -EINVAL;
	}
	kn = strlen(slash + 1);
	if (kn == 0 || kn > S3_KEY_MAX) {
		snprintf(why, whylen, "%s: the key must be 1-%d bytes", url,
			 S3_KEY_MAX);
		return -EINVAL;
	}
	for (const char *c = slash + 1; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f) {
			snprintf(why, whylen, "%s: a control character in the "
				 "key", url);
			return -EINVAL;
		}
	memcpy(t->bucket, b, (size_t)(slash - b));
	t->bucket[slash - b] = '\0';
	memcpy(t->key, slash + 1, kn + 1);
	return 0;
}

/* [a, b) without leading and trailing blanks. */
static void
trim(const char **a, const char **b)
{
	while (*a < *b && (**a == ' ' || **a == '\t' || **a == '\r'))
		(*a)++;
	while (*b > *a && ((*b)[-1] == ' ' || (*b)[-1] == '\t' ||
			   (*b)[-1] == '\r'))
		(*b)--;
}

int
s3_ini_get(const char *text, size_t len, const char *section,
	   const char *key, char *out, size_t outlen)
{
	const char *p = text, *end = text + len;
	bool in = false;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *a = p, *b = nl ? nl : end, *eq;

		p = nl ? nl + 1 : end;
		trim(&a, &b);
		if (a == b || *a == '#' || *a == ';')
			continue;
		if (*a == '[') {
			const char *c = b;

			if (c[-1] != ']' || c - a < 2)
				continue;
			a++;
			c--;
			trim(&a, &c);
			in = (size_t)(c - a) == strlen(section) &&
			     memcmp(a, section, (size_t)(c - a)) == 0;
			continue;
		}
		if (!in || !(eq = memchr(a, '=', (size_t)(b - a))))
			continue;
		{
			const char *ka = a, *kb = eq, *va = eq + 1, *vb = b;

			trim(&ka, &kb);
			trim(&va, &vb);
			if ((size_t)(kb - ka) != strlen(key) ||
			    memcmp(ka, key, (size_t)(kb - ka)) != 0)
				continue;
			if ((size_t)(vb - va) >= outlen)
				return -ENAMETOOLONG;
			memcpy(out, va, (size_t)(vb - va));
			out[vb - va] = '\0';
			return 0;
		}
	}
	return -ENOENT;
}

/* Decode the entity at @p (after '&') into @c; @return its length up to
 * and with ';', or 0 if it is none ferry knows. */
static size_t
entity(const char *p, const char *end, unsigned long *c)
{
	static const struct { const char *name; char c; } named[] = {
		{ "amp;", '&' }, { "lt;", '<' }, { "gt;", '>' },
		{ "quot;", '"' }, { "apos;", '\'' },
	};
	const char *semi = memchr(p, ';', (size_t)(end - p < 12 ? end - p : 12));

	if (!semi)
		return 0;
	for (size_t i = 0; i < sizeof named / sizeof *named; i++)
		if ((size_t)(semi + 1 - p) == strlen(named[i].name) &&
		    memcmp(p, named[i].name, strlen(named[i].name)) == 0) {
			*c = (unsigned char)named[i].c;
			return strlen(named[i].name);
		}
	if (*p == '#' && semi - p >= 2) {
		char *e;
		bool hex = p[1] == 'x';
		char num[12];

		memcpy(num, p + 1 + hex, (size_t)(semi - p - 1 - hex));
		num[semi - p - 1 - hex] = '\0';
		if (!num[0])
			return 0;
		*c = strtoul(num, &e, hex ? 16 : 10);
		if (*e || *c == 0 || *c > 0x10ffff)
			return 0;
		return (size_t)(semi + 1 - p);
	}
	return 0;
}

/* @c as UTF-8 into @out at *@k. @return false if it does not fit. */
static bool
put_utf8(unsigned long c, char *out, size_t outlen, size_t *k)
{
	char b[4];
	size_t n;

	if (c < 0x80) {
		b[0] = (char)c;
		n = 1;
	} else if (c < 0x800) {
		b[0] = (char)(0xc0 | (c >> 6));
		b[1] = (char)(0x80 | (c & 0x3f));
		n = 2;
	} else if (c < 0x10000) {
		b[0] = (char)(0xe0 | (c >> 12));
		b[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		b[2] = (char)(0x80 | (c & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | (c >> 18));
		b[1] = (char)(0x80 | ((c >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((c >> 6) & 0x3f));
		b[3] = (char)(0x80 | (c & 0x3f));
		n = 4;
	}
	if (*k + n >= outlen)
		return false;
	memcpy(out + *k, b, n);
	*k += n;
	return true;
}

int
s3_xml_get(const char *xml, size_t len, const char *tag, char *out,
	   size_t outlen)
{
	size_t tn = strlen(tag), k = 0;
	const char *p = xml, *end = xml + len, *a = NULL, *b;

	if (outlen == 0 || tn == 0 || tn > 64)
		return -ENAMETOOLONG;
	/* "<TAG>" or "<TAG attr...>" */
	while (p < end) {
		const char *lt = memchr(p, '<', (size_t)(end - p));

		if (!lt || (size_t)(end - lt) < tn + 2)
			return -ENOENT;
		if (memcmp(lt + 1, tag, tn) == 0 &&
		    (lt[1 + tn] == '>' || lt[1 + tn] == ' ' ||
		     lt[1 + tn] == '/')) {
			const char *gt = memchr(lt, '>', (size_t)(end - lt));

			if (!gt)
				return -EPROTO;
			if (gt[-1] == '/') {	/* <TAG/>: empty */
				out[0] = '\0';
				return 0;
			}
			a = gt + 1;
			break;
		}
		p = lt + 1;
	}
	if (!a)
		return -ENOENT;
	b = memchr(a, '<', (size_t)(end - a));
	if (!b || (size_t)(end - b) < tn + 3 || b[1] != '/' ||
	    memcmp(b + 2, tag, tn) != 0 || b[2 + tn] != '>')
		return -EPROTO;	/* nested, or not closed */
	for (const char *c = a; c < b; c++) {
		if (*c == '&') {
			unsigned long ch;
			size_t n = entity(c + 1, b, &ch);

			if (n == 0)
				return -EPROTO;
			if (!put_utf8(ch, out, outlen, &k))
				return -ENAMETOOLONG;
			c += n;
			continue;
		}
		if (*c == '\0')
			return -EPROTO;
		if (k + 1 >= outlen)
			return -ENAMETOOLONG;
		out[k++] = *c;
	}
	out[k] = '\0';
	return (int)k;
}

int
s3_uri_encode(const char *in, bool keep_slash, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t k = 0;

	for (const unsigned char *c = (const unsigned char *)in; *c; c++) {
		bool keep = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
			    (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' ||
			    *c == '_' || *c == '~' || (keep_slash && *c == '/');

		if (k + (keep ? 1 : 3) >= outlen)
			return -ENAMETOOLONG;
		if (keep) {
			out[k++] = (char)*c;
		} else {
			out[k++] = '%';
			out[k++] = hex[*c >> 4];
			out[k++] = hex[*c & 15];
		}
	}
	if (outlen == 0)
		return -ENAMETOOLONG;
	out[k] = '\0';
	return (int)k;
}

static int
header_cmp(const void *a, const void *b)
{
	return strcmp(((const struct s3_header *)a)->name,
		      ((const struct s3_header *)b)->name);
}

static void
hex(const unsigned char *md, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[md[i] >> 4];
		out[2 * i + 1] = d[md[i] & 15];
	}
	out[2 * n] = '\0';
}

static void
hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
	unsigned int n = 32;

	HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg,
	     strlen(msg), out, &n);
}

/* Append @s to @b (capacity @cap, length *@k). */
static bool
add(char *b, size_t cap, size_t *k, const char *s)
{
	size_t n = strlen(s);

	if (*k + n >= cap)
		return false;
	memcpy(b + *k, s, n + 1);
	*k += n;
	return true;
}

int
s3_sign(const char *access, const char *secret, const char *region,
	const char *amz_date, const char *method, const char *path,
	const char *query, const struct s3_header *headers, size_t n,
	const char *payload_hex, char *out, size_t outlen)
{
	struct s3_header h[16];
	char creq[8192], names[512], sts[512], scope[128], key[300];
	char chash[65], sig[65];
	unsigned char md[32], k1[32], k2[32], k3[32], k4[32];
	size_t k = 0, kn = 0;
	int r;

	if (n > sizeof h / sizeof *h || strlen(amz_date) != 16)
		return -EINVAL;
	memcpy(h, headers, n * sizeof *h);
	qsort(h, n, sizeof *h, header_cmp);
	names[0] = '\0';
	if (!add(creq, sizeof creq, &k, method) ||
	    !add(creq, sizeof creq, &k, "\n") ||
	    !add(creq, sizeof creq, &k, path) ||
	    !add(creq, sizeof creq, &k, "\n") ||
	    !add(creq, sizeof creq, &k, query) ||
	    !add(creq, sizeof creq, &k, "\n"))
		return -ENAMETOOLONG;
	for (size_t i = 0; i < n; i++) {
		if (!add(creq, sizeof creq, &k, h[i].name) ||
		    !add(creq, sizeof creq, &k, ":") ||
		    !add(creq, sizeof creq, &k, h[i].value) ||
		    !add(creq, sizeof creq, &k, "\n") ||
		    (i && !add(names, sizeof names, &kn, ";")) ||
		    !add(names, sizeof names, &kn, h[i].name))
			return -ENAMETOOLONG;
	}
	if (!add(creq, sizeof creq, &k, "\n") ||
	    !add(creq, sizeof creq, &k, names) ||
	    !add(creq, sizeof creq, &k, "\n") ||
	    !add(creq, sizeof creq, &k, payload_hex))
		return -ENAMETOOLONG;
	EVP_Digest(creq, k, md, NULL, EVP_sha256(), NULL);
	hex(md, 32, chash);
	if ((size_t)snprintf(scope, sizeof scope, "%.8s/%s/s3/aws4_request",
			     amz_date, region) >= sizeof scope ||
	    (size_t)snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s",
			     amz_date, scope, chash) >= sizeof sts ||
	    (size_t)snprintf(key, sizeof key, "AWS4%s", secret) >= sizeof key)
		return -ENAMETOOLONG;
	{
		char date[9];

		memcpy(date, amz_date, 8);
		date[8] = '\0';
		hmac(key, strlen(key), date, k1);
	}
	hmac(k1, 32, region, k2);
	hmac(k2, 32, "s3", k3);
	hmac(k3, 32, "aws4_request", k4);
	hmac(k4, 32, sts, md);
	hex(md, 32, sig);
	r = snprintf(out, outlen, "AWS4-HMAC-SHA256 Credential=%s/%s, "
		     "SignedHeaders=%s, Signature=%s", access, scope, names,
		     sig);
	return r < 0 || (size_t)r >= outlen ? -ENAMETOOLONG : r;
}
