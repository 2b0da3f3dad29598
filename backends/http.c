/* ferry — http backend: a ferry-export (ferry://) or any HTTPS server that
 * supports Range requests (https://).
 *
 * Each request borrows an easy handle from a small pool; a handle keeps its
 * keep-alive connection, so N concurrent readers use N persistent TLS
 * connections and decrypt on N threads (a single multi handle would put all
 * decryption on one core, which on a 2-core transit host halves the rate).
 * Received bytes go straight to the caller's sink at their disk offset.
 * Background transfers (sink.background) have a pool of their own, whose
 * connections get a receive buffer sized to the link (common/rwnd.h).
 *
 * Compression: with opts->compress, range requests to a ferry-export carry
 * "Accept-Encoding: zstd"; a body that comes back with "Content-Encoding:
 * zstd" is a zstd stream of the asked range (frames per piece, raw frames
 * for data that does not shrink), decoded here as it arrives. The sink's
 * wire hook sees the bytes as they travelled, its data hook the disk bytes.
 *
 * Authentication to a ferry-export: bearer token, and the server's public
 * key must match the pin from the connection string (the certificate is
 * self-signed, so the pin, not a CA, is what is trusted).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <linux/tcp.h>		/* tcp_info's tcpi_min_rtt */
#include <sys/socket.h>

#include <curl/curl.h>
#include <jansson.h>
#include <zstd.h>

#include "backends/backend.h"
#include "backends/listing.h"
#include "common/connstr.h"
#include "common/rwnd.h"
#include "common/log.h"
#include "common/util.h"

#define POOL_MAX 64
#define MAX_JSON (64u << 20)	/* largest listing or map we accept */
#define BACKOFF_FIRST 0.2	/* seconds before the first retry */
#define BACKOFF_MAX 5.0		/* the longest wait between two tries */

struct http_priv {
	bool ferry;		/* talking to ferry-export */
	char base[600];		/* https://host:port */
	char what[600];		/* for messages: host:port or URL */
	char pin[128];
	char unix_path[108];	/* a reverse source: curl's Unix socket to the
				 * transit's relay (fs/listen.c), or "" */
	void (*pin_now)(void *arg, char pin[128]);	/* its pin now */
	void *pin_arg;
	char *client_cert, *client_key;	/* what curl shows it */
	char *cacert;
	char **disk_url;	/* per disk */
	struct curl_slist *headers;
	/* Per disk, for range requests: + If-Match with the disk's
	 * generation (ferry-export), so that data of a changed source is
	 * refused (412), never mixed in; [ndisks + disk]: the same +
	 * Accept-Encoding: zstd (compress). */
	struct curl_slist **range_headers;
	struct curl_slist *retired;	/* replaced lists, freed at close */
	bool compress;
	/* A plain URL: the strong ETag of the version mounted, or "". */
	char etag[100];
	bool verbose;
	double timeout;		/* opts.timeout */
	long stall;		/* opts.stall_timeout */

	pthread_mutex_t lock;
	CURL *idle[2][POOL_MAX];	/* [1]: background transfers' */
	size_t nidle[2];
	/* Background windows: the smallest RTT any connection saw, in us
	 * (0: none yet); whether SO_RCVBUFFORCE works (1), does not (-1)
	 * or is not known (0); windows are given up on (rwnd.h). */
	_Atomic uint32_t min_rtt_us;
	_Atomic int force;
	_Atomic bool rwnd_off;
};

/* What a handle carries besides curl's state (CURLOPT_PRIVATE). */
struct hconn {
	struct ferry_rwnd w;	/* its connection's background window */
	curl_socket_t fd;	/* its connection's socket, as made */
	bool drop;		/* do not reuse the connection */
};

/* One transfer's state, shared by the header and write callbacks. */
struct xfer {
	struct ferry_source *src;
	long status;
	/* Range mode: bytes expected at @off, delivered to the sink. */
	bool ranged;
	uint64_t off, want, got;
	bool range_ok;
	const struct ferry_sink *sink;
	int sink_err;
	/* Content-Encoding: zstd (decoded into @zbuf), or another coding we
	 * cannot decode (@coding_bad). */
	bool zstd, coding_bad, zstd_bad;
	ZSTD_DCtx *dctx;
	uint8_t *zbuf;
	/* Collect mode: the body in memory (JSON). */
	char *body;
	size_t blen, bcap;
	/* From Content-Range: "bytes A-B/TOTAL" or "bytes * /TOTAL". */
	int64_t cr_start, cr_end, cr_total;
	uint64_t disk_size;	/* range mode: the disk's, 0 if not known */
	char etag[100];		/* ETag:, as sent (quotes, W/) */
	char lastmod[64];	/* Last-Modified: */
	double retry_after;	/* seconds a 429 or 503 asked to wait, or 0 */
	bool stale;		/* a plain URL's reply of another ETag */
	/* Range mode: the request's headers (NULL: the source's). */
	const struct curl_slist *headers;
	struct hconn *conn;
	bool bg;		/* the sink's background */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* "Ferry-Digests:" of a reply to a request that asked for them: handed to
 * the sink if they are exactly the blocks of the range; anything else is
 * dropped (the sink then asks for digests itself). */
static void
inband_digests(struct xfer *x, const char *v, size_t len)
{
	struct ferry_digest dg[FERRY_DIGESTS_INBAND_MAX];
	uint64_t b = x->ranged && x->sink ? x->sink->digest_block : 0;
	uint64_t first, count;
	char why[120];

	if (b == 0 || !x->sink->digests || x->status != 206 || x->want == 0)
		return;
	while (len && *v == ' ')
		v++, len--;
	first = x->off / b;
	count = (x->off + x->want + b - 1) / b - first;
	if (count > FERRY_DIGESTS_INBAND_MAX ||
	    ferry_digests_from_header(v, len, b, first, (size_t)count, dg, why,
				      sizeof why) < 0)
		return;
	x->sink->digests(x->sink->arg, first, dg, (size_t)count);
}

/* Retry-After: delay-seconds or an HTTP-date, as seconds from now (0:
 * none or unreadable); at most an hour, whatever a server says. */
static double
retry_after_of(const char *v, int n)
{
	char s[64];
	double sec;

	snprintf(s, sizeof s, "%.*s", n, v);
	if (s[0] >= '0' && s[0] <= '9') {
		sec = strtod(s, NULL);
	} else {
		time_t at = curl_getdate(s, NULL);

		sec = at > 0 ? difftime(at, time(NULL)) : 0;
	}
	return sec > 0 ? FERRY_MIN(sec, 3600.0) : 0;
}

static size_t
header_cb(char *line, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;
	char buf[256];

	if (len > 14 && strncasecmp(line, "Ferry-Digests:", 14) == 0) {
		inband_digests(x, line + 14, len - 14);
		return len;
	}
	if (len >= sizeof buf)
		return len;
	memcpy(buf, line, len);
	buf[len] = '\0';
	if (strncmp(buf, "HTTP/", 5) == 0) {
		/* A new response (after a redirect or 100): start over. */
		const char *sp = strchr(buf, ' ');

		x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		x->cr_start = x->cr_end = x->cr_total = -1;
		x->etag[0] = x->lastmod[0] = '\0';
		x->retry_after = 0;
		x->zstd = x->coding_bad = false;
	} else if (strncasecmp(buf, "Content-Encoding:", 17) == 0) {
		const char *v = buf + 17;
		size_t vl;

		while (*v == ' ')
			v++;
		vl = strcspn(v, " \r\n");
		if (vl == 4 && strncasecmp(v, "zstd", 4) == 0)
			x->zstd = true;
		else if (!(vl == 8 && strncasecmp(v, "identity", 8) == 0))
			x->coding_bad = true;
	} else if (strncasecmp(buf, "Content-Range:", 14) == 0) {
		const char *v = buf + 14;
		long long a, b, t;

		while (*v == ' ')
			v++;
		if (sscanf(v, "bytes %lld-%lld/%lld", &a, &b, &t) == 3 &&
		    a >= 0 && b >= a && t > b) {
			x->cr_start = a;
			x->cr_end = b;
			x->cr_total = t;
		} else if (sscanf(v, "bytes */%lld", &t) == 1 && t >= 0) {
			x->cr_total = t;
		}
	} else if (strncasecmp(buf, "ETag:", 5) == 0 ||
		   strncasecmp(buf, "Last-Modified:", 14) == 0 ||
		   strncasecmp(buf, "Retry-After:", 12) == 0) {
		const char *v = strchr(buf, ':') + 1;
		int vl;

		while (*v == ' ')
			v++;
		vl = (int)strcspn(v, "\r\n");
		if (buf[0] == 'E' || buf[0] == 'e')
			snprintf(x->etag, sizeof x->etag, "%.*s", vl, v);
		else if (buf[0] == 'L' || buf[0] == 'l')
			snprintf(x->lastmod, sizeof x->lastmod, "%.*s", vl, v);
		else
			x->retry_after = retry_after_of(v, vl);
	}
	return len;
}

/* Decode a piece of a zstd body and hand the disk bytes to the sink. */
static int
zstd_write(struct xfer *x, const char *data, size_t len)
{
	ZSTD_inBuffer in = { data, len, 0 };

	if (!x->dctx) {
		x->dctx = ZSTD_createDCtx();
		x->zbuf = malloc(ZSTD_DStreamOutSize());
		if (!x->dctx || !x->zbuf) {
			x->sink_err = -ENOMEM;
			return -1;
		}
	}
	while (in.pos < in.size) {
		ZSTD_outBuffer out = { x->zbuf, ZSTD_DStreamOutSize(), 0 };
		size_t rc = ZSTD_decompressStream(x->dctx, &out, &in);

		if (ZSTD_isError(rc)) {
			x->zstd_bad = true;
			return -1;
		}
		if (out.pos > x->want - x->got) {
			x->range_ok = false;
			return -1;
		}
		if (out.pos == 0)
			continue;
		x->sink_err = x->sink->data(x->sink->arg, x->off + x->got,
					    x->zbuf, out.pos);
		if (x->sink_err < 0)
			return -1;
		x->got += out.pos;
	}
	return 0;
}

/* The most a socket's receive buffer may be set to (the value given to
 * setsockopt, which the kernel doubles): with SO_RCVBUFFORCE, what the
 * kernel's autotuning could reach (net.ipv4.tcp_rmem); without it,
 * net.core.rmem_max. 0 if not known. */
static uint64_t rmem_auto, rmem_max;
static pthread_once_t rmem_once = PTHREAD_ONCE_INIT;

static void
rmem_read(void)
{
	unsigned long long a, b, c;
	FILE *f;

	if ((f = fopen("/proc/sys/net/ipv4/tcp_rmem", "r"))) {
		if (fscanf(f, "%llu %llu %llu", &a, &b, &c) == 3)
			rmem_auto = c / 2;
		fclose(f);
	}
	if ((f = fopen("/proc/sys/net/core/rmem_max", "r"))) {
		if (fscanf(f, "%llu", &a) == 1)
			rmem_max = a;
		fclose(f);
	}
}

/* Set @fd's receive buffer to @v; @return what it took, 0 on failure. */
static uint64_t
set_rcvbuf(struct http_priv *p, int fd, uint64_t v)
{
	int val = v > (1u << 30) ? 1 << 30 : (int)v, got = 0;
	socklen_t len = sizeof got;

	if (p->force >= 0) {
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &val,
			       sizeof val) == 0)
			p->force = 1;
		else
			p->force = -1;
	}
	if (p->force < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &val, sizeof val) < 0)
		return 0;
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) < 0 || got <= 0)
		return 0;
	return (uint64_t)got / 2;
}

/* A background transfer's @len bytes arrived, after it was held @held
 * seconds: size its connection's receive buffer (common/rwnd.h). */
static void
bg_window(struct xfer *x, size_t len, double held)
{
	struct http_priv *p = x->src->priv;
	struct hconn *c = x->conn;
	struct tcp_info ti;
	socklen_t tlen = sizeof ti;
	curl_socket_t fd = c->fd;
	uint32_t rtt, all;
	uint64_t size = 0, took;
	double now = ferry_now();

	ferry_rwnd_note(&c->w, len, held);
	if (p->rwnd_off) {
		c->w.off = true;
		return;
	}
	all = p->min_rtt_us;
	if (!ferry_rwnd_due(&c->w, now, all / 1e6))
		return;
	/* The smallest RTT: the connection's, or any other's to the source
	 * (one made while the link was busy saw its queue). No TCP (the Unix
	 * socket to a reverse source's relay): left to the kernel. The socket
	 * is the one curl made for the handle (CURLINFO_ACTIVESOCKET knows a
	 * connection only after its first transfer). */
	memset(&ti, 0, sizeof ti);
	if (fd == CURL_SOCKET_BAD ||
	    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tlen) < 0 ||
	    tlen < offsetof(struct tcp_info, tcpi_min_rtt) +
		   sizeof ti.tcpi_min_rtt || ti.tcpi_min_rtt == 0) {
		c->w.off = true;
		return;
	}
	rtt = ti.tcpi_min_rtt;
	if (all == 0 || rtt < all)
		p->min_rtt_us = rtt;
	else
		rtt = all;
	pthread_once(&rmem_once, rmem_read);
	switch (ferry_rwnd_next(&c->w, now, rtt / 1e6,
				p->force < 0 ? rmem_max : rmem_auto, &size)) {
	case FERRY_RWND_KEEP:
		break;
	case FERRY_RWND_SET:
		took = set_rcvbuf(p, fd, size);
		if (took == 0) {
			c->w.off = true;
			c->drop = true;	/* its buffer is in an unknown state */
		} else {
			ferry_rwnd_took(&c->w, took);
		}
		break;
	case FERRY_RWND_GIVE_UP:
		/* The link needs more than can be set here: this connection
		 * ends with its transfer, and the next ones keep the
		 * kernel's autotuning. */
		ferry_info("%s: background windows left to the kernel: the "
			   "link needs more than %" PRIu64 " bytes, the most "
			   "this process can set (%s)", p->what, c->w.set,
			   p->force > 0 ? "net.ipv4.tcp_rmem" :
					  "net.core.rmem_max");
		p->rwnd_off = true;
		c->drop = true;
		break;
	}
}

static size_t
write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	const char *mounted_etag = ((const struct http_priv *)x->src->priv)->etag;
	size_t len = size * n;

	if (x->src->cancel && *x->src->cancel) {
		x->sink_err = -ECANCELED;
		return 0;
	}
	if (!x->ranged) {
		if (x->blen + len > MAX_JSON)
			return 0;
		if (x->blen + len + 1 > x->bcap) {
			size_t cap = FERRY_MAX(x->bcap * 2, x->blen + len + 1);
			char *b = realloc(x->body, cap);

			if (!b)
				return 0;
			x->body = b;
			x->bcap = cap;
		}
		memcpy(x->body + x->blen, data, len);
		x->blen += len;
		x->body[x->blen] = '\0';
		return len;
	}
	/* Range mode: only a 206 whose Content-Range starts where we asked
	 * may be written; anything else (a 200 with the whole file, an error
	 * page) is never taken for disk data. */
	if (x->status != 206 || x->cr_start != (int64_t)x->off ||
	    x->cr_end != (int64_t)(x->off + x->want - 1) ||
	    (x->disk_size && x->cr_total != (int64_t)x->disk_size) ||
	    x->coding_bad) {
		x->range_ok = false;
		return 0;
	}
	/* A plain URL's object replaced by another version, by a server
	 * that ignored If-Match: not one byte of it reaches the sink. */
	if (x->got == 0 && x->etag[0] && mounted_etag[0] &&
	    strcmp(x->etag, mounted_etag) != 0) {
		x->stale = true;
		return 0;
	}
	if (x->sink->wire) {
		double t0 = x->bg ? ferry_now() : 0;

		x->sink_err = x->sink->wire(x->sink->arg, len);
		if (x->sink_err < 0)
			return 0;
		if (x->bg)
			bg_window(x, len, ferry_now() - t0);
	}
	if (x->zstd)
		return zstd_write(x, data, len) == 0 ? len : 0;
	if (len > x->want - x->got) {
		x->range_ok = false;
		return 0;
	}
	x->sink_err = x->sink->data(x->sink->arg, x->off + x->got, data, len);
	if (x->sink_err < 0)
		return 0;
	x->got += len;
	return len;
}

static int
progress_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
	    curl_off_t un)
{
	struct xfer *x = arg;

	(void)dt; (void)dn; (void)ut; (void)un;
	return x->src->cancel && *x->src->cancel;
}

/* A new socket for the handle: the kernel's window, until measured (the
 * sample under way goes on). */
static int
sockopt_cb(void *arg, curl_socket_t fd, curlsocktype purpose)
{
	struct hconn *c = arg;

	(void)purpose;
	c->w.set = 0;
	c->w.off = false;
	c->fd = fd;
	return CURL_SOCKOPT_OK;
}

static int
closesocket_cb(void *arg, curl_socket_t fd)
{
	struct hconn *c = arg;

	if (c->fd == fd)
		c->fd = CURL_SOCKET_BAD;
	return close(fd);
}

static void
handle_free(CURL *h)
{
	struct hconn *c = NULL;

	if (!h)
		return;
	curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&c);
	curl_easy_cleanup(h);
	free(c);
}

static CURL *
handle_get(struct http_priv *p, bool bg)
{
	struct hconn *c;
	CURL *h = NULL;

	pthread_mutex_lock(&p->lock);
	if (p->nidle[bg] > 0)
		h = p->idle[bg][--p->nidle[bg]];
	pthread_mutex_unlock(&p->lock);
	if (h)
		return h;

	c = calloc(1, sizeof *c);
	h = c ? curl_easy_init() : NULL;
	if (!h) {
		free(c);
		return NULL;
	}
	c->fd = CURL_SOCKET_BAD;
	curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)c);
	curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
	curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, c);
	curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
	curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, c);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
	/* A stalled connection: under 1 byte/s for the stall timeout gives
	 * up (and is retried on a fresh connection). */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, p->stall);
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	if (p->unix_path[0]) {
		/* HTTPS through the relay to the exporter that dialled in:
		 * its key pinned by the hello (request() sets it, as it is
		 * now), ours shown as the client certificate it pins. */
		curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, p->unix_path);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
		curl_easy_setopt(h, CURLOPT_SSLCERT, p->client_cert);
		curl_easy_setopt(h, CURLOPT_SSLKEY, p->client_key);
	} else if (p->ferry) {
		/* Self-signed: trust is the pin, not a CA or a name. */
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
		curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, p->pin);
	} else {
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
		if (p->cacert)
			curl_easy_setopt(h, CURLOPT_CAINFO, p->cacert);
	}
	if (p->verbose)
		curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
	return h;
}

static void
handle_put(struct http_priv *p, CURL *h, bool bg, bool reusable)
{
	pthread_mutex_lock(&p->lock);
	if (reusable && p->nidle[bg] < POOL_MAX) {
		p->idle[bg][p->nidle[bg]++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	handle_free(h);
}

/* The single place where curl and HTTP outcomes become errno, with one log
 * line naming the object. */
static int
http_error(struct http_priv *p, const char *url, CURLcode cc,
	   const struct xfer *x, const char *curlmsg)
{
	if (cc == CURLE_WRITE_ERROR && x->sink_err < 0)
		return x->sink_err;	/* the sink logged it */
	if (cc == CURLE_ABORTED_BY_CALLBACK || x->sink_err == -ECANCELED)
		return -ECANCELED;
	switch (cc) {
	case CURLE_OK:
		break;
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		ferry_error("%s: the server's public key does not match the "
			    "pin in the connection string", p->what);
		return -EPERM;
	case CURLE_COULDNT_RESOLVE_HOST:
		ferry_error("%s: cannot resolve host: %s", p->what, curlmsg);
		return -EHOSTUNREACH;
	case CURLE_COULDNT_CONNECT:
		ferry_error("%s: cannot connect: %s", p->what, curlmsg);
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		ferry_error("%s: timed out: %s", url, curlmsg);
		return -ETIMEDOUT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
		ferry_error("%s: TLS failed: %s", p->what, curlmsg);
		return -EPROTO;
	case CURLE_WRITE_ERROR:
		if (x->zstd_bad) {
			ferry_error("%s: corrupt zstd body (at %" PRIu64 ")",
				    url, x->off + x->got);
			return -EPROTO;
		}
		if (x->coding_bad) {
			ferry_error("%s: unknown Content-Encoding", url);
			return -EPROTO;
		}
		if (x->ranged && x->status == 200) {
			ferry_error("%s: server ignored the Range request "
				    "(HTTP 200)", url);
			return -EPROTO;
		}
		if (x->ranged && x->status == 206 && !x->range_ok &&
		    x->got == 0) {
			ferry_error("%s: server answered another range than "
				    "asked (%" PRIu64 "+%" PRIu64 ", disk of %"
				    PRIu64 ")", url, x->off, x->want,
				    x->disk_size);
			return -EPROTO;
		}
		if (x->ranged && x->status == 206) {
			ferry_error("%s: server sent more bytes than the range "
				    "(at %" PRIu64 ")", url, x->off + x->got);
			return -EPROTO;
		}
		break;
	default:
		ferry_error("%s: %s", url, curlmsg);
		return -EIO;
	}
	switch (x->status) {
	case 401:
	case 403:
		if (p->ferry)
			ferry_error("%s: the server rejected the token "
				    "(HTTP %ld)", p->what, x->status);
		else
			ferry_error("%s: access denied (HTTP %ld)", url,
				    x->status);
		return -EACCES;
	case 404:
		ferry_error("%s: not found (HTTP 404)", url);
		return -ENOENT;
	case 412:
		if (p->ferry)
			ferry_error("%s: the disk changed at the source (its "
				    "generation is no longer the one mounted); "
				    "remount to start over", url);
		else
			ferry_error("%s: the object changed on the server (it "
				    "is no longer the version mounted: HTTP "
				    "412); remount to start over", url);
		return -ESTALE;
	case 416:
		ferry_error("%s: range not satisfiable (HTTP 416)", url);
		return -ERANGE;
	case 408:
	case 429:
	case 503:
		/* The server asks to come back (Retry-After, if it says
		 * when): transient. */
		ferry_error("%s: HTTP %ld, the server is busy%s", url,
			    x->status, x->retry_after > 0 ? " (it says when "
			    "to retry)" : "");
		return -EBUSY;
	case 400:
		ferry_error("%s: the server refused the request as malformed "
			    "(HTTP 400)", url);
		return -EINVAL;
	case 405:
	case 501:
		ferry_error("%s: the server does not support this request "
			    "(HTTP %ld)", url, x->status);
		return -EOPNOTSUPP;
	default:
		/* Other 5xx: the server failed, another try may go
		 * through. Other 4xx: this request will not. */
		ferry_error("%s: HTTP %ld", url, x->status);
		return x->status >= 500 && x->status <= 599 ? -EIO :
		       -EREMOTEIO;
	}
}

/* Errors that another attempt on a fresh connection may cure: the link
 * or the server failed (reset, refused, stalled, truncated, TLS, 5xx), or
 * it is busy (408, 429, 503). Not a refused token, a changed key, a
 * missing disk, a changed source, nor a request the server will never
 * take (400, 405, 501, another 4xx). */
static bool
transient(int r)
{
	return r == -EIO || r == -ETIMEDOUT || r == -ECONNREFUSED ||
	       r == -EPROTO || r == -EHOSTUNREACH || r == -EBUSY;
}

/* One request. @x is prepared by the caller (range or collect mode). */
static int
request(struct ferry_source *src, const char *url, struct xfer *x)
{
	struct http_priv *p = src->priv;
	char errbuf[CURL_ERROR_SIZE] = "";
	char pin[128] = "";
	char range[64];
	CURLcode cc;
	CURL *h;
	int r;

	x->bg = x->ranged && x->sink->background;
	h = handle_get(p, x->bg);
	if (!h) {
		ferry_error("%s: cannot create a curl handle", url);
		return -ENOMEM;
	}
	x->src = src;
	x->status = 0;
	x->stale = false;
	x->cr_start = x->cr_end = x->cr_total = -1;
	x->range_ok = true;
	curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&x->conn);
	if (x->bg)
		ferry_rwnd_begin(&x->conn->w, ferry_now());
	curl_easy_setopt(h, CURLOPT_URL, url);
	if (p->pin_now) {
		p->pin_now(p->pin_arg, pin);
		curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, pin);
	}
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
	if (x->ranged) {
		snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, x->off,
			 x->off + x->want - 1);
		curl_easy_setopt(h, CURLOPT_RANGE, range);
	} else {
		curl_easy_setopt(h, CURLOPT_RANGE, NULL);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER,
			 x->ranged && x->headers ? x->headers : p->headers);
	cc = curl_easy_perform(h);
	/* A reverse source that came back while this request waited for a
	 * connection has a new key, announced in its (authenticated) hello
	 * after the pin above was taken: once more with the pin of now. */
	for (int k = 0; cc == CURLE_SSL_PINNEDPUBKEYNOTMATCH && p->pin_now &&
	     x->got == 0 && k < 2; k++) {
		char now[128];

		p->pin_now(p->pin_arg, now);
		if (strcmp(now, pin) == 0)
			break;
		memcpy(pin, now, sizeof pin);
		curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, pin);
		cc = curl_easy_perform(h);
	}
	ZSTD_freeDCtx(x->dctx);
	free(x->zbuf);
	x->dctx = NULL;
	x->zbuf = NULL;
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	if (x->stale) {
		ferry_error("%s: the object changed on the server (ETag %s, "
			    "mounted %s); remount to start over", url,
			    x->etag, p->etag);
		r = -ESTALE;
	} else if (cc == CURLE_OK && x->ranged && x->status == 206 &&
	    x->got == x->want) {
		r = 0;
	} else if (cc == CURLE_OK && !x->ranged && x->status == 200) {
		r = 0;
	} else if (cc == CURLE_OK && x->ranged && x->status == 206) {
		ferry_error("%s: short body: %" PRIu64 " of %" PRIu64
			    " bytes at %" PRIu64, url, x->got, x->want,
			    x->off);
		r = -EIO;
	} else {
		r = http_error(p, url, cc, x, errbuf[0] ? errbuf :
			       curl_easy_strerror(cc));
	}
	if (r == 0)
		src->health.down = false;
	/* A handle whose transfer failed may hold a broken connection;
	 * drop it rather than hand it to the next request. */
	handle_put(p, h, x->bg, r == 0 && !x->conn->drop);
	return r;
}

/* Sleep @sec seconds, or less if @src is cancelled. */
static void
nap(const struct ferry_source *src, double sec)
{
	for (double left = sec; left > 0 && !(src->cancel && *src->cancel);
	     left -= 0.1)
		usleep((useconds_t)(FERRY_MIN(left, 0.1) * 1e6));
}

/* The retry policy of one read: exponential backoff with jitter, for up to
 * opts.timeout after the last progress. The first failure is logged; the
 * next ones only go to the status, until it gives up or goes through. */
struct retry {
	struct ferry_source *src;
	const char *url;
	double delay, deadline;
	double after;		/* the last reply's Retry-After, seconds */
	unsigned tries;
};

/* After attempt result @r (@progressed: it delivered bytes; t->after: the
 * reply's Retry-After): pause and return true to try again, or return
 * false with the final result in @r. */
static bool
retry_again(struct retry *t, int *r, bool progressed)
{
	struct ferry_source *src = t->src;
	struct http_priv *p = src->priv;
	static _Thread_local unsigned short seed[3];
	double now;

	if (*r == 0 || !transient(*r) || (src->cancel && *src->cancel))
		return false;
	ferry_health_failed(src, ferry_last_error());
	now = ferry_now();
	if (progressed || t->deadline == 0) {
		/* Progress (or a first failure): a fresh window, unless the
		 * link was given up on and nothing went through since. */
		t->deadline = p->timeout > 0 ? now + p->timeout : 1e300;
		if (!progressed && src->health.down && p->timeout > 0)
			t->deadline = now;
		t->delay = BACKOFF_FIRST;
	}
	if (now >= t->deadline) {
		char last[300];

		snprintf(last, sizeof last, "%s", ferry_last_error());
		ferry_log_quiet(false);
		if (t->tries == 0 && src->health.down)
			ferry_error("%s: failed again, the link still down "
				    "(given up after -o timeout=%.0f s); %s",
				    t->url, p->timeout, last);
		else
			ferry_error("%s: giving up after %.0f s of failures "
				    "(-o timeout=); the last: %s", t->url,
				    p->timeout, last);
		src->health.down = true;
		*r = -ETIMEDOUT;
		return false;
	}
	if (t->tries++ == 0) {
		src->health.retrying++;
		ferry_log_quiet(true);
	}
	if (!seed[0] && !seed[1])
		memcpy(seed, &(uint64_t){ (uint64_t)pthread_self() ^
					  (uint64_t)(now * 1e9) },
		       sizeof seed);
	/* Jitter, so that the streams of a restarted exporter do not all
	 * come back at once; never sooner than a busy server asked. */
	nap(src, FERRY_MIN(FERRY_MAX(t->delay * (0.5 + 0.5 * erand48(seed)),
				     t->after),
			   t->deadline - now));
	t->delay = FERRY_MIN(t->delay * 2, BACKOFF_MAX);
	return true;
}

static void
retry_end(struct retry *t, int r)
{
	if (t->tries == 0)
		return;
	ferry_log_quiet(false);
	t->src->health.retrying--;
	if (r == 0)
		ferry_info("%s: went through after %u retr%s", t->url,
			   t->tries, t->tries == 1 ? "y" : "ies");
}

static struct curl_slist *
range_headers_of(struct ferry_source *src, unsigned disk, bool plain)
{
	struct http_priv *p = src->priv;
	struct curl_slist *l;

	if (!p->range_headers)
		return NULL;
	pthread_mutex_lock(&p->lock);
	l = p->range_headers[p->compress && !plain ? src->ndisks + disk :
			     disk];
	pthread_mutex_unlock(&p->lock);
	return l;
}

/* curl_slist_append that frees the list when it fails. */
static struct curl_slist *
slist_add(struct curl_slist *l, const char *s)
{
	struct curl_slist *n = curl_slist_append(l, s);

	if (!n)
		curl_slist_free_all(l);
	return n;
}

static int
http_fetch(struct ferry_source *src, unsigned disk, uint64_t off,
	   uint64_t len, const struct ferry_sink *sink)
{
	struct http_priv *p = src->priv;
	struct retry t = { .src = src, .url = p->disk_url[disk] };
	int r;

	for (;;) {
		struct xfer x = {
			.ranged = true, .off = off, .want = len, .sink = sink,
			.headers = range_headers_of(src, disk, sink->plain),
			.disk_size = src->disks[disk].size,
		};
		struct curl_slist *dh = NULL;

		if (sink->digest_block && p->ferry) {
			/* This request's headers: the disk's, plus the ask. */
			char ask[40];

			for (const struct curl_slist *l = x.headers ? x.headers :
			     p->headers; l; l = l->next)
				if (!(dh = slist_add(dh, l->data)))
					break;
			snprintf(ask, sizeof ask, "Ferry-Digests: %u",
				 sink->digest_block);
			if (dh && (dh = slist_add(dh, ask)))
				x.headers = dh;
		}
		r = request(src, p->disk_url[disk], &x);
		curl_slist_free_all(dh);
		/* Keep what arrived (in order, each chunk checked by the
		 * sink as it completes); ask again only for the rest. */
		off += x.got;
		len -= x.got;
		if (r < 0 && len == 0 && r != -ECANCELED) {
			/* The fault came after the range's last byte (bytes
			 * past its end, a broken zstd tail): nothing is
			 * missing, and no empty range is asked for. */
			ferry_health_failed(src, ferry_last_error());
			r = 0;
		}
		t.after = x.retry_after;
		if (!retry_again(&t, &r, x.got > 0))
			break;
	}
	retry_end(&t, r);
	return r;
}

/* Bytes of [off, off+len) into a memory buffer. */
struct membuf {
	char *buf;
	uint64_t off;
};

static int
membuf_sink(void *arg, uint64_t off, const void *buf, size_t len)
{
	struct membuf *m = arg;

	memcpy(m->buf + (off - m->off), buf, len);
	return 0;
}

static int
http_pread(struct ferry_source *src, unsigned disk, void *buf, size_t len,
	   uint64_t off)
{
	struct membuf m = { .buf = buf, .off = off };
	struct ferry_sink sink = { .data = membuf_sink, .arg = &m };

	return http_fetch(src, disk, off, len, &sink);
}

static int
http_extents(struct ferry_source *src, unsigned disk,
	     struct ferry_extents *map)
{
	struct http_priv *p = src->priv;
	struct xfer x = { .ranged = false };
	char url[800], why[200];
	int r;

	if (!p->ferry)
		return ferry_extents_all_data(map);
	/* A map made now, not one the exporter computed a moment ago: the
	 * mount's (or a resync's) view of a live disk starts here. */
	snprintf(url, sizeof url, "%s/extents?fresh=1", p->disk_url[disk]);
	r = request(src, url, &x);
	if (r == 0) {
		uint64_t size = map->size;

		r = ferry_extents_from_json(x.body ? x.body : "", x.blen, size,
					    map, why, sizeof why);
		if (r < 0)
			ferry_error("%s: bad extent map: %s", url, why);
	}
	free(x.body);
	return r;
}

/* GET .../digests?chunk=&first=&count= of a ferry-export, retried like
 * data (the digests of a run may be asked just before or after its
 * data). */
static int
http_digests(struct ferry_source *src, unsigned disk, uint64_t chunk,
	     uint64_t first, size_t count, struct ferry_digest *out)
{
	struct http_priv *p = src->priv;
	char url[900], why[200];
	struct retry t = { .src = src, .url = url };
	int r;

	if (!p->ferry || !src->disks[disk].digests)
		return -ENOTSUP;
	snprintf(url, sizeof url, "%s/digests?chunk=%" PRIu64 "&first=%" PRIu64
		 "&count=%zu", p->disk_url[disk], chunk, first, count);
	do {
		struct xfer x = { .ranged = false };

		r = request(src, url, &x);
		if (r == 0) {
			r = ferry_digests_from_json(x.body ? x.body : "",
						    x.blen, chunk, first, count,
						    out, why, sizeof why);
			if (r < 0)
				ferry_error("%s: bad digests: %s", url, why);
		}
		free(x.body);
		t.after = x.retry_after;
	} while (retry_again(&t, &r, false));
	retry_end(&t, r);
	return r;
}

static void
http_close(struct ferry_source *src)
{
	struct http_priv *p = src->priv;

	if (p) {
		for (int bg = 0; bg < 2; bg++)
			for (size_t i = 0; i < p->nidle[bg]; i++)
				handle_free(p->idle[bg][i]);
		if (p->disk_url)
			for (size_t i = 0; i < src->ndisks; i++)
				free(p->disk_url[i]);
		free(p->disk_url);
		curl_slist_free_all(p->headers);
		if (p->range_headers)
			for (size_t i = 0; i < 2 * src->ndisks; i++)
				curl_slist_free_all(p->range_headers[i]);
		free(p->range_headers);
		curl_slist_free_all(p->retired);
		free(p->cacert);
		free(p->client_cert);
		free(p->client_key);
		pthread_mutex_destroy(&p->lock);
		free(p);
	}
	pthread_mutex_destroy(&src->health.lock);
	free(src->disks);
	free(src);
}

static int http_look(struct ferry_source *src, unsigned disk,
		     struct ferry_disk_info *now);
static int http_info(struct ferry_source *src, char **json);
static int http_follow(struct ferry_source *src, unsigned disk,
		       const char *gen);

static const struct ferry_backend http_backend = {
	.name = "http",
	.close = http_close,
	.extents = http_extents,
	.pread = http_pread,
	.fetch = http_fetch,
	.digests = http_digests,
	.look = http_look,
	.follow = http_follow,
	.info = http_info,
};

/* GET /v1/disks of a ferry-export, parsed into @l. */
static int
get_listing(struct ferry_source *src, struct ferry_listing *l)
{
	struct http_priv *p = src->priv;
	struct xfer x = { .ranged = false };
	char url[700], why[200];
	int r;

	snprintf(url, sizeof url, "%s/v1/disks", p->base);
	r = request(src, url, &x);
	if (r == 0) {
		r = ferry_listing_parse(x.body ? x.body : "", x.blen, l, why,
					sizeof why);
		if (r < 0)
			ferry_error("%s: bad disk listing: %s", url, why);
	}
	free(x.body);
	return r;
}

static int
list_ferry_disks(struct ferry_source *src)
{
	struct http_priv *p = src->priv;
	struct ferry_listing l;
	int r = get_listing(src, &l);

	if (r < 0)
		return r;
	if (l.host_id[0])
		snprintf(src->id, sizeof src->id, "ferry-host:%s", l.host_id);
	src->disks = l.disks;
	src->ndisks = l.ndisks;
	p->disk_url = calloc(l.ndisks + 1, sizeof *p->disk_url);
	if (!p->disk_url)
		return -ENOMEM;
	for (size_t i = 0; i < l.ndisks; i++)
		if (asprintf(&p->disk_url[i], "%s/v1/disks/%s", p->base,
			     l.disks[i].name) < 0) {
			p->disk_url[i] = NULL;
			return -ENOMEM;
		}
	return 0;
}

/* @from plus @extra as a new list in @out. */
static int
copy_headers(const struct curl_slist *from, const char *extra,
	     struct curl_slist **out)
{
	struct curl_slist *l = NULL, *n;

	for (; from; from = from->next, l = n)
		if (!(n = curl_slist_append(l, from->data)))
			goto fail;
	if (!(n = curl_slist_append(l, extra)))
		goto fail;
	*out = n;
	return 0;
fail:
	curl_slist_free_all(l);
	return -ENOMEM;
}

/* A plain URL's object may be replaced while mounted. Its range requests
 * carry the version the mount started with: If-Match with a strong ETag
 * (a weak one never matches a range), else If-Unmodified-Since, so that a
 * server answers 412 for another version rather than mix two; and each
 * reply's ETag is compared with it too (request()), for a server that
 * ignores the condition. */
static int
plain_validator(struct ferry_source *src, const struct xfer *x)
{
	struct http_priv *p = src->priv;
	char h[200];

	if (x->etag[0] && strncmp(x->etag, "W/", 2) != 0) {
		snprintf(p->etag, sizeof p->etag, "%s", x->etag);
		snprintf(h, sizeof h, "If-Match: %s", x->etag);
	} else if (x->lastmod[0]) {
		snprintf(h, sizeof h, "If-Unmodified-Since: %s", x->lastmod);
	} else {
		ferry_info("%s: the server gives no ETag or Last-Modified: a "
			   "change of the object while mounted cannot be told",
			   p->what);
		return 0;
	}
	p->range_headers = calloc(2, sizeof *p->range_headers);
	if (!p->range_headers)
		return -ENOMEM;
	return copy_headers(p->headers, h, &p->range_headers[0]);
}

/* A plain URL: one disk, its name from the last path segment. */
static int
probe_plain_url(struct ferry_source *src, const char *url)
{
	struct http_priv *p = src->priv;
	struct ferry_disk_info *d;
	struct xfer x = { .ranged = true, .off = 0, .want = 1 };
	const char *seg, *end;
	char name[FERRY_NAME_MAX + 1];
	size_t n = 0;
	int r;

	src->disks = calloc(1, sizeof *src->disks);
	p->disk_url = calloc(1, sizeof *p->disk_url);
	if (!src->disks || !p->disk_url || !(p->disk_url[0] = strdup(url)))
		return -ENOMEM;
	src->ndisks = 1;
	d = &src->disks[0];

	end = url + strcspn(url, "?#");
	seg = end;
	while (seg > url && seg[-1] != '/')
		seg--;
	for (const char *c = seg; c < end && n < FERRY_NAME_MAX; c++)
		name[n++] = (isalnum((unsigned char)*c) || *c == '-' ||
			     *c == '_' || *c == '.') ? *c : '_';
	name[n] = '\0';
	if (n > 4) {
		char *dot = strrchr(name, '.');

		if (dot && dot != name)
			*dot = '\0';	/* "vm.img" -> "vm" */
	}
	while (name[0] == '.')
		memmove(name, name + 1, strlen(name));
	snprintf(d->name, sizeof d->name, "%s", name[0] ? name : "disk");
	d->sector_size = 512;

	/* Size from "Content-Range: bytes 0-0/SIZE" of a one-byte range;
	 * an empty file answers 416 with "bytes * /0". */
	char byte;
	struct membuf m = { .buf = &byte, .off = 0 };
	struct ferry_sink sink = { .data = membuf_sink, .arg = &m };

	x.sink = &sink;
	r = request(src, url, &x);
	if (r == -ERANGE && x.cr_total == 0) {
		r = 0;
	} else if (r == 0 && x.cr_total > 0) {
		d->size = (uint64_t)x.cr_total;
	} else if (r == 0) {
		ferry_error("%s: no total size in Content-Range", url);
		r = -EPROTO;
	}
	if (r < 0)
		return r;
	d->allocated = d->size;
	snprintf(d->generation, sizeof d->generation, "%" PRIu64 "-%s",
		 d->size, x.etag[0] ? x.etag : x.lastmod);
	return plain_validator(src, &x);
}

/* The headers of each disk's range requests to a ferry-export. Only range
 * requests ask for zstd: the JSON replies are small, and the data is what
 * benefits. */
static int
range_headers_for(struct http_priv *p, const char *gen, bool zstd,
		  struct curl_slist **out)
{
	struct curl_slist *l = NULL;
	char match[200];
	int r;

	snprintf(match, sizeof match, "If-Match: \"%s\"", gen);
	r = copy_headers(p->headers, match, &l);
	if (r == 0 && zstd) {
		struct curl_slist *n = curl_slist_append(
			l, "Accept-Encoding: zstd");

		if (n)
			l = n;
		else
			r = -ENOMEM;
	}
	*out = l;
	return r;
}

static int
make_range_headers(struct ferry_source *src, bool compress)
{
	struct http_priv *p = src->priv;

	p->compress = compress;
	p->range_headers = calloc(2 * src->ndisks, sizeof *p->range_headers);
	if (!p->range_headers)
		return -ENOMEM;
	for (size_t i = 0; i < 2 * src->ndisks; i++) {
		int r = range_headers_for(p,
					  src->disks[i % src->ndisks].generation,
					  i >= src->ndisks && compress,
					  &p->range_headers[i]);

		if (r < 0)
			return r;
	}
	return 0;
}

/* GET /v1/disks again: disk @disk as the exporter has it now. */
static int
http_look(struct ferry_source *src, unsigned disk,
	  struct ferry_disk_info *now)
{
	struct http_priv *p = src->priv;
	struct ferry_listing l;
	int r;

	if (!p->ferry)
		return -ENOTSUP;
	r = get_listing(src, &l);
	if (r < 0)
		return r;
	r = -ENOENT;
	for (size_t i = 0; i < l.ndisks; i++)
		if (strcmp(l.disks[i].name, src->disks[disk].name) == 0) {
			*now = l.disks[i];
			r = 0;
		}
	if (r < 0)
		ferry_error("%s: disk %s is no longer exported", p->what,
			    src->disks[disk].name);
	ferry_listing_free(&l);
	return r;
}

/* GET /v1/info of a ferry-export: checked to be a JSON object, given back
 * indented. An exporter without it (404) has nothing to say. */
static int
http_info(struct ferry_source *src, char **json)
{
	struct http_priv *p = src->priv;
	struct xfer x = { .ranged = false };
	json_error_t jerr;
	json_t *root = NULL;
	char url[700];
	int r;

	*json = NULL;
	if (!p->ferry)
		return -ENOTSUP;
	snprintf(url, sizeof url, "%s/v1/info", p->base);
	r = request(src, url, &x);
	if (r == 0) {
		root = json_loadb(x.body ? x.body : "", x.blen,
				  JSON_REJECT_DUPLICATES, &jerr);
		if (!json_is_object(root)) {
			ferry_error("%s: bad source info: %s", url,
				    root ? "not an object" : jerr.text);
			r = -EPROTO;
		} else {
			*json = json_dumps(root, JSON_INDENT(2));
			r = *json ? 0 : -ENOMEM;
		}
	}
	json_decref(root);
	free(x.body);
	return r;
}

/* Data requests of disk @disk carry If-Match @gen from now on. Requests
 * under way keep the list they started with: replaced lists are kept
 * until the source is closed. */
static int
http_follow(struct ferry_source *src, unsigned disk, const char *gen)
{
	struct http_priv *p = src->priv;
	struct curl_slist *l[2] = { NULL, NULL };
	int r;

	if (!p->range_headers)
		return -ENOTSUP;
	r = range_headers_for(p, gen, false, &l[0]);
	if (r == 0)
		r = range_headers_for(p, gen, p->compress, &l[1]);
	if (r < 0) {
		curl_slist_free_all(l[0]);
		curl_slist_free_all(l[1]);
		return r;
	}
	pthread_mutex_lock(&p->lock);
	for (size_t k = 0; k < 2; k++) {
		size_t i = k * src->ndisks + disk;
		struct curl_slist *old = p->range_headers[i];

		p->range_headers[i] = l[k];
		if (old) {
			/* Chain the old list's nodes onto the retired ones. */
			struct curl_slist *t = old;

			while (t->next)
				t = t->next;
			t->next = p->retired;
			p->retired = old;
		}
	}
	snprintf(src->disks[disk].generation,
		 sizeof src->disks[disk].generation, "%s", gen);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int
ferry_http_open(const char *spec, const struct ferry_http_opts *opts,
		struct ferry_source **out)
{
	struct ferry_source *src;
	struct http_priv *p;
	char why[200];
	int r;

	pthread_once(&curl_once, curl_init_once);
	src = calloc(1, sizeof *src);
	p = calloc(1, sizeof *p);
	if (!src || !p) {
		free(src);
		free(p);
		return -ENOMEM;
	}
	src->ops = &http_backend;
	src->priv = p;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&src->health.lock, NULL);
	p->verbose = opts && opts->verbose;
	p->timeout = opts ? opts->timeout : FERRY_HTTP_TIMEOUT;
	p->stall = opts && opts->stall_timeout ? (long)opts->stall_timeout :
		   FERRY_HTTP_STALL;
	if (opts && opts->cacert && !(p->cacert = strdup(opts->cacert))) {
		r = -ENOMEM;
		goto fail;
	}
	p->headers = curl_slist_append(NULL, "User-Agent: ferryfs/"
				       FERRY_VERSION);
	if (!p->headers) {
		r = -ENOMEM;
		goto fail;
	}

	if (opts && opts->unix_socket) {
		char auth[300];
		struct curl_slist *h;

		p->ferry = true;
		snprintf(p->unix_path, sizeof p->unix_path, "%s",
			 opts->unix_socket);
		p->pin_now = opts->pin_now;
		p->pin_arg = opts->pin_arg;
		p->client_cert = strdup(opts->client_cert);
		p->client_key = strdup(opts->client_key);
		if (!p->client_cert || !p->client_key) {
			r = -ENOMEM;
			goto fail;
		}
		snprintf(p->base, sizeof p->base, "https://source");
		snprintf(p->what, sizeof p->what, "%s", spec);
		snprintf(auth, sizeof auth, "Authorization: Bearer %s",
			 opts->token);
		h = curl_slist_append(p->headers, auth);
		if (!h) {
			r = -ENOMEM;
			goto fail;
		}
		p->headers = h;
		r = list_ferry_disks(src);
		if (r == 0)
			r = make_range_headers(src, opts->compress);
		/* Known by the name the listener gave it, whatever its
		 * host says. */
		snprintf(src->id, sizeof src->id, "ferry-source:%s", spec);
	} else if (strncmp(spec, "ferry://", 8) == 0) {
		struct ferry_connstr c;
		char auth[300];

		r = ferry_connstr_parse(spec, &c, why, sizeof why);
		if (r < 0) {
			ferry_error("bad connection string: %s", why);
			goto fail;
		}
		p->ferry = true;
		ferry_connstr_base_url(&c, p->base, sizeof p->base);
		snprintf(p->what, sizeof p->what, "%s", p->base);
		snprintf(p->pin, sizeof p->pin, "%s", c.pin);
		snprintf(auth, sizeof auth, "Authorization: Bearer %s",
			 c.token);
		struct curl_slist *h = curl_slist_append(p->headers, auth);

		if (!h) {
			r = -ENOMEM;
			goto fail;
		}
		p->headers = h;
		snprintf(src->id, sizeof src->id, "ferry:%s", p->base);
		r = list_ferry_disks(src);
		if (r == 0)
			r = make_range_headers(src, opts && opts->compress);
	} else if (strncmp(spec, "https://", 8) == 0 ||
		   strncmp(spec, "http://", 7) == 0) {
		size_t n = strcspn(spec, "?#");

		snprintf(p->what, sizeof p->what, "%.*s", (int)n, spec);
		snprintf(src->id, sizeof src->id, "url:%.*s", (int)n, spec);
		r = probe_plain_url(src, spec);
	} else {
		ferry_error("%s: not a ferry:// connection string or an "
			    "https:// URL", spec);
		r = -EINVAL;
	}
	if (r < 0)
		goto fail;
	*out = src;
	return 0;
fail:
	http_close(src);
	return r;
}
