/* ferry-export — the HTTP endpoints (doc/protocol.md).
 *
 *   GET /v1/info                the source host and its disks' partition
 *                               tables (info.c)
 *   GET /v1/disks               JSON list of the exported disks
 *   GET /v1/disks/NAME          the bytes; Range: bytes=A-B gives 206;
 *                               Accept-Encoding: zstd compresses them;
 *                               Ferry-Digests: BLOCK adds the digests of
 *                               the range's blocks to the headers (read
 *                               once, for them and the body)
 *   GET /v1/disks/NAME/extents  allocation map (data / zero ranges), less
 *                               the blocks found to be zeros
 *   GET /v1/disks/NAME/digests?chunk=C&first=F&count=N
 *                               XXH3-128 of N chunks of C bytes from chunk
 *                               F, read now (common/digest.h)
 *   GET /metrics                Prometheus text format: bytes served and
 *                               requests per disk, connections, refusals
 *
 * Every request needs "Authorization: Bearer TOKEN". Only names given on
 * the command line are looked up, by exact match after percent-decoding,
 * so no path can reach another file. HEAD works wherever GET does. Nothing
 * here writes to a source.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <zstd.h>

#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"
#include "backends/usedmap.h"
#include "common/zframe.h"
#include "tools/export/export.h"
#include "tools/export/route.h"

/* Plain replies up to this size are read whole and sent at once; larger
 * ones, compressed ones and capped ones stream in PIECE-sized parts, one
 * in flight per connection. */
#define SMALL_REPLY (8u << 20)
#define PIECE (1u << 20)
/* zstd: one frame per ZSUB bytes; after a part that does not shrink by
 * 1/32, the next SKIP parts go raw without a try. */
#define ZSUB (128u << 10)
#define SKIP 7

/* A range's blocks read once, for its in-band digests and then its body:
 * the bytes the digests name are the bytes sent. Shared by the evbuffer
 * chains that point into it, freed with the last. */
struct span {
	_Atomic unsigned refs;
	uint64_t off;		/* disk offset of buf[0] */
	size_t len;
	uint8_t buf[];
};
/* The largest span read this way: a client's whole-chunk run (8 MiB) and
 * a block either side. A larger one has its digests read apart. */
#define SPAN_MAX ((8u << 20) + (2u << 20))

struct stream {
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	struct exporter *ex;
	struct export_disk *d;
	uint64_t off, left;
	unsigned epoch;		/* of the look the answer started with */
	bool zstd;
	unsigned skip;		/* parts to send raw without trying */
	uint8_t *buf;		/* zstd: a piece as read */
	struct span *span;	/* the body, read already (or NULL) */
	struct event *timer;	/* --bwlimit: @held waits for it */
	struct evbuffer *held;
	char peer[80];
};

static const char *
method_name(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_HEAD: return "HEAD";
	default: return "?";
	}
}

static void
peer_of(struct evhttp_request *req, char *out, size_t len)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	char *addr = NULL;
	ev_uint16_t port = 0;

	if (c)
		evhttp_connection_get_peer(c, &addr, &port);
	snprintf(out, len, "%s%s%s:%u", addr && strchr(addr, ':') ? "[" : "",
		 addr ? addr : "?", addr && strchr(addr, ':') ? "]" : "",
		 (unsigned)port);
}

/* Reply with a one-line text body and log it: the one log line for every
 * refused request, with the peer address. */
/* Requests refused, by cause, for GET /metrics. */
static _Atomic uint64_t refused_token, refused_busy, refused_other;

static void __attribute__((format(printf, 4, 5)))
refuse(struct evhttp_request *req, int code, const char *reason,
       const char *fmt, ...)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *body = evbuffer_new();
	char peer[80], msg[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	peer_of(req, peer, sizeof peer);
	if (code == 401)
		refused_token++;
	else if (code == 503)
		refused_busy++;
	else
		refused_other++;
	if (code == 401 || code == 503) {
		/* Refusals that a flood repeats: a line a second at most. */
		static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
		static double last;
		static unsigned quiet;
		double now = ferry_now();
		unsigned n = 0;
		bool say;

		pthread_mutex_lock(&lock);
		say = now - last >= 1.0;
		if (say) {
			last = now;
			n = quiet;
			quiet = 0;
		} else {
			quiet++;
		}
		pthread_mutex_unlock(&lock);
		if (say)
			ferry_error("%s %s %.200s: %d %s%s%.0u%s", peer,
				    method_name(req),
				    evhttp_request_get_uri(req), code, msg,
				    n ? " (and " : "", n,
				    n ? " more refused in the last second)" :
				    "");
	} else {
		ferry_error("%s %s %.200s: %d %s", peer, method_name(req),
			    evhttp_request_get_uri(req), code, msg);
	}
	evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
	if (code == 401)
		evhttp_add_header(h, "WWW-Authenticate", "Bearer realm=\"ferry\"");
	if (body)
		evbuffer_add_printf(body, "%d %s: %s\n", code, reason, msg);
	evhttp_send_reply(req, code, reason, body);
	if (body)
		evbuffer_free(body);
}

static bool
authorized(const struct exporter *ex, struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req),
					   "Authorization");
	unsigned char md[32];

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	/* Compare digests in constant time: neither the token's bytes nor
	 * its length leak through timing. */
	EVP_Digest(h + 7, strlen(h + 7), md, NULL, EVP_sha256(), NULL);
	return CRYPTO_memcmp(md, ex->token_hash, sizeof md) == 0;
}

/* One compression context per event-loop thread, freed with it. */
static pthread_key_t cctx_key;
static pthread_once_t cctx_once = PTHREAD_ONCE_INIT;

static void
cctx_free(void *p)
{
	ZSTD_freeCCtx(p);
}

static void
cctx_key_make(void)
{
	pthread_key_create(&cctx_key, cctx_free);
}

static ZSTD_CCtx *
thread_cctx(void)
{
	ZSTD_CCtx *c;

	pthread_once(&cctx_once, cctx_key_make);
	c = pthread_getspecific(cctx_key);
	if (!c && (c = ZSTD_createCCtx()))
		pthread_setspecific(cctx_key, c);
	return c;
}

static void
span_unref(struct span *sp)
{
	if (sp && --sp->refs == 0)
		free(sp);
}

static void
span_chain_done(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	span_unref(arg);
}

/* Append [off, off+len) of @sp to @buf by reference, no copy. */
static int
span_add(struct span *sp, struct evbuffer *buf, uint64_t off, size_t len)
{
	sp->refs++;
	if (evbuffer_add_reference(buf, sp->buf + (off - sp->off), len,
				   span_chain_done, sp) == 0)
		return 0;
	sp->refs--;
	return -ENOMEM;
}

/* Read [off, off+len) into @buf without an extra copy, noting zero blocks
 * on the way. */
static int
read_into(struct export_disk *d, unsigned epoch, struct evbuffer *buf,
	  uint64_t off,
	  size_t len)
{
	struct evbuffer_iovec v[4];
	int n = evbuffer_reserve_space(buf, (ev_ssize_t)len, v, 4);
	size_t left = len;
	int used = 0, r = 0;

	if (n <= 0)
		return -ENOMEM;
	for (; used < n && left > 0; used++) {
		size_t take = FERRY_MIN(v[used].iov_len, left);

		r = d->src->ops->pread(d->src, 0, v[used].iov_base, take, off);
		if (r < 0)
			return r;	/* reserved space is simply dropped */
		zeros_note(d, epoch, off, v[used].iov_base, take);
		v[used].iov_len = take;
		off += take;
		left -= take;
	}
	return evbuffer_commit_space(buf, v, used) == 0 ? 0 : -ENOMEM;
}

/* Append @n bytes at @in as zstd frames: zeros as RLE frames, parts that
 * shrink compressed, the rest raw. */
static int
encode(struct stream *st, const uint8_t *in, size_t n, struct evbuffer *out)
{
	ZSTD_CCtx *cc = thread_cctx();

	for (size_t off = 0; off < n; off += ZSUB) {
		size_t k = FERRY_MIN(n - off, (size_t)ZSUB), z = 0;
		size_t cap = FERRY_MAX(ZSTD_compressBound(k),
				       ferry_zframe_bound(k));
		const uint8_t *p = in + off;
		struct evbuffer_iovec v;

		if (evbuffer_reserve_space(out, (ev_ssize_t)cap, &v, 1) != 1)
			return -ENOMEM;
		if (ferry_is_zero(p, k)) {
			z = ferry_zframe_rle(v.iov_base, 0, k);
		} else if (st->skip > 0 || !cc) {
			st->skip -= st->skip > 0;
		} else {
			z = ZSTD_compressCCtx(cc, v.iov_base, v.iov_len, p, k,
					      st->ex->zstd_level);
			if (ZSTD_isError(z) || z >= k - k / 32) {
				z = 0;
				st->skip = SKIP;
			}
		}
		if (z == 0)
			z = ferry_zframe_raw(v.iov_base, p, k);
		v.iov_len = z;
		if (evbuffer_commit_space(out, &v, 1) != 0)
			return -ENOMEM;
	}
	return 0;
}

/* The next piece of @st as it goes on the wire, into @buf. */
static int
next_piece(struct stream *st, struct evbuffer *buf, size_t n)
{
	int r;

	if (st->span && !st->zstd)
		return span_add(st->span, buf, st->off, n);
	if (st->span)
		return encode(st, st->span->buf + (st->off - st->span->off), n,
			      buf);
	if (!st->zstd)
		return read_into(st->d, st->epoch, buf, st->off, n);
	r = st->d->src->ops->pread(st->d->src, 0, st->buf, n, st->off);
	if (r < 0)
		return r;
	zeros_note(st->d, st->epoch, st->off, st->buf, n);
	return encode(st, st->buf, n, buf);
}

static void stream_next(struct evhttp_connection *evcon, void *arg);

static void
stream_free(struct stream *st)
{
	if (st->timer)
		event_free(st->timer);
	if (st->held)
		evbuffer_free(st->held);
	span_unref(st->span);
	free(st->buf);
	free(st);
}

static void
stream_closed(struct evhttp_connection *evcon, void *arg)
{
	struct stream *st = arg;

	(void)evcon;
	ferry_error("%s GET /v1/disks/%s: connection lost with %" PRIu64
		    " bytes unsent", st->peer, st->d->name, st->left);
	/* Detached from its dead connection, the request is ours to free;
	 * still attached (server shutting down), libevent frees it. */
	if (!evhttp_request_get_connection(st->req))
		evhttp_send_reply_end(st->req);
	stream_free(st);
}

static void
stream_send(struct stream *st, struct evbuffer *buf)
{
	evhttp_send_reply_chunk_with_cb(st->req, buf, stream_next, st);
	evbuffer_free(buf);
}

static void
stream_timer(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;
	struct evbuffer *buf = st->held;

	(void)fd;
	(void)what;
	st->held = NULL;
	stream_send(st, buf);
}

static void
stream_next(struct evhttp_connection *evcon, void *arg)
{
	struct stream *st = arg;
	struct evbuffer *buf;
	double wait;
	size_t n;

	(void)evcon;
	if (st->left == 0) {
		evhttp_connection_set_closecb(st->evcon, NULL, NULL);
		evhttp_send_reply_end(st->req);
		stream_free(st);
		return;
	}
	n = (size_t)FERRY_MIN(st->left, (uint64_t)PIECE);
	buf = evbuffer_new();
	if (!buf || next_piece(st, buf, n) < 0) {
		/* Headers are gone already: end the body short and close,
		 * so the client sees a truncated transfer, never bad data. */
		ferry_error("%s GET /v1/disks/%s: read failed at %" PRIu64
			    "; closing the connection", st->peer, st->d->name,
			    st->off);
		if (buf)
			evbuffer_free(buf);
		evhttp_connection_set_closecb(st->evcon, NULL, NULL);
		evhttp_connection_free_on_completion(st->evcon);
		evhttp_send_reply_end(st->req);
		stream_free(st);
		return;
	}
	st->off += n;
	st->left -= n;
	st->d->served += n;
	/* --bwlimit: a piece beyond the tokens waits until they are due. */
	wait = ferry_bucket_take(&st->ex->bucket, evbuffer_get_length(buf),
				 ferry_now());
	if (wait > 0) {
		struct timeval tv = {
			(time_t)wait,
			(suseconds_t)((wait - (double)(time_t)wait) * 1e6),
		};

		if (!st->timer)
			st->timer = evtimer_new(evhttp_connection_get_base(
							st->evcon),
						stream_timer, st);
		if (st->timer && evtimer_add(st->timer, &tv) == 0) {
			st->held = buf;
			return;
		}
	}
	stream_send(st, buf);
}

/* "Ferry-Digests: BLOCK" on a range request: the digests of the
 * BLOCK-byte blocks it touches, read now, in a header of the same name, so
 * that the range is checked without a request of its own (fs/fetch.c,
 * fs/direct.c). The blocks are read once: @return them when the digests
 * were made from them, for the body to be sent from (a span of up to
 * SPAN_MAX), else NULL. Anything else asked is ignored: the client then
 * asks .../digests. */
static struct span *
inband_digests(struct evkeyvalq *out, struct export_disk *d, unsigned epoch,
	       const char *want, uint64_t off, uint64_t len, uint64_t size)
{
	struct ferry_digest dg[FERRY_DIGESTS_INBAND_MAX];
	char v[64 + FERRY_DIGESTS_INBAND_MAX * (FERRY_DIGEST_HEX + 1)];
	uint64_t block, first, n, a, b;
	struct span *sp = NULL;
	char *end;

	if (!want || len == 0)
		return NULL;
	block = strtoull(want, &end, 10);
	if (end == want || *end || block < 4096 ||
	    block > FERRY_DIGESTS_BLOCK_MAX || block % 4096)
		return NULL;
	first = off / block;
	n = (off + len + block - 1) / block - first;
	if (n > FERRY_DIGESTS_INBAND_MAX)
		return NULL;
	a = first * block;
	b = FERRY_MIN((first + n) * block, size);
	if (b - a <= SPAN_MAX && (sp = malloc(sizeof *sp + (b - a)))) {
		sp->refs = 1;
		sp->off = a;
		sp->len = (size_t)(b - a);
		if (d->src->ops->pread(d->src, 0, sp->buf, sp->len, a) < 0) {
			free(sp);
			return NULL;	/* the body's own read will say */
		}
		zeros_note(d, epoch, a, sp->buf, sp->len);
		for (uint64_t i = 0; i < n; i++)
			ferry_digest_of(sp->buf + i * block,
					(size_t)FERRY_MIN(block,
							  b - a - i * block),
					&dg[i]);
	} else if (ferry_source_digests(d->src, 0, block, first, (size_t)n,
					dg) < 0) {
		return NULL;
	}
	if (ferry_digests_header(v, sizeof v, block, first, dg, (size_t)n) < 0) {
		span_unref(sp);
		return NULL;
	}
	evhttp_add_header(out, "Ferry-Digests", v);
	return sp;
}

static void
serve_data(struct evhttp_request *req, struct exporter *ex,
	   struct export_disk *d)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *range = evhttp_find_header(in, "Range");
	uint64_t size, off = 0, len;
	int code = 200, r;
	const char *reason = "OK";
	bool head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
	bool zstd = !head && ex->zstd_level != 0 &&
		    ferry_accepts_coding(evhttp_find_header(
			    in, "Accept-Encoding"), "zstd");
	const char *match = evhttp_find_header(in, "If-Match");
	char gen[sizeof d->src->disks[0].generation], hdr[160];
	unsigned epoch = export_look(d, gen, sizeof gen, &size);
	struct span *span = NULL;

	/* The generation is the entity tag: a client that mounted another
	 * generation of this disk gets 412 instead of mixing its bytes. */
	len = size;
	if (match && !ferry_if_match(match, gen)) {
		refuse(req, 412, "Precondition Failed",
		       "disk %s is at generation %s, not %.100s", d->name,
		       gen, match);
		return;
	}
	snprintf(hdr, sizeof hdr, "\"%s\"", gen);
	evhttp_add_header(out, "ETag", hdr);
	if (range) {
		r = ferry_parse_range(range, size, &off, &len);
		if (r == -ERANGE) {
			snprintf(hdr, sizeof hdr, "bytes */%" PRIu64, size);
			evhttp_add_header(out, "Content-Range", hdr);
			refuse(req, 416, "Range Not Satisfiable",
			       "range %.60s outside disk %s of %" PRIu64
			       " bytes", range, d->name, size);
			return;
		}
		if (r < 0) {
			refuse(req, 400, "Bad Request",
			       "malformed Range header %.60s", range);
			return;
		}
		code = 206;
		reason = "Partial Content";
		snprintf(hdr, sizeof hdr, "bytes %" PRIu64 "-%" PRIu64
			 "/%" PRIu64, off, off + len - 1, size);
		evhttp_add_header(out, "Content-Range", hdr);
	}
	if (range && !head)
		span = inband_digests(out, d, epoch,
				      evhttp_find_header(in, "Ferry-Digests"),
				      off, len, size);
	evhttp_add_header(out, "Content-Type", "application/octet-stream");
	evhttp_add_header(out, "Accept-Ranges", "bytes");
	evhttp_add_header(out, "Vary", "Accept-Encoding");
	zstd = zstd && len > 0;
	if (zstd) {
		/* The body is the range's bytes as zstd frames; its length
		 * is known only as it goes, so it is sent chunked. */
		evhttp_add_header(out, "Content-Encoding", "zstd");
	} else {
		snprintf(hdr, sizeof hdr, "%" PRIu64, len);
		evhttp_add_header(out, "Content-Length", hdr);
	}

	if (head || len == 0) {
		evhttp_send_reply(req, code, reason, NULL);
		return;
	}
	if (!zstd && len <= SMALL_REPLY && !ex->bucket.rate) {
		struct evbuffer *buf = evbuffer_new();

		if (!buf || (span ? span_add(span, buf, off, (size_t)len) :
			     read_into(d, epoch, buf, off, (size_t)len)) < 0) {
			span_unref(span);
			if (buf)
				evbuffer_free(buf);
			evhttp_remove_header(out, "Content-Length");
			evhttp_remove_header(out, "Content-Range");
			refuse(req, 500, "Internal Server Error",
			       "reading disk %s at %" PRIu64 " failed",
			       d->name, off);
			return;
		}
		d->served += len;
		evhttp_send_reply(req, code, reason, buf);
		evbuffer_free(buf);
		span_unref(span);
		return;
	}

	struct stream *st = calloc(1, sizeof *st);

	if (!st || (zstd && !span && !(st->buf = malloc(PIECE)))) {
		span_unref(span);
		free(st);
		evhttp_remove_header(out, "Content-Encoding");
		refuse(req, 503, "Service Unavailable", "out of memory");
		return;
	}
	st->req = req;
	st->evcon = evhttp_request_get_connection(req);
	st->ex = ex;
	st->d = d;
	st->off = off;
	st->left = len;
	st->epoch = epoch;
	st->zstd = zstd;
	st->span = span;
	peer_of(req, st->peer, sizeof st->peer);
	evhttp_send_reply_start(req, code, reason);
	evhttp_connection_set_closecb(st->evcon, stream_closed, st);
	stream_next(st->evcon, st);
}

static void
send_json(struct evhttp_request *req, json_t *root)
{
	char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
	struct evbuffer *buf = evbuffer_new();

	json_decref(root);
	if (!text || !buf) {
		free(text);
		if (buf)
			evbuffer_free(buf);
		refuse(req, 503, "Service Unavailable", "out of memory");
		return;
	}
	evbuffer_add(buf, text, strlen(text));
	evbuffer_add(buf, "\n", 1);
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type", "application/json");
	evhttp_send_reply(req, 200, "OK", buf);
	evbuffer_free(buf);
	free(text);
}

static void
serve_list(struct evhttp_request *req, struct exporter *ex)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < ex->ndisks; i++) {
		const struct ferry_disk_info *di = &ex->disks[i].src->disks[0];
		char gen[sizeof di->generation];
		uint64_t size;

		struct ferry_extents m;
		uint64_t used;

		export_look(&ex->disks[i], gen, sizeof gen, &size);
		if (zeros_map(&ex->disks[i], &m) < 0) {
			json_decref(arr);
			refuse(req, 500, "Internal Server Error", "extent map "
			       "of %s failed", ex->disks[i].name);
			return;
		}
		used = m.data_bytes;
		ferry_extents_free(&m);
		json_array_append_new(arr, json_pack(
			"{sssIsIsIsIsssbss}", "name", ex->disks[i].name,
			"size", (json_int_t)size,
			"sector_size", (json_int_t)di->sector_size,
			"allocated", (json_int_t)FERRY_MIN(di->allocated,
							   size),
			"used", (json_int_t)FERRY_MIN(used, size),
			"generation", gen,
			"live", di->live,
			"digests", FERRY_DIGEST_NAME));
	}
	send_json(req, arr ? json_pack("{ssso}", "host_id", ex->host_id,
				       "disks", arr) : NULL);
}

static void
serve_extents(struct evhttp_request *req, struct export_disk *d, bool fresh)
{
	struct ferry_extents m;
	struct evbuffer *buf;
	char *text;
	int r;

	export_look(d, NULL, 0, NULL);
	if (fresh)
		ferry_usedmap_since(d->src, ferry_now());
	r = zeros_map(d, &m);
	if (r < 0) {
		refuse(req, 500, "Internal Server Error",
		       "extent map of %s failed", d->name);
		return;
	}
	text = ferry_extents_to_json(&m);
	ferry_extents_free(&m);
	buf = evbuffer_new();
	if (!text || !buf) {
		free(text);
		if (buf)
			evbuffer_free(buf);
		refuse(req, 503, "Service Unavailable", "out of memory");
		return;
	}
	evbuffer_add(buf, text, strlen(text));
	evbuffer_add(buf, "\n", 1);
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type", "application/json");
	evhttp_send_reply(req, 200, "OK", buf);
	evbuffer_free(buf);
}

static void
serve_digests(struct evhttp_request *req, struct export_disk *d,
	      const struct route *rt)
{
	uint64_t size, nchunks;
	uint64_t chunk = rt->chunk, first = rt->first, count = rt->count;
	struct ferry_digest *dg = NULL;
	json_t *arr;

	export_look(d, NULL, 0, &size);
	nchunks = (size + chunk - 1) / chunk;
	if (first >= nchunks || count > nchunks - first) {
		refuse(req, 416, "Range Not Satisfiable", "digests: chunks "
		       "%" PRIu64 "+%" PRIu64 " outside disk %s of %" PRIu64
		       " chunks", first, count, d->name, nchunks);
		goto out;
	}
	dg = calloc((size_t)count, sizeof *dg);
	arr = json_array();
	if (!dg || !arr) {
		json_decref(arr);
		refuse(req, 503, "Service Unavailable", "out of memory");
		goto out;
	}
	if (ferry_source_digests(d->src, 0, chunk, first, (size_t)count,
				 dg) < 0) {
		json_decref(arr);
		refuse(req, 500, "Internal Server Error", "reading disk %s for "
		       "digests failed", d->name);
		goto out;
	}
	for (uint64_t i = 0; i < count; i++) {
		char hex[33];

		ferry_digest_hex(&dg[i], hex);
		json_array_append_new(arr, json_string(hex));
	}
	send_json(req, json_pack("{sssIsIso}", "algorithm", FERRY_DIGEST_NAME,
				 "chunk", (json_int_t)chunk,
				 "first", (json_int_t)first, "digests", arr));
out:
	free(dg);
}

static struct export_disk *
find_disk(struct exporter *ex, const char *name)
{
	for (size_t i = 0; i < ex->ndisks; i++)
		if (strcmp(ex->disks[i].name, name) == 0)
			return &ex->disks[i];
	return NULL;
}

/* Per-connection state, hung on the connection's SSL object so that it is
 * freed (and the connection uncounted) whenever libevent frees the
 * connection, however it ends. */
struct conn {
	struct exporter *ex;
	struct bufferevent *bev;
	struct event *deadline;	/* no first request by then: closed */
	bool over;		/* beyond --max-connections: refused */
	bool seen;		/* a request arrived */
};

static int conn_idx = -1;
static pthread_once_t conn_once = PTHREAD_ONCE_INIT;

static void
conn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
	  void *argp)
{
	struct conn *c = ptr;

	(void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
	if (!c)
		return;
	if (c->deadline)
		event_free(c->deadline);
	c->ex->conns--;
	free(c);
}

static void
conn_index_make(void)
{
	conn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_free);
}

static struct conn *
conn_of(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ?
		evhttp_connection_get_bufferevent(evcon) : NULL;
	SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;

	return ssl ? SSL_get_ex_data(ssl, conn_idx) : NULL;
}

/* A client that has not sent a whole request by --header-timeout (a slow
 * handshake, slowloris headers) is cut off. */
static void
conn_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	evutil_socket_t s = bufferevent_getfd(c->bev);

	(void)fd;
	(void)what;
	if (c->seen || s < 0)
		return;
	ferry_debug("connection %d: no request within %.0f s; closing",
		    (int)s, c->ex->header_timeout);
	/* libevent sees the socket end and frees the connection. */
	shutdown(s, SHUT_RDWR);
}

static struct bufferevent *
make_bev(struct event_base *base, void *arg)
{
	struct exporter *ex = arg;
	SSL *ssl = SSL_new(ex->ssl);
	struct conn *c = calloc(1, sizeof *c);
	struct bufferevent *bev;

	pthread_once(&conn_once, conn_index_make);
	if (!ssl || !c || conn_idx < 0 || !SSL_set_ex_data(ssl, conn_idx, c)) {
		SSL_free(ssl);
		free(c);
		return NULL;
	}
	c->ex = ex;
	c->over = ++ex->conns > ex->max_conns;
	ex->conns_total++;
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
					     BUFFEREVENT_SSL_ACCEPTING,
					     BEV_OPT_CLOSE_ON_FREE);
	if (!bev)
		return NULL;	/* the SSL (and @c) went with it */
	c->bev = bev;
	/* Clients that just close (curl after a download) are not errors. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	c->deadline = evtimer_new(base, conn_deadline, c);
	if (c->deadline) {
		struct timeval tv = {
			(time_t)ex->header_timeout,
			(suseconds_t)((ex->header_timeout -
				       (double)(time_t)ex->header_timeout) *
				      1e6),
		};

		evtimer_add(c->deadline, &tv);
	}
	return bev;
}

/* GET /metrics: Prometheus text format (0.0.4). */
static void
serve_metrics(struct evhttp_request *req, struct exporter *ex)
{
	struct evbuffer *b = evbuffer_new();

	if (!b) {
		refuse(req, 503, "Service Unavailable", "out of memory");
		return;
	}
	evbuffer_add_printf(b,
		"# HELP ferry_export_disk_size_bytes Size of the exported disk.\n"
		"# TYPE ferry_export_disk_size_bytes gauge\n");
	for (size_t i = 0; i < ex->ndisks; i++) {
		char gen[160];
		uint64_t size = 0;

		export_look(&ex->disks[i], gen, sizeof gen, &size);
		evbuffer_add_printf(b, "ferry_export_disk_size_bytes{disk=\"%s\"}"
				    " %" PRIu64 "\n", ex->disks[i].name, size);
	}
	evbuffer_add_printf(b,
		"# HELP ferry_export_disk_served_bytes_total Disk bytes sent "
		"(before compression).\n"
		"# TYPE ferry_export_disk_served_bytes_total counter\n");
	for (size_t i = 0; i < ex->ndisks; i++)
		evbuffer_add_printf(b, "ferry_export_disk_served_bytes_total"
				    "{disk=\"%s\"} %" PRIu64 "\n",
				    ex->disks[i].name,
				    (uint64_t)ex->disks[i].served);
	evbuffer_add_printf(b,
		"# HELP ferry_export_disk_requests_total Data requests.\n"
		"# TYPE ferry_export_disk_requests_total counter\n");
	for (size_t i = 0; i < ex->ndisks; i++)
		evbuffer_add_printf(b, "ferry_export_disk_requests_total"
				    "{disk=\"%s\"} %" PRIu64 "\n",
				    ex->disks[i].name,
				    (uint64_t)ex->disks[i].requests);
	evbuffer_add_printf(b,
		"# HELP ferry_export_connections Open connections.\n"
		"# TYPE ferry_export_connections gauge\n"
		"ferry_export_connections %u\n"
		"# HELP ferry_export_connections_total Connections accepted.\n"
		"# TYPE ferry_export_connections_total counter\n"
		"ferry_export_connections_total %" PRIu64 "\n"
		"# HELP ferry_export_refused_total Requests refused, by cause.\n"
		"# TYPE ferry_export_refused_total counter\n"
		"ferry_export_refused_total{cause=\"token\"} %" PRIu64 "\n"
		"ferry_export_refused_total{cause=\"busy\"} %" PRIu64 "\n"
		"ferry_export_refused_total{cause=\"request\"} %" PRIu64 "\n",
		(unsigned)ex->conns, (uint64_t)ex->conns_total,
		(uint64_t)refused_token, (uint64_t)refused_busy,
		(uint64_t)refused_other);
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/* --metrics-listen: plain HTTP, GET /metrics and nothing else, no token
 * (what Prometheus scrapes by default; bind it to an address only the
 * monitoring network reaches). */
static void
handle_metrics_only(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

	enum evhttp_cmd_type m = evhttp_request_get_command(req);

	if (!path || strcmp(path, "/metrics") != 0) {
		evhttp_send_error(req, 404, "only /metrics here");
		return;
	}
	if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
				  "Allow", "GET, HEAD");
		evhttp_send_error(req, 405, "Method Not Allowed");
		return;
	}
	serve_metrics(req, arg);
}

void
serve_metrics_setup(struct exporter *ex, struct evhttp *http)
{
	/* Others are answered 405 by the handler, not 501 by libevent. */
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
				   EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
				   EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS);
	evhttp_set_max_headers_size(http, 16384);
	evhttp_set_max_body_size(http, 0);
	evhttp_set_timeout(http, 10);
	evhttp_set_gencb(http, handle_metrics_only, ex);
}

static void
handle(struct evhttp_request *req, void *arg)
{
	struct exporter *ex = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	struct conn *c = conn_of(req);
	struct export_disk *d;
	struct route rt;
	char why[200];
	int code;

	if (c) {
		c->seen = true;
		if (c->deadline)
			evtimer_del(c->deadline);
	}
	if (c && c->over) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
				  "Connection", "close");
		evhttp_add_header(evhttp_request_get_output_headers(req),
				  "Retry-After", "5");
		refuse(req, 503, "Service Unavailable", "more than %u "
		       "connections (--max-connections)", ex->max_conns);
		return;
	}
	if (!authorized(ex, req)) {
		/* Guessing clients get a closed connection each time, and
		 * the log a line a second at most. */
		evhttp_add_header(evhttp_request_get_output_headers(req),
				  "Connection", "close");
		refuse(req, 401, "Unauthorized", "missing or wrong token");
		return;
	}
	code = export_route(path, uri ? evhttp_uri_get_query(uri) : NULL, &rt,
			    why, sizeof why);
	if (code) {
		refuse(req, code, code == 400 ? "Bad Request" : code == 404 ?
		       "Not Found" : "Service Unavailable", "%s", why);
		return;
	}
	if (rt.kind == ROUTE_LIST) {
		serve_list(req, ex);
		return;
	}
	if (rt.kind == ROUTE_INFO) {
		send_json(req, info_json(ex));
		return;
	}
	if (rt.kind == ROUTE_METRICS) {
		serve_metrics(req, ex);
		return;
	}
	d = find_disk(ex, rt.name);
	if (!d) {
		refuse(req, 404, "Not Found", "no such disk");
		return;
	}
	if (rt.kind == ROUTE_DATA)
		d->requests++;
	if (rt.kind == ROUTE_DATA)
		serve_data(req, ex, d);
	else if (rt.kind == ROUTE_EXTENTS)
		serve_extents(req, d, rt.fresh);
	else
		serve_digests(req, d, &rt);
}


void
serve_setup(struct exporter *ex, struct evhttp *http)
{
	evhttp_set_bevcb(http, make_bev, ex);
	evhttp_set_gencb(http, handle, ex);
	/* Others are answered 405 by the handler, not 501 by libevent. */
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
				   EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
				   EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS);
	evhttp_set_max_headers_size(http, 16384);
	evhttp_set_max_body_size(http, 0);
	evhttp_set_timeout(http, 120);
}
