/* ferry — connection strings.
 *
 *   ferry://TOKEN@HOST:PORT/?pin=sha256//BASE64
 *
 * TOKEN is the exporter's bearer token (URL-safe characters), HOST a name,
 * an IPv4 address or a bracketed IPv6 address, PIN curl's public-key pin:
 * base64 of the SHA-256 of the server's DER SubjectPublicKeyInfo.
 */
#ifndef FERRY_CONNSTR_H
#define FERRY_CONNSTR_H

#include <stddef.h>

struct ferry_connstr {
	char token[256];
	char host[256];		/* without brackets */
	unsigned port;
	char pin[128];		/* "sha256//BASE64" */
};

/*! ferry_connstr_parse() :
 * @return 0, or -EINVAL with a one-line reason in @why. */
int ferry_connstr_parse(const char *s, struct ferry_connstr *c, char *why,
			size_t whylen);

/*! ferry_connstr_format() : the string for @c into @out.
 * @return its length, or -ENOSPC if it did not fit. */
int ferry_connstr_format(const struct ferry_connstr *c, char *out,
			 size_t outlen);

/*! ferry_connstr_base_url() : "https://HOST:PORT" (brackets for IPv6). */
int ferry_connstr_base_url(const struct ferry_connstr *c, char *out,
			   size_t outlen);

#endif
