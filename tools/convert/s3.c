/* ferry-convert — requests to S3-compatible storage (see s3.h). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/log.h"
#include "common/util.h"
#include "tools/convert/s3.h"

#define REPLY_MAX (1u << 20)	/* bytes of a reply body kept */
#define TRIES 6
#define BACKOFF_FIRST 0.5
#define BACKOFF_MAX 8.0

static int
slurp_small(const char *path, char *buf, size_t cap, size_t *len)
{
	FILE *f = fopen(path, "r");

	if (!f)
		return -errno;
	*len = fread(buf, 1, cap - 1, f);
	buf[*len] = '\0';
	fclose(f);
	return 0;
}

/* ~/.aws/FILE, or $ENVVAR if set. */
static void
aws_file(const char *envvar, const char *file, char *out, size_t len)
{
	const char *e = getenv(envvar), *home = getenv("HOME");

	if (e && e[0])
		snprintf(out, len, "%s", e);
	else
		snprintf(out, len, "%s/.aws/%s", home ? home : "", file);
}

int
s3_open(struct s3 *s, const char *url, const char *endpoint,
	const char *region, const char *ca)
{
	const char *profile = getenv("AWS_PROFILE");
	char why[300], path[PATH_MAX], section[200], key[S3_KEY_MAX * 3 + 1];
	static char text[65536];
	size_t len = 0;
	const char *e;

	memset(s, 0, sizeof *s);
	if (s3_url_parse(url, &s->t, why, sizeof why) < 0) {
		ferry_error("%s", why);
		return -EINVAL;
	}
	snprintf(s->name, sizeof s->name, "s3://%s/%s", s->t.bucket, s->t.key);
	if (!profile || !profile[0])
		profile = "default";
	/* Region: option, environment, ~/.aws/config, us-east-1. */
	if (!region && (e = getenv("AWS_REGION")) && e[0])
		region = e;
	if (!region && (e = getenv("AWS_DEFAULT_REGION")) && e[0])
		region = e;
	if (region) {
		snprintf(s->region, sizeof s->region, "%s", region);
	} else {
		aws_file("AWS_CONFIG_FILE", "config", path, sizeof path);
		snprintf(section, sizeof section, strcmp(profile, "default") ?
			 "profile %s" : "%s", profile);
		if (slurp_small(path, text, sizeof text, &len) < 0 ||
		    s3_ini_get(text, len, section, "region", s->region,
			       sizeof s->region) < 0)
			snprintf(s->region, sizeof s->region, "us-east-1");
	}
	for (const char *c = s->region; *c; c++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789-", *c)) {
			ferry_error("region %s: not a region name", s->region);
			return -EINVAL;
		}
	if (!endpoint && (e = getenv("AWS_ENDPOINT_URL")) && e[0])
		endpoint = e;
	if (endpoint)
		snprintf(s->endpoint, sizeof s->endpoint, "%s", endpoint);
	else
		snprintf(s->endpoint, sizeof s->endpoint,
			 "https://s3.%s.amazonaws.com", s->region);
	len = strlen(s->endpoint);
	while (len > 0 && s->endpoint[len - 1] == '/')
		s->endpoint[--len] = '\0';
	if (strncmp(s->endpoint, "https://", 8) != 0 &&
	    strncmp(s->endpoint, "http://", 7) != 0) {
		ferry_error("S3 endpoint %s: expected http:// or https://",
			    s->endpoint);
		return -EINVAL;
	}
	/* Credentials: the environment, else ~/.aws/credentials. */
	if ((e = getenv("AWS_ACCESS_KEY_ID")) && e[0]) {
		snprintf(s->access, sizeof s->access, "%s", e);
		e = getenv("AWS_SECRET_ACCESS_KEY");
		snprintf(s->secret, sizeof s->secret, "%s", e ? e : "");
		e = getenv("AWS_SESSION_TOKEN");
		snprintf(s->token, sizeof s->token, "%s", e ? e : "");
	} else {
		aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials", path,
			 sizeof path);
		if (slurp_small(path, text, sizeof text, &len) == 0) {
			s3_ini_get(text, len, profile, "aws_access_key_id",
				   s->access, sizeof s->access);
			s3_ini_get(text, len, profile, "aws_secret_access_key",
				   s->secret, sizeof s->secret);
			s3_ini_get(text, len, profile, "aws_session_token",
				   s->token, sizeof s->token);
		}
	}
	if (!s->access[0] || !s->secret[0]) {
		ferry_error("%s: no S3 credentials: set AWS_ACCESS_KEY_ID and "
			    "AWS_SECRET_ACCESS_KEY, or profile %s in %s",
			    s->name, profile, path);
		return -EINVAL;
	}
	if (ca)
		snprintf(s->ca, sizeof s->ca, "%s", ca);
	e = strstr(s->endpoint, "://") + 3;
	snprintf(s->host, sizeof s->host, "%.*s", (int)strcspn(e, "/"), e);
	if (e[strcspn(e, "/")]) {
		ferry_error("S3 endpoint %s: no path, only scheme://HOST[:PORT]",
			    s->endpoint);
		return -EINVAL;
	}
	if (s3_uri_encode(s->t.key, true, key, sizeof key) < 0 ||
	    (size_t)snprintf(s->path, sizeof s->path, "/%s/%s", s->t.bucket,
			     key) >= sizeof s->path ||
	    (size_t)snprintf(s->url, sizeof s->url, "%s%s", s->endpoint,
			     s->path) >= sizeof s->url) {
		ferry_error("%s: the URL is too long", s->name);
		return -EINVAL;
	}
	return 0;
}

void
s3_reply_free(struct s3_reply *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct s3_reply *r = arg;
	size_t k = size * n, keep = FERRY_MIN(k, REPLY_MAX - r->len);
	char *nb;

	if (keep == 0)
		return k;
	nb = realloc(r->body, r->len + keep + 1);
	if (!nb)
		return 0;
	memcpy(nb + r->len, p, keep);
	r->body = nb;
	r->len += keep;
	r->body[r->len] = '\0';
	return k;
}

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	struct s3_reply *r = arg;
	size_t k = size * n;

	if (k > 5 && strncasecmp(p, "ETag:", 5) == 0) {
		const char *a = p + 5, *b = p + k;

		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == '\r' || b[-1] == '\n' ||
				 b[-1] == ' '))
			b--;
		snprintf(r->etag, sizeof r->etag, "%.*s", (int)(b - a), a);
	}
	return k;
}

/* The headers of a request, signed: host, the date, the payload's hash,
 * the session token, and @extra's lines ("Name: value", '\n' between). */
static struct curl_slist *
signed_headers(const struct s3 *s, const char *method, const char *query,
	       const char *extra, const char sha_hex[65])
{
	struct s3_header h[12];
	char names[8][64], values[8][2100], date[20], line[4300];
	char auth[1024];
	struct curl_slist *hs = NULL;
	size_t n = 0, ne = 0;
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
	h[n++] = (struct s3_header){ "host", s->host };
	h[n++] = (struct s3_header){ "x-amz-content-sha256", sha_hex };
	h[n++] = (struct s3_header){ "x-amz-date", date };
	if (s->token[0])
		h[n++] = (struct s3_header){ "x-amz-security-token", s->token };
	for (const char *a = extra; a && *a && ne < 8;) {
		size_t len = strcspn(a, "\n"), c = strcspn(a, ":");
		const char *v = a + c + 1;

		if (c < len && c < sizeof names[ne]) {
			for (size_t i = 0; i < c; i++)
				names[ne][i] = (char)tolower((unsigned char)a[i]);
			names[ne][c] = '\0';
			while (*v == ' ')
				v++;
			snprintf(values[ne], sizeof values[ne], "%.*s",
				 (int)(a + len - v), v);
			h[n++] = (struct s3_header){ names[ne], values[ne] };
			ne++;
		}
		a += len + (a[len] == '\n');
	}
	if (s3_sign(s->access, s->secret, s->region, date, method, s->path,
		    query ? query : "", h, n, sha_hex, auth, sizeof auth) < 0)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		snprintf(line, sizeof line, "%s: %s", h[i].name, h[i].value);
		hs = curl_slist_append(hs, line);
	}
	snprintf(line, sizeof line, "Authorization: %s", auth);
	hs = curl_slist_append(hs, line);
	return hs;
}

/* A failure no retry cures: the server's certificate is not trusted. */
static bool
untrusted(CURLcode cc)
{
	return cc == CURLE_PEER_FAILED_VERIFICATION ||
	       cc == CURLE_SSL_CACERT_BADFILE || cc == CURLE_SSL_CERTPROBLEM;
}

/* One attempt. */
static void
attempt(struct s3 *s, CURL *h, const char *method, const char *query,
	const char *extra, const void *body, size_t len,
	const char sha_hex[65], struct s3_reply *r)
{
	char url[4096];
	struct curl_slist *hs;
	CURLcode cc;

	s3_reply_free(r);
	r->status = 0;
	r->final = false;
	r->code[0] = r->message[0] = r->etag[0] = '\0';
	snprintf(url, sizeof url, "%s%s%s", s->url, query ? "?" : "",
		 query ? query : "");
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
	if (s->ca[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, s->ca);
	hs = signed_headers(s, method, query, extra, sha_hex);
	if (!hs) {
		snprintf(r->code, sizeof r->code, "cannot sign the request");
		return;
	}
	hs = curl_slist_append(hs, "Expect:");	/* no 100-continue wait */
	hs = curl_slist_append(hs, body && strcmp(method, "POST") == 0 ?
			       "Content-Type: application/xml" :
			       "Content-Type: application/octet-stream");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(body ? len : 0));
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	} else {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	}
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	cc = curl_easy_perform(h);
	curl_slist_free_all(hs);
	if (cc != CURLE_OK) {
		snprintf(r->code, sizeof r->code, "%s", curl_easy_strerror(cc));
		r->final = untrusted(cc);
		return;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->body && (r->status >= 300 || strstr(r->body, "<Error>"))) {
		s3_xml_get(r->body, r->len, "Code", r->code, sizeof r->code);
		s3_xml_get(r->body, r->len, "Message", r->message,
			   sizeof r->message);
		if (r->status < 300)
			r->status = 500;	/* a 200 that is an error */
	}
}

int
s3_call(struct s3 *s, CURL *h, const char *method, const char *query,
	const char *extra, const void *body, size_t len, struct s3_reply *r)
{
	unsigned char md[32];
	char sha[65];

	EVP_Digest(body ? body : "", body ? len : 0, md, NULL, EVP_sha256(),
		   NULL);
	ferry_hex(md, 32, sha);
	return s3_call_sha(s, h, method, query, extra, body, len, sha, r);
}

int
s3_call_sha(struct s3 *s, CURL *h, const char *method, const char *query,
	    const char *extra, const void *body, size_t len,
	    const char sha[65], struct s3_reply *r)
{
	double wait = BACKOFF_FIRST;

	memset(r, 0, sizeof *r);
	for (int i = 0; i < TRIES; i++) {
		bool retry;

		attempt(s, h, method, query, extra, body, len, sha, r);
		if (r->status >= 200 && r->status < 300)
			return 0;
		retry = (r->status == 0 && !r->final) || r->status >= 500 ||
			strcmp(r->code, "SlowDown") == 0 ||
			r->status == 429;
		if (!retry || i + 1 == TRIES)
			break;
		ferry_debug("%s: %s %s: %ld %s; again in %.1f s", s->name,
			    method, query ? query : "", r->status, r->code,
			    wait);
		usleep((useconds_t)(wait * 1e6));
		wait = FERRY_MIN(wait * 2, BACKOFF_MAX);
	}
	return r->status == 0 ? -ECONNREFUSED : r->status == 403 ? -EACCES :
	       r->status == 404 ? -ENOENT : -EIO;
}

void
s3_say(const struct s3 *s, const char *what, const struct s3_reply *r)
{
	if (r->status == 0)
		ferry_error("%s: %s: no answer from %s: %s", s->name, what,
			    s->endpoint, r->code);
	else
		ferry_error("%s: %s: HTTP %ld %s%s%s", s->name, what,
			    r->status, r->code[0] ? r->code : "(no S3 code)",
			    r->message[0] ? ": " : "", r->message);
}

/* A ranged GET's body, into the caller's buffer. */
struct sink {
	uint8_t *buf;
	size_t len, got;
	bool over;
	struct s3_reply *r;	/* an error's body goes there */
};

static size_t
on_range(char *p, size_t size, size_t n, void *arg)
{
	struct sink *k = arg;
	size_t m = size * n;

	if (k->got + m > k->len) {
		k->over = true;
		return on_body(p, size, n, k->r);	/* an error document */
	}
	memcpy(k->buf + k->got, p, m);
	k->got += m;
	return m;
}

int
s3_get(struct s3 *s, CURL *h, uint64_t off, void *buf, size_t len)
{
	static const char empty_sha[] = "e3b0c44298fc1c149afbf4c8996fb924"
					"27ae41e4649b934ca495991b7852b855";
	struct s3_reply r = { 0 };
	double wait = BACKOFF_FIRST;
	char range[80], what[120];
	int e = -EIO;

	snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, off,
		 off + len - 1);
	for (int i = 0; i < TRIES; i++) {
		struct curl_slist *hs = NULL;
		struct sink k = { .buf = buf, .len = len, .r = &r };
		CURLcode cc;

		s3_reply_free(&r);
		r.status = 0;
		r.code[0] = r.message[0] = '\0';
		curl_easy_reset(h);
		curl_easy_setopt(h, CURLOPT_URL, s->url);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
		if (s->ca[0])
			curl_easy_setopt(h, CURLOPT_CAINFO, s->ca);
		hs = signed_headers(s, "GET", NULL, NULL, empty_sha);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
		curl_easy_setopt(h, CURLOPT_RANGE, range);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_range);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &k);
		cc = curl_easy_perform(h);
		curl_slist_free_all(hs);
		if (cc != CURLE_OK) {
			snprintf(r.code, sizeof r.code, "%s",
				 curl_easy_strerror(cc));
			if (untrusted(cc))
				break;
		} else {
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
			if (r.status == 206 && k.got == len && !k.over) {
				e = 0;
				break;
			}
			if (r.body)
				s3_xml_get(r.body, r.len, "Code", r.code,
					   sizeof r.code);
			if (r.status == 206 || r.status == 200) {
				snprintf(r.code, sizeof r.code, "%zu bytes "
					 "for a range of %zu", k.got, len);
				r.status = 502;	/* not S3's fault to retry */
				break;
			}
			if (r.status < 500 && r.status != 429 &&
			    strcmp(r.code, "SlowDown") != 0)
				break;
		}
		if (i + 1 < TRIES) {
			usleep((useconds_t)(wait * 1e6));
			wait = FERRY_MIN(wait * 2, BACKOFF_MAX);
		}
	}
	if (e < 0) {
		snprintf(what, sizeof what, "reading back bytes %s", range);
		s3_say(s, what, &r);
	}
	s3_reply_free(&r);
	return e;
}
