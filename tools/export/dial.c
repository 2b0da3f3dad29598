/* ferry-export --connect: dial out to a transit's listener (ferryfs
 * --listen) and serve its requests on the connections dialled.
 *
 * Each connection: TCP (through an HTTP CONNECT proxy if one is set), TLS
 * as the client, the transit's key checked against the pin, the hello line
 * with the token and the pin of this exporter's own key
 * (common/reverse.h), the transit's OK. That TLS ends there, unclosed. The
 * connection idles until the transit's first bytes: the TLS handshake of
 * its curl. Then it is paired with a connection to this exporter's own
 * HTTPS server on a private Unix socket, and the relay splices the bytes
 * both ways until either end closes. That server asks the transit's curl
 * for a certificate with the transit's pinned key; curl pins this
 * exporter's key from the hello. A pool of idle connections is kept for the
 * transit to take; one taken is replaced at once.
 *
 * When dialling fails the dialler waits (0.2 s doubling to 30 s, each wait
 * jittered by +-50%) and tries again, forever; a log line marks each change
 * between connected and not. A wrong pin and a refused token are not
 * retried: the exporter stops with the reason.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/log.h"
#include "common/relay.h"
#include "common/reverse.h"
#include "common/tls.h"
#include "common/util.h"
#include "tools/export/export.h"

#define DIAL_TIMEOUT 15.0	/* connect, proxy, handshake, hello */
#define BACKOFF_FIRST 0.2
#define BACKOFF_MAX 30.0

enum link_state { LINK_NEW, LINK_UP, LINK_DOWN };

struct conn {
	struct dialer *dl;
	int fd;
	/* Once taken: relayed to the local server on @plain by event-loop
	 * thread @k, on its events; listed in dl->relays. */
	int plain;
	unsigned k;
	struct ferry_relay r;
	struct event *ev_fd, *ev_plain;
	struct conn *prev, *next;
};

/* Connect to @host:@port by @deadline. @return the socket (non-blocking)
 * or -errno, with the reason in @why. */
static int
tcp_connect(const char *host, unsigned port, double deadline, char *why,
	    size_t whylen)
{
	struct addrinfo *res, *ai;
	char ps[16];
	int fd = -1, r, err = ECONNREFUSED;

	snprintf(ps, sizeof ps, "%u", port);
	r = export_resolve(host, ps, false, &res, why, whylen);
	if (r < 0)
		return r == -EINVAL ? -EHOSTUNREACH : r;
	for (ai = res; ai; ai = ai->ai_next) {
		struct pollfd p;
		socklen_t sl = sizeof err;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
			    SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		err = errno;
		if (err == EINPROGRESS) {
			double left = deadline - ferry_now();

			p = (struct pollfd){ .fd = fd, .events = POLLOUT };
			if (left > 0 &&
			    poll(&p, 1, (int)(left * 1000) + 1) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
					&sl) == 0 && err == 0)
				break;
			if (left <= 0 || p.revents == 0)
				err = ETIMEDOUT;
		}
		close(fd);
		fd = -1;
	}
	export_freeaddrinfo(res);
	if (fd < 0) {
		snprintf(why, whylen, "connect to %s:%u: %s", host, port,
			 strerror(err));
		return -err;
	}
	ferry_keepalive(fd);
	return fd;
}

/* Ask the proxy on @fd for a tunnel to the transit. @return 0 or -errno. */
static int
proxy_connect(struct dialer *dl, int fd, double deadline, char *why,
	      size_t whylen)
{
	char req[1024], buf[16384];
	size_t n = 0, off = 0, head;
	int len, code, r;

	len = snprintf(req, sizeof req, "CONNECT %s:%u HTTP/1.1\r\n"
		       "Host: %s:%u\r\n%s%s%s"
		       "User-Agent: ferry-export/" FERRY_VERSION "\r\n\r\n",
		       dl->cs.host, dl->cs.port, dl->cs.host, dl->cs.port,
		       dl->proxy_auth[0] ? "Proxy-Authorization: Basic " : "",
		       dl->proxy_auth, dl->proxy_auth[0] ? "\r\n" : "");
	while (off < (size_t)len) {
		ssize_t w = write(fd, req + off, (size_t)len - off);
		struct pollfd p = { .fd = fd, .events = POLLOUT };

		if (w > 0) {
			off += (size_t)w;
		} else if (w < 0 && errno == EAGAIN &&
			   poll(&p, 1, 1000) >= 0 && ferry_now() < deadline) {
			continue;
		} else {
			snprintf(why, whylen, "proxy %s:%u: cannot send "
				 "CONNECT", dl->proxy_host, dl->proxy_port);
			return -EIO;
		}
	}
	/* Nothing follows the reply's head until our TLS hello, so reading
	 * in blocks takes no byte of the tunnel. */
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		double left = deadline - ferry_now();
		ssize_t got;

		r = ferry_proxy_reply_parse(buf, n, &code, &head);
		if (r != -EAGAIN)
			break;
		if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0) {
			snprintf(why, whylen, "proxy %s:%u: no reply to "
				 "CONNECT", dl->proxy_host, dl->proxy_port);
			return -ETIMEDOUT;
		}
		got = read(fd, buf + n, sizeof buf - n);
		if (got <= 0 && !(got < 0 && errno == EAGAIN)) {
			snprintf(why, whylen, "proxy %s:%u closed the "
				 "connection", dl->proxy_host, dl->proxy_port);
			return -EPIPE;
		}
		if (got > 0)
			n += (size_t)got;
	}
	if (r < 0) {
		snprintf(why, whylen, "proxy %s:%u: not an HTTP reply",
			 dl->proxy_host, dl->proxy_port);
		return -EPROTO;
	}
	if (code != 200) {
		snprintf(why, whylen, "proxy %s:%u refused the tunnel to "
			 "%s:%u: HTTP %d", dl->proxy_host, dl->proxy_port,
			 dl->cs.host, dl->cs.port, code);
		return -ECONNREFUSED;
	}
	if (head != n) {
		snprintf(why, whylen, "proxy %s:%u sent bytes after its reply",
			 dl->proxy_host, dl->proxy_port);
		return -EPROTO;
	}
	return 0;
}

/* Dial one connection, up to the transit's OK. @return 0 with *@out set,
 * -EPERM for a refusal not to retry (said in @why), other -errno to retry. */
static int
dial_one(struct dialer *dl, struct conn **out, char *why, size_t whylen)
{
	double deadline = ferry_now() + DIAL_TIMEOUT;
	char line[FERRY_HELLO_MAX], pin[128], text[256];
	struct conn *c = NULL;
	SSL *ssl = NULL;
	bool ok;
	int fd, r, n;

	fd = dl->proxy_host[0] ?
	     tcp_connect(dl->proxy_host, dl->proxy_port, deadline, why,
			 whylen) :
	     tcp_connect(dl->cs.host, dl->cs.port, deadline, why, whylen);
	if (fd < 0)
		return fd;
	if (dl->proxy_host[0] &&
	    (r = proxy_connect(dl, fd, deadline, why, whylen)) < 0)
		goto fail;
	ssl = SSL_new(dl->ctx);
	if (!ssl || !SSL_set_fd(ssl, fd)) {
		snprintf(why, whylen, "out of memory");
		r = -ENOMEM;
		goto fail;
	}
	SSL_set_connect_state(ssl);
	r = ferry_tls_handshake(ssl, fd, deadline, why, whylen);
	if (r < 0)
		goto fail;
	if (ferry_tls_peer_pin(ssl, pin) < 0 ||
	    !ferry_tls_pin_equal(pin, dl->cs.pin)) {
		snprintf(why, whylen, "%s:%u is not the transit: its key is "
			 "%s, the connection string pins %s", dl->cs.host,
			 dl->cs.port, pin, dl->cs.pin);
		r = -EPERM;
		goto fail;
	}
	n = ferry_hello_format(&dl->hello, line, sizeof line);
	if (n < 0 || ferry_tls_write_all(ssl, fd, line, (size_t)n,
					 deadline) < 0) {
		snprintf(why, whylen, "%s:%u: cannot send the hello",
			 dl->cs.host, dl->cs.port);
		r = -EPIPE;
		goto fail;
	}
	n = ferry_tls_read_line(ssl, fd, line, sizeof line, deadline);
	if (n < 0 || ferry_hello_reply_parse(line, (size_t)n, &ok, text,
					     sizeof text) < 0) {
		snprintf(why, whylen, "%s:%u: %s", dl->cs.host, dl->cs.port,
			 n == -ETIMEDOUT ? "no answer to the hello" :
			 n < 0 ? "closed after the hello" :
			 "a malformed answer to the hello");
		r = n == -ETIMEDOUT ? -ETIMEDOUT : -EPROTO;
		goto fail;
	}
	if (!ok) {
		snprintf(why, whylen, "the transit %s:%u refused this source: "
			 "%s", dl->cs.host, dl->cs.port, text);
		/* "busy": another process of the same name is connected; it
		 * may be one that died and whose connections linger. */
		r = strncmp(text, "busy", 4) == 0 ? -EBUSY : -EPERM;
		goto fail;
	}
	/* The hello's TLS ends here: nothing may be left in it. */
	if (SSL_has_pending(ssl)) {
		snprintf(why, whylen, "%s:%u: bytes after its OK", dl->cs.host,
			 dl->cs.port);
		r = -EPROTO;
		goto fail;
	}
	snprintf(dl->dir, sizeof dl->dir, "%s", text);
	c = calloc(1, sizeof *c);
	if (!c) {
		r = -ENOMEM;
		goto fail;
	}
	SSL_free(ssl);		/* its socket BIO leaves @fd open */
	c->dl = dl;
	c->fd = fd;
	*out = c;
	return 0;
fail:
	SSL_free(ssl);
	close(fd);
	return r;
}

static void
conn_end(struct conn *c, bool was_idle)
{
	struct dialer *dl = c->dl;

	close(c->fd);
	pthread_mutex_lock(&dl->lock);
	if (was_idle)
		dl->idle--;
	dl->total--;
	pthread_cond_broadcast(&dl->cond);
	pthread_mutex_unlock(&dl->lock);
	free(c);
}

/* A relay is over: from its event-loop thread. */
static void
relay_end(struct conn *c)
{
	struct dialer *dl = c->dl;

	event_free(c->ev_fd);
	event_free(c->ev_plain);
	ferry_relay_close(&c->r);
	close(c->plain);
	pthread_mutex_lock(&dl->lock);
	dl->load[c->k]--;
	if (c->prev)
		c->prev->next = c->next;
	else
		dl->relays = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&dl->lock);
	conn_end(c, false);
}

/* Either socket is ready (edge-triggered): move what can move. The relay
 * runs on the loop of the thread that serves its HTTP connection, so the
 * bytes that thread writes are passed on without waking another. */
static void
relay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	short a, b;

	(void)fd;
	(void)what;
	if (ferry_relay_step(&c->r, &a, &b))
		relay_end(c);
}

/* Start relaying @c to event-loop thread @k's local HTTPS socket.
 * @return 0, or -errno (then @c is still the caller's). */
static int
relay_start(struct conn *c, unsigned k)
{
	struct dialer *dl = c->dl;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct event_base *base = dl->bases[k];
	const short ev = EV_READ | EV_WRITE | EV_PERSIST | EV_ET;
	int n;

	n = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "%s-%u",
		     dl->sock_name, k);
	c->k = k;
	c->plain = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			  0);
	if (c->plain < 0)
		return -errno;
	/* A local stream socket connects at once or not at all. */
	if (connect(c->plain, (struct sockaddr *)&sa,
		    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
				(size_t)n)) < 0 ||
	    ferry_relay_init(&c->r, c->plain, c->fd) < 0) {
		int e = -errno;

		close(c->plain);
		return e;
	}
	c->ev_plain = event_new(base, c->plain, ev, relay_cb, c);
	c->ev_fd = event_new(base, c->fd, ev, relay_cb, c);
	if (!c->ev_plain || !c->ev_fd) {
		if (c->ev_plain)
			event_free(c->ev_plain);
		if (c->ev_fd)
			event_free(c->ev_fd);
		ferry_relay_close(&c->r);
		close(c->plain);
		return -ENOMEM;
	}
	pthread_mutex_lock(&dl->lock);
	c->prev = NULL;
	c->next = dl->relays;
	if (dl->relays)
		dl->relays->prev = c;
	dl->relays = c;
	/* Stopping (dial_stop has shut down the relays listed before): the
	 * step below ends this one too. */
	if (dl->stop)
		shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_unlock(&dl->lock);
	if (event_add(c->ev_plain, NULL) < 0 || event_add(c->ev_fd, NULL) < 0)
		shutdown(c->fd, SHUT_RDWR);	/* the step below ends it */
	/* The transit's first bytes are there already: the first step. */
	event_active(c->ev_fd, EV_READ, 0);
	return 0;
}

/* A connection: idle until the transit's first bytes, then relayed to the
 * local HTTP server by an event-loop thread. */
static void *
conn_main(void *arg)
{
	struct conn *c = arg;
	struct dialer *dl = c->dl;
	unsigned k;
	char b;
	int r;

	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };

		if (dl->stop) {
			conn_end(c, true);
			return NULL;
		}
		if (poll(&p, 1, 1000) > 0)
			break;
	}
	if (recv(c->fd, &b, 1, MSG_PEEK) <= 0) {
		/* The transit closed it (it stopped, or pruned it). */
		conn_end(c, true);
		return NULL;
	}
	/* To the event-loop thread with the fewest connections now. */
	pthread_mutex_lock(&dl->lock);
	dl->idle--;
	dl->taken++;
	k = 0;
	for (unsigned i = 1; i < dl->nsocks; i++)
		if (dl->load[i] < dl->load[k])
			k = i;
	dl->load[k]++;
	pthread_cond_broadcast(&dl->cond);	/* dial its replacement */
	pthread_mutex_unlock(&dl->lock);
	r = relay_start(c, k);
	if (r < 0) {
		errno = -r;
		ferry_error("the local HTTPS socket: %m");
		pthread_mutex_lock(&dl->lock);
		dl->load[k]--;
		pthread_mutex_unlock(&dl->lock);
		conn_end(c, false);
	}
	return NULL;
}

static void
link_state(struct dialer *dl, enum link_state s, const char *why)
{
	if (dl->state == (int)s)
		return;
	dl->state = (int)s;
	if (s == LINK_UP)
		ferry_info("connected to the transit %s:%u as %s", dl->cs.host,
			   dl->cs.port, dl->dir);
	else
		ferry_error("%s; retrying", why);
}

static void *
dial_main(void *arg)
{
	struct dialer *dl = arg;
	double backoff = BACKOFF_FIRST;

	for (;;) {
		struct conn *c;
		char why[512];
		pthread_attr_t attr;
		pthread_t tid;
		int r;

		pthread_mutex_lock(&dl->lock);
		while (!dl->stop && (dl->idle >= dl->pool ||
				     dl->total >= dl->max))
			pthread_cond_wait(&dl->cond, &dl->lock);
		pthread_mutex_unlock(&dl->lock);
		if (dl->stop)
			break;
		r = dial_one(dl, &c, why, sizeof why);
		if (r == -EPERM) {
			ferry_error("%s", why);
			dl->failed = true;
			kill(getpid(), SIGTERM);	/* main() ends */
			break;
		}
		if (r < 0) {
			unsigned char j;
			double wait;

			link_state(dl, LINK_DOWN, why);
			RAND_bytes(&j, 1);
			wait = backoff * (0.5 + j / 255.0);
			backoff = FERRY_MIN(backoff * 2, BACKOFF_MAX);
			ferry_debug("%s; next try in %.1f s", why, wait);
			pthread_mutex_lock(&dl->lock);
			if (!dl->stop) {
				struct timespec ts;

				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_sec += (time_t)wait;
				ts.tv_nsec += (long)((wait - (double)(time_t)wait)
						     * 1e9);
				if (ts.tv_nsec >= 1000000000L) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000L;
				}
				pthread_cond_timedwait(&dl->cond, &dl->lock,
						       &ts);
			}
			pthread_mutex_unlock(&dl->lock);
			continue;
		}
		backoff = BACKOFF_FIRST;
		link_state(dl, LINK_UP, NULL);
		pthread_mutex_lock(&dl->lock);
		dl->idle++;
		dl->total++;
		pthread_mutex_unlock(&dl->lock);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&tid, &attr, conn_main, c) != 0)
			conn_end(c, true);
		pthread_attr_destroy(&attr);
	}
	return NULL;
}

/* "http://[USER:PASS@]HOST:PORT[/]" or "HOST:PORT" into @dl. */
static int
parse_proxy(struct dialer *dl, const char *url)
{
	const char *s = url, *at, *colon, *end;
	char hp[300];

	if (strncmp(s, "http://", 7) == 0)
		s += 7;
	else if (strstr(s, "://")) {
		ferry_error("proxy %s: only http:// proxies (HTTP CONNECT)",
			    url);
		return -EINVAL;
	}
	end = s + strcspn(s, "/");
	at = memchr(s, '@', (size_t)(end - s));
	if (at) {
		unsigned char b64[400];
		size_t n = (size_t)(at - s);

		if (n > 280)
			return -EINVAL;
		EVP_EncodeBlock(b64, (const unsigned char *)s, (int)n);
		snprintf(dl->proxy_auth, sizeof dl->proxy_auth, "%s", b64);
		s = at + 1;
	}
	snprintf(hp, sizeof hp, "%.*s", (int)(end - s), s);
	colon = strrchr(hp, ':');
	if (!colon || colon == hp || !colon[1] ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
	    atoi(colon + 1) < 1 || atoi(colon + 1) > 65535) {
		ferry_error("proxy %s: expected http://HOST:PORT", url);
		return -EINVAL;
	}
	snprintf(dl->proxy_host, sizeof dl->proxy_host, "%.*s",
		 (int)(colon - hp), hp[0] == '[' ? hp + 1 : hp);
	if (hp[0] == '[' && strchr(dl->proxy_host, ']'))
		*strchr(dl->proxy_host, ']') = '\0';
	dl->proxy_port = (unsigned)atoi(colon + 1);
	return 0;
}

int
dial_start(struct dialer *dl, const char *url, const char *proxy,
	   const char *name, const char *host_id, const char *pin,
	   const char *sock_name, struct event_base **bases, unsigned nsocks)
{
	char why[200];
	unsigned char sess[16];

	if (ferry_connstr_parse(url, &dl->cs, why, sizeof why) < 0) {
		ferry_error("--connect: %s", why);
		return -EINVAL;
	}
	if (!proxy) {
		proxy = getenv("https_proxy");
		if (!proxy || !proxy[0])
			proxy = getenv("HTTPS_PROXY");
	}
	if (proxy && proxy[0] && strcmp(proxy, "none") != 0 &&
	    parse_proxy(dl, proxy) < 0)
		return -EINVAL;
	snprintf(dl->hello.token, sizeof dl->hello.token, "%s", dl->cs.token);
	snprintf(dl->hello.name, sizeof dl->hello.name, "%s", name);
	snprintf(dl->hello.host_id, sizeof dl->hello.host_id, "%s", host_id);
	snprintf(dl->hello.pin, sizeof dl->hello.pin, "%s", pin);
	if (RAND_bytes(sess, sizeof sess) != 1)
		return -EIO;
	ferry_hex(sess, sizeof sess, dl->hello.session);
	snprintf(dl->sock_name, sizeof dl->sock_name, "%s", sock_name);
	dl->nsocks = nsocks < 1 ? 1 : nsocks > 64 ? 64 : nsocks;
	for (unsigned i = 0; i < dl->nsocks; i++)
		dl->bases[i] = bases[i];
	if (ferry_tls_client_ctx(&dl->ctx) < 0)
		return -ENOMEM;
	if (!dl->pool)
		dl->pool = 4;
	dl->max = 64;
	pthread_mutex_init(&dl->lock, NULL);
	pthread_cond_init(&dl->cond, NULL);
	if (dl->proxy_host[0])
		ferry_info("dialling the transit %s:%u as %s through the proxy "
			   "%s:%u", dl->cs.host, dl->cs.port, name,
			   dl->proxy_host, dl->proxy_port);
	else
		ferry_info("dialling the transit %s:%u as %s", dl->cs.host,
			   dl->cs.port, name);
	if (pthread_create(&dl->tid, NULL, dial_main, dl) != 0)
		return -EAGAIN;
	dl->started = true;
	return 0;
}

void
dial_stop(struct dialer *dl)
{
	if (!dl->started)
		return;
	pthread_mutex_lock(&dl->lock);
	dl->stop = true;
	pthread_cond_broadcast(&dl->cond);
	pthread_mutex_unlock(&dl->lock);
	pthread_join(dl->tid, NULL);
	/* Idle connections see @stop within a second and end; relays end
	 * when their connection is shut down. */
	pthread_mutex_lock(&dl->lock);
	for (struct conn *c = dl->relays; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
	for (int i = 0; i < 30 && dl->total > 0; i++) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&dl->cond, &dl->lock, &ts);
	}
	pthread_mutex_unlock(&dl->lock);
	SSL_CTX_free(dl->ctx);
}
