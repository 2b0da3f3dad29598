/* ferry — the pure parts of talking to S3-compatible storage (s3parse.c):
 * s3:// URLs, the AWS CLI's INI files, and the bits of S3's XML replies
 * ferry reads. No I/O; every function takes untrusted text. */
#ifndef FERRY_S3PARSE_H
#define FERRY_S3PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define S3_BUCKET_MAX 63
#define S3_KEY_MAX 1024

struct s3_target {
	char bucket[S3_BUCKET_MAX + 1];
	char key[S3_KEY_MAX + 1];
};

/*! s3_url_parse() : "s3://BUCKET/KEY". BUCKET: 3-63 of [a-z0-9.-],
 * starting and ending with a letter or digit; KEY: 1-1024 bytes, no
 * control characters. @return 0, or -EINVAL with the reason in @why. */
int s3_url_parse(const char *url, struct s3_target *t, char *why,
		 size_t whylen);

/*! s3_ini_get() : the value of @key in section [@section] of INI @text
 * (@len bytes; ~/.aws/credentials, ~/.aws/config): "key = value" lines,
 * '#' and ';' comments, whitespace trimmed. @return 0, -ENOENT, or
 * -ENAMETOOLONG if it does not fit @out. */
int s3_ini_get(const char *text, size_t len, const char *section,
	       const char *key, char *out, size_t outlen);

/*! s3_xml_get() : the text of the first element <@tag> in @xml (@len
 * bytes), XML entities (&amp; &lt; &gt; &quot; &apos; &#N; &#xN;) decoded.
 * Enough for S3's replies, which are flat and regular. @return its length,
 * -ENOENT, -EPROTO (malformed), or -ENAMETOOLONG. */
int s3_xml_get(const char *xml, size_t len, const char *tag, char *out,
	       size_t outlen);

/*! s3_uri_encode() : @in percent-encoded as SigV4 wants (unreserved
 * A-Za-z0-9-._~ kept; '/' kept when @keep_slash). @return its length, or
 * -ENAMETOOLONG. */
int s3_uri_encode(const char *in, bool keep_slash, char *out, size_t outlen);

/* A header to sign: @name in lower case. */
struct s3_header {
	const char *name, *value;
};

/*! s3_sign() : AWS Signature Version 4 for S3: the Authorization header's
 * value for a request @method @path (URI-encoded) ?@query (canonical:
 * sorted, encoded; "" for none), with @headers (host, x-amz-date,
 * x-amz-content-sha256 and any other to sign; any order) and the payload's
 * SHA-256 @payload_hex, at @amz_date (YYYYMMDDTHHMMSSZ) in @region.
 * @return its length, or -ENAMETOOLONG / -EINVAL. */
int s3_sign(const char *access, const char *secret, const char *region,
	    const char *amz_date, const char *method, const char *path,
	    const char *query, const struct s3_header *headers, size_t n,
	    const char *payload_hex, char *out, size_t outlen);

#endif
