/* ferry — connection strings. See connstr.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/connstr.h"

#define SCHEME "ferry://"
#define PIN_PREFIX "sha256//"

static int
fail(char *why, size_t whylen, const char *msg)
{
	snprintf(why, whylen, "%s", msg);
	return -EINVAL;
}

static int
is_token_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
	       ch == '_' || ch == '~';
}

/* A name or IPv4 address: letters, digits, '.', '-', '_'. In brackets:
 * an IPv6 address (hex digits, ':' and '.', at least one ':'), so that
 * formatting it back puts the brackets back. */
static bool
valid_host(const char *h, bool bracketed)
{
	if (bracketed && !strchr(h, ':'))
		return false;
	for (; *h; h++) {
		char ch = *h;
		bool hex = (ch >= '0' && ch <= '9') ||
			   (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');

		if (bracketed ? !(hex || ch == ':' || ch == '.') :
		    !(is_token_char(ch) && ch != '~'))
			return false;
	}
	return true;
}

static int
valid_pin(const char *b64, size_t len)
{
	unsigned char raw[48];

	/* SHA-256 is 32 bytes: 44 base64 characters ending in one '='. */
	if (len != 44 || b64[43] != '=')
		return 0;
	for (size_t i = 0; i < 43; i++) {
		char ch = b64[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '+' || ch == '/'))
			return 0;
	}
	return EVP_DecodeBlock(raw, (const unsigned char *)b64, 44) == 33;
}

int
ferry_connstr_parse(const char *s, struct ferry_connstr *c, char *why,
		    size_t whylen)
{
	const char *p, *at, *hend, *q;
	size_t n;
	char *end;
	unsigned long port;
	bool bracketed;

	memset(c, 0, sizeof *c);
	if (strncmp(s, SCHEME, strlen(SCHEME)) != 0)
		return fail(why, whylen, "does not start with ferry://");
	p = s + strlen(SCHEME);

	at = strchr(p, '@');
	if (!at || at == p)
		return fail(why, whylen, "no TOKEN@ before the host");
	n = (size_t)(at - p);
	if (n >= sizeof c->token)
		return fail(why, whylen, "token too long");
	for (size_t i = 0; i < n; i++)
		if (!is_token_char(p[i]))
			return fail(why, whylen, "token has a character "
				    "that is not URL-safe");
	memcpy(c->token, p, n);
	p = at + 1;

	bracketed = *p == '[';
	if (bracketed) {
		hend = strchr(p, ']');
		if (!hend || hend == p + 1)
			return fail(why, whylen, "unterminated [IPv6] host");
		n = (size_t)(hend - p - 1);
		if (n >= sizeof c->host)
			return fail(why, whylen, "host too long");
		memcpy(c->host, p + 1, n);
		p = hend + 1;
	} else {
		hend = p + strcspn(p, ":/?");
		n = (size_t)(hend - p);
		if (n == 0)
			return fail(why, whylen, "empty host");
		if (n >= sizeof c->host)
			return fail(why, whylen, "host too long");
		memcpy(c->host, p, n);
		p = hend;
	}
	if (!valid_host(c->host, bracketed))
		return fail(why, whylen, bracketed ?
			    "[host] is not an IPv6 address" :
			    "bad character in host");

	if (*p != ':')
		return fail(why, whylen, "no :PORT after the host");
	p++;
	if (*p < '0' || *p > '9')
		return fail(why, whylen, "port is not a number");
	errno = 0;
	port = strtoul(p, &end, 10);
	if (errno || port == 0 || port > 65535)
		return fail(why, whylen, "port out of range 1-65535");
	c->port = (unsigned)port;
	p = end;

	if (*p == '/')
		p++;
	if (*p != '?')
		return fail(why, whylen, "no ?pin=sha256//... (the exporter's "
			    "key pin is required)");
	p++;
	q = NULL;
	while (*p) {
		size_t len = strcspn(p, "&");

		if (strncmp(p, "pin=", 4) == 0) {
			if (q)
				return fail(why, whylen, "pin given twice");
			q = p + 4;
			n = len - 4;
		}
		p += len;
		if (*p == '&')
			p++;
	}
	if (!q)
		return fail(why, whylen, "no pin= parameter");
	if (n <= strlen(PIN_PREFIX) ||
	    strncmp(q, PIN_PREFIX, strlen(PIN_PREFIX)) != 0)
		return fail(why, whylen, "pin must be sha256//BASE64");
	if (!valid_pin(q + strlen(PIN_PREFIX), n - strlen(PIN_PREFIX)))
		return fail(why, whylen, "pin is not base64 of a SHA-256 "
			    "(44 characters)");
	memcpy(c->pin, q, n);
	return 0;
}

int
ferry_connstr_base_url(const struct ferry_connstr *c, char *out,
		       size_t outlen)
{
	int v6 = strchr(c->host, ':') != NULL;
	int r = snprintf(out, outlen, "https://%s%s%s:%u", v6 ? "[" : "",
			 c->host, v6 ? "]" : "", c->port);

	return r < 0 || (size_t)r >= outlen ? -ENOSPC : r;
}

int
ferry_connstr_format(const struct ferry_connstr *c, char *out, size_t outlen)
{
	int v6 = strchr(c->host, ':') != NULL;
	int r = snprintf(out, outlen, SCHEME "%s@%s%s%s:%u/?pin=%s", c->token,
			 v6 ? "[" : "", c->host, v6 ? "]" : "", c->port,
			 c->pin);

	return r < 0 || (size_t)r >= outlen ? -ENOSPC : r;
}
