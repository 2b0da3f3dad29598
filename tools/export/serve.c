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
 *
 * The event loop only parses, routes and sends. What reads or maps a
 * source runs on the source threads (pool.h) as a job whose answer (a
 * status, headers, a body, a stream to start, or a refusal) the loop then
 * sends: one slow disk holds up its own requests, not a loop's others.
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
#include "tools/export/pool.h"
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
	/* The next piece, read on a source thread: @busy while it is, its
	 * @piece_n bytes into @piece, or @piece_err. A connection lost
	 * meanwhile (@closed) frees the stream once the piece is back. */
	struct pool_job pj;
	struct evbuffer *piece;
	size_t piece_n;
	int piece_err;
	bool busy, closed;
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

/* Spans are read on the source threads and freed on the loops, once TLS
 * has sent them: freshly malloc'd, each was pages the kernel had to give
 * and clear anew (glibc maps a block this size afresh, in a source
 * thread's own arena), which cost the exporter 2-3 times the page faults
 * and about a tenth more CPU per GiB hydrated. A few are kept for the next
 * request instead; they hold no data between uses. */
#define SPAN_KEEP 2
static struct {
	pthread_mutex_t lock;
	struct span *free[SPAN_KEEP];
	unsigned n;
} spans = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* A span for @len bytes (up to SPAN_MAX), or NULL. */
static struct span *
span_new(size_t len)
{
	struct span *sp = NULL;

	pthread_mutex_lock(&spans.lock);
	if (spans.n)
		sp = spans.free[--spans.n];
	pthread_mutex_unlock(&spans.lock);
	if (!sp)
		sp = malloc(sizeof *sp + SPAN_MAX);
	if (sp) {
		sp->refs = 1;
		sp->len = len;
	}
	return sp;
}

static void
span_unref(struct span *sp)
{
	if (!sp || --sp->refs != 0)
		return;
	pthread_mutex_lock(&spans.lock);
	if (spans.n < SPAN_KEEP) {
		spans.free[spans.n++] = sp;
		sp = NULL;
	}
	pthread_mutex_unlock(&spans.lock);
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
	if (st->piece)
		evbuffer_free(st->piece);
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
	if (st->busy)
		st->closed = true;	/* piece_done() frees it */
	else
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

/* Headers are gone already: end the body short and close, so the client
 * sees a truncated transfer, never bad data. */
static void
stream_fail(struct stream *st)
{
	ferry_error("%s GET /v1/disks/%s: read failed at %" PRIu64
		    "; closing the connection", st->peer, st->d->name,
		    st->off);
	evhttp_connection_set_closecb(st->evcon, NULL, NULL);
	evhttp_connection_free_on_completion(st->evcon);
	evhttp_send_reply_end(st->req);
	stream_free(st);
}

/* On a source thread: the next piece of @st as it goes on the wire. */
static void
piece_work(struct pool_job *j)
{
	struct stream *st = (struct stream *)((char *)j -
					      offsetof(struct stream, pj));

	st->piece = evbuffer_new();
	st->piece_err = st->piece ? next_piece(st, st->piece, st->piece_n) :
			-ENOMEM;
}

/* Back on the loop: send the piece, after the --bwlimit wait if due. */
static void
piece_done(struct pool_job *j)
{
	struct stream *st = (struct stream *)((char *)j -
					      offsetof(struct stream, pj));
	struct evbuffer *buf = st->piece;
	double wait;

	st->busy = false;
	if (st->closed) {
		stream_free(st);
		return;
	}
	st->piece = NULL;
	if (st->piece_err < 0) {
		if (buf)
			evbuffer_free(buf);
		stream_fail(st);
		return;
	}
	st->off += st->piece_n;
	st->left -= st->piece_n;
	st->d->served += st->piece_n;
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

static void
stream_next(struct evhttp_connection *evcon, void *arg)
{
	struct stream *st = arg;

	(void)evcon;
	/* libevent calls this whenever the connection's output drains,
	 * which TLS may make it do again before the next piece is back:
	 * one piece at a time. */
	if (st->busy || st->held)
		return;
	if (st->left == 0) {
		evhttp_connection_set_closecb(st->evcon, NULL, NULL);
		evhttp_send_reply_end(st->req);
		stream_free(st);
		return;
	}
	st->piece_n = (size_t)FERRY_MIN(st->left, (uint64_t)PIECE);
	st->pj.work = piece_work;
	st->pj.done = piece_done;
	st->busy = true;
	if (pool_submit(st->ex->pool, evhttp_connection_get_base(st->evcon),
			&st->pj) < 0) {
		st->busy = false;
		stream_fail(st);
	}
}

/* What a source thread answers a request with, for the loop to send:
 * a refusal (@why set), or @code with @hdrs and one of @json, @body, or
 * the stream @st to start (none: no body). */
#define ANSWER_HDRS 10
struct answer {
	int code;
	const char *reason;
	char why[300];
	struct {
		const char *name;
		char *value;
	} hdrs[ANSWER_HDRS];
	size_t nhdrs;
	json_t *json;
	struct evbuffer *body;
	struct stream *st;
};

/* A request whose answer needs the source. */
struct sjob {
	struct pool_job pj;
	struct evhttp_request *req;
	struct exporter *ex;
	struct export_disk *d;		/* or NULL: every disk */
	struct route rt;
	/* Data requests: what they asked, copied from their headers. */
	char *range, *match, *digests;
	bool head, zstd;
	struct answer a;
};

static void __attribute__((format(printf, 4, 5)))
answer_refuse(struct answer *a, int code, const char *reason,
	      const char *fmt, ...)
{
	va_list ap;

	a->code = code;
	a->reason = reason;
	va_start(ap, fmt);
	vsnprintf(a->why, sizeof a->why, fmt, ap);
	va_end(ap);
}

static void
answer_header(struct answer *a, const char *name, const char *value)
{
	if (a->nhdrs < ANSWER_HDRS &&
	    (a->hdrs[a->nhdrs].value = strdup(value)))
		a->hdrs[a->nhdrs++].name = name;
}

/* Drop header @name (a refusal after it was added). */
static void
answer_unheader(struct answer *a, const char *name)
{
	for (size_t i = 0; i < a->nhdrs; i++)
		if (strcmp(a->hdrs[i].name, name) == 0) {
			free(a->hdrs[i].value);
			a->hdrs[i] = a->hdrs[--a->nhdrs];
			i--;
		}
}

static void
sjob_free(struct sjob *j)
{
	for (size_t i = 0; i < j->a.nhdrs; i++)
		free(j->a.hdrs[i].value);
	json_decref(j->a.json);
	if (j->a.body)
		evbuffer_free(j->a.body);
	if (j->a.st)
		stream_free(j->a.st);
	free(j->range);
	free(j->match);
	free(j->digests);
	free(j);
}

/* "Ferry-Digests: BLOCK" on a range request: the digests of the
 * BLOCK-byte blocks it touches, read now, in a header of the same name, so
 * that the range is checked without a request of its own (fs/fetch.c,
 * fs/direct.c). The blocks are read once: @return them when the digests
 * were made from them, for the body to be sent from (a span of up to
 * SPAN_MAX), else NULL. Anything else asked is ignored: the client then
 * asks .../digests. */
static struct span *
inband_digests(struct answer *out, struct export_disk *d, unsigned epoch,
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
	if (b - a <= SPAN_MAX && (sp = span_new((size_t)(b - a)))) {
		sp->off = a;
		if (d->src->ops->pread(d->src, 0, sp->buf, sp->len, a) < 0) {
			span_unref(sp);
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
	answer_header(out, "Ferry-Digests", v);
	return sp;
}

/* GET /v1/disks/NAME, on a source thread. */
static void
data_work(struct sjob *j)
{
	struct answer *out = &j->a;
	struct export_disk *d = j->d;
	struct exporter *ex = j->ex;
	uint64_t size, off = 0, len;
	char gen[sizeof d->src->disks[0].generation], hdr[160];
	unsigned epoch = export_look(d, gen, sizeof gen, &size);
	struct span *span = NULL;
	bool zstd = j->zstd;
	int r;

	/* The generation is the entity tag: a client that mounted another
	 * generation of this disk gets 412 instead of mixing its bytes. */
	len = size;
	out->code = 200;
	out->reason = "OK";
	if (j->match && !ferry_if_match(j->match, gen)) {
		answer_refuse(out, 412, "Precondition Failed",
			      "disk %s is at generation %s, not %.100s",
			      d->name, gen, j->match);
		return;
	}
	snprintf(hdr, sizeof hdr, "\"%s\"", gen);
	answer_header(out, "ETag", hdr);
	if (j->range) {
		r = ferry_parse_range(j->range, size, &off, &len);
		if (r == -ERANGE) {
			snprintf(hdr, sizeof hdr, "bytes */%" PRIu64, size);
			answer_header(out, "Content-Range", hdr);
			answer_refuse(out, 416, "Range Not Satisfiable",
				      "range %.60s outside disk %s of %" PRIu64
				      " bytes", j->range, d->name, size);
			return;
		}
		if (r < 0) {
			answer_refuse(out, 400, "Bad Request",
				      "malformed Range header %.60s", j->range);
			return;
		}
		out->code = 206;
		out->reason = "Partial Content";
		snprintf(hdr, sizeof hdr, "bytes %" PRIu64 "-%" PRIu64
			 "/%" PRIu64, off, off + len - 1, size);
		answer_header(out, "Content-Range", hdr);
	}
	if (j->range && !j->head)
		span = inband_digests(out, d, epoch, j->digests, off, len,
				      size);
	answer_header(out, "Content-Type", "application/octet-stream");
	answer_header(out, "Accept-Ranges", "bytes");
	answer_header(out, "Vary", "Accept-Encoding");
	zstd = zstd && len > 0;
	if (zstd) {
		/* The body is the range's bytes as zstd frames; its length
		 * is known only as it goes, so it is sent chunked. */
		answer_header(out, "Content-Encoding", "zstd");
	} else {
		snprintf(hdr, sizeof hdr, "%" PRIu64, len);
		answer_header(out, "Content-Length", hdr);
	}

	if (j->head || len == 0) {
		span_unref(span);
		return;
	}
	if (!zstd && len <= SMALL_REPLY && !ex->bucket.rate) {
		struct evbuffer *buf = evbuffer_new();

		if (!buf || (span ? span_add(span, buf, off, (size_t)len) :
			     read_into(d, epoch, buf, off, (size_t)len)) < 0) {
			span_unref(span);
			if (buf)
				evbuffer_free(buf);
			answer_unheader(out, "Content-Length");
			answer_unheader(out, "Content-Range");
			answer_refuse(out, 500, "Internal Server Error",
				      "reading disk %s at %" PRIu64 " failed",
				      d->name, off);
			return;
		}
		d->served += len;
		out->body = buf;
		span_unref(span);
		return;
	}

	struct stream *st = calloc(1, sizeof *st);

	if (!st || (zstd && !span && !(st->buf = malloc(PIECE)))) {
		span_unref(span);
		free(st);
		answer_unheader(out, "Content-Encoding");
		answer_refuse(out, 503, "Service Unavailable", "out of memory");
		return;
	}
	st->ex = ex;
	st->d = d;
	st->off = off;
	st->left = len;
	st->epoch = epoch;
	st->zstd = zstd;
	st->span = span;
	out->st = st;
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

/* GET /v1/disks, on a source thread (each disk's map may be computed). */
static void
list_work(struct sjob *j)
{
	struct exporter *ex = j->ex;
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
			answer_refuse(&j->a, 500, "Internal Server Error",
				      "extent map of %s failed",
				      ex->disks[i].name);
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
	j->a.json = arr ? json_pack("{ssso}", "host_id", ex->host_id,
				    "disks", arr) : NULL;
}

/* GET /v1/disks/NAME/extents, on a source thread. */
static void
extents_work(struct sjob *j)
{
	struct export_disk *d = j->d;
	struct ferry_extents m;
	char *text;

	export_look(d, NULL, 0, NULL);
	if (j->rt.fresh)
		ferry_usedmap_since(d->src, ferry_now());
	if (zeros_map(d, &m) < 0) {
		answer_refuse(&j->a, 500, "Internal Server Error",
			      "extent map of %s failed", d->name);
		return;
	}
	text = ferry_extents_to_json(&m);
	ferry_extents_free(&m);
	j->a.body = evbuffer_new();
	if (!text || !j->a.body) {
		free(text);
		answer_refuse(&j->a, 503, "Service Unavailable",
			      "out of memory");
		return;
	}
	evbuffer_add(j->a.body, text, strlen(text));
	evbuffer_add(j->a.body, "\n", 1);
	free(text);
	j->a.code = 200;
	j->a.reason = "OK";
	answer_header(&j->a, "Content-Type", "application/json");
}

/* GET /v1/disks/NAME/digests, on a source thread. */
static void
digests_work(struct sjob *j)
{
	struct export_disk *d = j->d;
	uint64_t size, nchunks;
	uint64_t chunk = j->rt.chunk, first = j->rt.first, count = j->rt.count;
	struct ferry_digest *dg = NULL;
	json_t *arr;

	export_look(d, NULL, 0, &size);
	nchunks = (size + chunk - 1) / chunk;
	if (first >= nchunks || count > nchunks - first) {
		answer_refuse(&j->a, 416, "Range Not Satisfiable", "digests: "
			      "chunks %" PRIu64 "+%" PRIu64 " outside disk %s "
			      "of %" PRIu64 " chunks", first, count, d->name,
			      nchunks);
		return;
	}
	dg = calloc((size_t)count, sizeof *dg);
	arr = json_array();
	if (!dg || !arr) {
		json_decref(arr);
		answer_refuse(&j->a, 503, "Service Unavailable",
			      "out of memory");
		goto out;
	}
	if (ferry_source_digests(d->src, 0, chunk, first, (size_t)count,
				 dg) < 0) {
		json_decref(arr);
		answer_refuse(&j->a, 500, "Internal Server Error", "reading "
			      "disk %s for digests failed", d->name);
		goto out;
	}
	for (uint64_t i = 0; i < count; i++) {
		char hex[33];

		ferry_digest_hex(&dg[i], hex);
		json_array_append_new(arr, json_string(hex));
	}
	j->a.json = json_pack("{sssIsIso}", "algorithm", FERRY_DIGEST_NAME,
			      "chunk", (json_int_t)chunk,
			      "first", (json_int_t)first, "digests", arr);
out:
	free(dg);
}

static void
sjob_work(struct pool_job *pj)
{
	struct sjob *j = (struct sjob *)pj;

	switch (j->rt.kind) {
	case ROUTE_DATA: data_work(j); break;
	case ROUTE_LIST: list_work(j); break;
	case ROUTE_EXTENTS: extents_work(j); break;
	case ROUTE_DIGESTS: digests_work(j); break;
	case ROUTE_INFO: j->a.json = info_json(j->ex); break;
	default: answer_refuse(&j->a, 404, "Not Found", "no such endpoint");
	}
}

/* Back on the loop: send what the source thread answered. A request
 * whose connection was lost meanwhile is detached from it, and sending
 * frees it. */
static void
sjob_done(struct pool_job *pj)
{
	struct sjob *j = (struct sjob *)pj;
	struct evhttp_request *req = j->req;
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct answer *a = &j->a;
	struct stream *st = a->st;

	for (size_t i = 0; i < a->nhdrs; i++)
		evhttp_add_header(out, a->hdrs[i].name, a->hdrs[i].value);
	if (a->why[0]) {
		refuse(req, a->code, a->reason, "%s", a->why);
	} else if (j->rt.kind != ROUTE_DATA && j->rt.kind != ROUTE_EXTENTS) {
		send_json(req, a->json);
		a->json = NULL;
	} else if (!st) {
		evhttp_send_reply(req, a->code, a->reason, a->body);
	} else if (!(st->evcon = evhttp_request_get_connection(req))) {
		evhttp_send_reply(req, a->code, a->reason, NULL);	/* frees */
	} else {
		a->st = NULL;
		st->req = req;
		peer_of(req, st->peer, sizeof st->peer);
		evhttp_send_reply_start(req, a->code, a->reason);
		evhttp_connection_set_closecb(st->evcon, stream_closed, st);
		stream_next(st->evcon, st);
	}
	sjob_free(j);
}

static char *
dup_header(struct evkeyvalq *in, const char *name)
{
	const char *v = evhttp_find_header(in, name);

	return v ? strdup(v) : NULL;
}

/* Hand @req (routed to @rt, disk @d) to a source thread. */
static void
serve_source(struct evhttp_request *req, struct exporter *ex,
	     struct export_disk *d, const struct route *rt)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct sjob *j = calloc(1, sizeof *j);
	bool fail = !j || !evcon;

	if (j) {
		j->pj.work = sjob_work;
		j->pj.done = sjob_done;
		j->req = req;
		j->ex = ex;
		j->d = d;
		j->rt = *rt;
	}
	if (!fail && rt->kind == ROUTE_DATA) {
		j->head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
		j->zstd = !j->head && ex->zstd_level != 0 &&
			  ferry_accepts_coding(evhttp_find_header(
				  in, "Accept-Encoding"), "zstd");
		j->range = dup_header(in, "Range");
		j->match = dup_header(in, "If-Match");
		j->digests = dup_header(in, "Ferry-Digests");
		fail = (evhttp_find_header(in, "Range") && !j->range) ||
		       (evhttp_find_header(in, "If-Match") && !j->match) ||
		       (evhttp_find_header(in, "Ferry-Digests") &&
			!j->digests);
	}
	if (fail || pool_submit(ex->pool, evhttp_connection_get_base(evcon),
				&j->pj) < 0) {
		if (j)
			sjob_free(j);
		refuse(req, 503, "Service Unavailable", "out of memory, or "
		       "shutting down");
	}
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
	if (rt.kind == ROUTE_METRICS) {
		serve_metrics(req, ex);
		return;
	}
	if (rt.kind == ROUTE_LIST || rt.kind == ROUTE_INFO) {
		serve_source(req, ex, NULL, &rt);
		return;
	}
	d = find_disk(ex, rt.name);
	if (!d) {
		refuse(req, 404, "Not Found", "no such disk");
		return;
	}
	if (rt.kind == ROUTE_DATA)
		d->requests++;
	serve_source(req, ex, d, &rt);
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
