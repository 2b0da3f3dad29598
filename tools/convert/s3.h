/* ferry-convert — an S3 client of its own, for multipart uploads (s3.c).
 *
 * Requests are signed here (AWS Signature Version 4, common/s3parse.c),
 * not by libcurl: curl 7.88's CURLOPT_AWS_SIGV4 sorts "name:value" lines
 * rather than names, so x-amz-copy-source-range goes before
 * x-amz-copy-source and UploadPartCopy fails, and it signs an empty
 * "Expect:" it then does not send. The payload's SHA-256 is always sent
 * (x-amz-content-sha256): the server checks every part. Path-style
 * addressing: ENDPOINT/BUCKET/KEY. Configured as the AWS CLI is: endpoint
 * from --s3-endpoint or AWS_ENDPOINT_URL, region from --s3-region,
 * AWS_REGION or AWS_DEFAULT_REGION (default us-east-1), credentials from
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN or
 * ~/.aws/credentials (section AWS_PROFILE, default "default"); TLS verified
 * (--s3-ca FILE for a private CA).
 */
#ifndef FERRY_CONVERT_S3_H
#define FERRY_CONVERT_S3_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "common/s3parse.h"

struct s3 {
	char endpoint[512];	/* scheme://host[:port], no trailing '/' */
	char region[64];
	char access[256], secret[256];
	char token[4096];	/* session token, or "" */
	char ca[PATH_MAX];	/* --s3-ca, or "" */
	struct s3_target t;
	char url[2048];		/* ENDPOINT/BUCKET/KEY, the key encoded */
	char host[512];		/* the endpoint's host[:port] */
	char path[1600];	/* /BUCKET/KEY, encoded */
	char name[1100];	/* s3://BUCKET/KEY, for messages */
};

/* What a request got: the HTTP status and, for an error, S3's code. */
struct s3_reply {
	long status;		/* 0: no answer (connection failed) */
	char code[64];		/* S3's <Code>, or a curl error's text */
	char message[256];
	char etag[128];		/* ETag header, quotes kept */
	bool final;		/* no answer, and none will come by retrying
				 * (the server's certificate is not trusted) */
	char *body;		/* malloc'd, NUL-terminated */
	size_t len;
};

/*! s3_open() : configure @s for @url (s3://BUCKET/KEY) with the options
 * given (NULL: from the environment). @return 0 or -EINVAL after logging. */
int s3_open(struct s3 *s, const char *url, const char *endpoint,
	    const char *region, const char *ca);

/*! s3_call() : one request, retried on 5xx, SlowDown and connection
 * failures (backoff 0.5 s doubling to 8 s, 6 tries; never on other 4xx).
 * @query: sorted, without '?', or NULL. @body/@len: the payload or NULL.
 * @return 0 when the status is 2xx (and the body no <Error>), else
 * -errno: -EACCES (403), -ENOENT (404), -EIO (other), -ECONNREFUSED (no
 * answer); the reply, filled in either case, is the caller's to free. */
int s3_call(struct s3 *s, CURL *h, const char *method, const char *query,
	    const char *extra_header, const void *body, size_t len,
	    struct s3_reply *r);

/*! s3_call_sha() : s3_call() with the body's SHA-256 already known. */
int s3_call_sha(struct s3 *s, CURL *h, const char *method,
		const char *query, const char *extra_header, const void *body,
		size_t len, const char sha_hex[65], struct s3_reply *r);

/*! s3_get() : bytes [@off, @off+@len) of the object into @buf, by a
 * ranged GET, retried as s3_call's. @return 0, or -errno after logging
 * (-EIO also for a short or misplaced range). */
int s3_get(struct s3 *s, CURL *h, uint64_t off, void *buf, size_t len);

/*! s3_say() : one log line for a failed call: what, the object, the status
 * and S3's code and message. */
void s3_say(const struct s3 *s, const char *what, const struct s3_reply *r);

void s3_reply_free(struct s3_reply *r);

#endif
