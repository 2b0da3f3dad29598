/* ferryfs --listen — the transit's listener for sources that dial in.
 *
 * A connection from a source: TLS with this host as the server (the
 * source checks our key against the pin it was given), then the source's
 * hello line with the token and the pin of its own key (common/reverse.h),
 * checked here, answered "OK DIR" or "NO REASON". That TLS ends there,
 * unclosed, and the connection waits, idle, in its source's pool. Each
 * source has a Unix socket; every connection curl makes to it (the
 * member's http backend) is paired with one idle connection and the relay
 * splices the bytes between them until either closes. Over them curl
 * speaks HTTPS to the exporter's own server: curl pins the key from the
 * hello and shows ours as its client certificate, which the exporter pins.
 * HTTP roles are the reverse of TCP's; each TLS session's roles follow
 * what it protects.
 *
 * Strangers hold little: at most PENDING_MAX connections are in handshake
 * at once (more are closed at accept), and each has hello_timeout for TLS
 * and its hello. A wrong token gets "NO" and a log line (one a second at
 * most).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/connstr.h"
#include "common/log.h"
#include "common/relay.h"
#include "common/tls.h"
#include "common/util.h"
#include "fs/fleet.h"

#define TAKE_WAIT 10.0	/* a curl connection waits this long for one */

/* Log lines a flood repeats: one a second at most, with a count. */
static void __attribute__((format(printf, 1, 2)))
say_limited(const char *fmt, ...)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static double last;
	static unsigned quiet;
	unsigned n = 0;
	bool say;
	char msg[400];
	va_list ap;

	pthread_mutex_lock(&lock);
	say = ferry_now() - last >= 1.0;
	if (say) {
		last = ferry_now();
		n = quiet;
		quiet = 0;
	} else {
		quiet++;
	}
	pthread_mutex_unlock(&lock);
	if (!say)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n)
		ferry_error("%s (and %u more in the last second)", msg, n);
	else
		ferry_error("%s", msg);
}

static void
lconn_free(struct lconn *c)
{
	close(c->fd);
	free(c);
}

/* Close idle connections whose source went away (lock held). */
static void
prune(struct rsource *rs)
{
	for (struct lconn **pp = &rs->idle; *pp;) {
		struct lconn *c = *pp;

		if (ferry_fd_readable(c->fd)) {
			*pp = c->next;
			rs->nidle--;
			lconn_free(c);
		} else {
			pp = &c->next;
		}
	}
	if (rs->nidle + rs->nactive == 0)
		rs->since = 0;
}

unsigned
rsource_live(struct rsource *rs)
{
	unsigned n;

	pthread_mutex_lock(&rs->lock);
	prune(rs);
	n = rs->nidle + rs->nactive;
	pthread_mutex_unlock(&rs->lock);
	return n;
}

/* Take an idle connection of @rs, waiting up to TAKE_WAIT for one.
 * @return it, or NULL. */
static struct lconn *
take(struct rsource *rs)
{
	double deadline = ferry_now() + TAKE_WAIT;
	struct lconn *c = NULL;

	pthread_mutex_lock(&rs->lock);
	for (;;) {
		struct timespec ts;

		prune(rs);
		if (rs->idle) {
			c = rs->idle;
			rs->idle = c->next;
			rs->nidle--;
			rs->nactive++;
			break;
		}
		if (ferry_now() >= deadline)
			break;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&rs->more, &rs->lock, &ts);
	}
	pthread_mutex_unlock(&rs->lock);
	return c;
}

struct pair {
	struct rsource *rs;
	int plain;
};

/* One curl connection: pair it with an idle connection of the source and
 * relay until either closes. None within TAKE_WAIT: close it, and curl
 * retries as for any dropped connection (the member's timeout=). */
static void *
pair_main(void *arg)
{
	struct pair *p = arg;
	struct rsource *rs = p->rs;
	struct lconn *c = take(rs);

	if (c) {
		rs->relayed += ferry_relay_pump(p->plain, c->fd, NULL);
		pthread_mutex_lock(&rs->lock);
		rs->nactive--;
		rs->last_seen = time(NULL);
		if (rs->nidle + rs->nactive == 0)
			rs->since = 0;
		pthread_mutex_unlock(&rs->lock);
		lconn_free(c);
	}
	close(p->plain);
	rs->pairs--;
	free(p);
	return NULL;
}

static void
spawn_detached(void *(*fn)(void *), void *arg, void (*undo)(void *))
{
	pthread_attr_t attr;
	pthread_t tid;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&tid, &attr, fn, arg) != 0)
		undo(arg);
	pthread_attr_destroy(&attr);
}

static void
pair_undo(void *arg)
{
	struct pair *p = arg;

	close(p->plain);
	p->rs->pairs--;
	free(p);
}

static void *
acceptor_main(void *arg)
{
	struct rsource *rs = arg;

	for (;;) {
		int ufd = rs->ufd;	/* closed only once this thread ends */
		struct pollfd pf = { .fd = ufd, .events = POLLIN };
		struct pair *p;
		int fd;

		if (ufd < 0 || (poll(&pf, 1, 1000) < 0 && errno != EINTR))
			break;
		if (!(pf.revents & POLLIN))
			continue;
		fd = accept4(ufd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			continue;
		p = malloc(sizeof *p);
		if (!p) {
			close(fd);
			continue;
		}
		p->rs = rs;
		p->plain = fd;
		rs->pairs++;
		spawn_detached(pair_main, p, pair_undo);
	}
	return NULL;
}

int
rsource_start(struct listener *l, struct rsource *rs)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	(void)l;
	unlink(rs->sock_path);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", rs->sock_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    chmod(rs->sock_path, 0600) < 0 || listen(fd, 128) < 0) {
		ferry_error("%s: %m", rs->sock_path);
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	rs->ufd = fd;
	if (pthread_create(&rs->acceptor, NULL, acceptor_main, rs) != 0) {
		close(fd);
		rs->ufd = -1;
		return -EAGAIN;
	}
	rs->acceptor_started = true;
	return 0;
}

void
rsource_stop(struct rsource *rs)
{
	int fd = rs->ufd;

	rs->ufd = -1;
	if (rs->acceptor_started)
		pthread_join(rs->acceptor, NULL);
	rs->acceptor_started = false;
	if (fd >= 0)
		close(fd);
	unlink(rs->sock_path);
	pthread_mutex_lock(&rs->lock);
	while (rs->idle) {
		struct lconn *c = rs->idle;

		rs->idle = c->next;
		lconn_free(c);
	}
	rs->nidle = 0;
	pthread_mutex_unlock(&rs->lock);
}

struct handshake {
	struct listener *l;
	int fd;
	char peer[80];
};

static void
reply(SSL *ssl, int fd, const char *fmt, const char *arg, double deadline)
{
	char line[300];
	int n = snprintf(line, sizeof line, fmt, arg);

	if (n > 0)
		ferry_tls_write_all(ssl, fd, line, (size_t)n, deadline);
}

/* A new connection: TLS, hello, token; into its source's pool. */
static void *
handshake_main(void *arg)
{
	struct handshake *hs = arg;
	struct listener *l = hs->l;
	double deadline = ferry_now() + l->hello_timeout;
	struct ferry_hello h;
	struct rsource *rs;
	struct lconn *c;
	unsigned char md[32];
	char line[FERRY_HELLO_MAX], why[300];
	SSL *ssl = SSL_new(l->ctx);
	int n;

	if (!ssl || !SSL_set_fd(ssl, hs->fd))
		goto out;
	SSL_set_accept_state(ssl);
	if (ferry_tls_handshake(ssl, hs->fd, deadline, why, sizeof why) < 0) {
		say_limited("%s: %s", hs->peer, why);
		goto out;
	}
	n = ferry_tls_read_line(ssl, hs->fd, line, sizeof line, deadline);
	if (n < 0) {
		say_limited("%s: %s", hs->peer, n == -ETIMEDOUT ?
			    "no hello in time; closed" :
			    n == -EMSGSIZE ? "hello too long; closed" :
			    "closed before its hello");
		goto out;
	}
	if (ferry_hello_parse(line, (size_t)n, &h, why, sizeof why) < 0) {
		say_limited("%s: %s; closed", hs->peer, why);
		reply(ssl, hs->fd, "NO %s\n", why, deadline);
		goto out;
	}
	EVP_Digest(h.token, strlen(h.token), md, NULL, EVP_sha256(), NULL);
	OPENSSL_cleanse(h.token, sizeof h.token);
	if (CRYPTO_memcmp(md, l->token_hash, sizeof md) != 0) {
		say_limited("%s: source %s presented a wrong token; refused",
			    hs->peer, h.name);
		reply(ssl, hs->fd, "NO %s\n", "wrong token", deadline);
		goto out;
	}
	rs = fleet_hello(l->fleet, &h, hs->peer, why, sizeof why);
	if (!rs) {
		say_limited("%s: source %s refused: %s", hs->peer, h.name,
			    why);
		reply(ssl, hs->fd, "NO %s\n", why, deadline);
		goto out;
	}
	c = calloc(1, sizeof *c);
	if (!c)
		goto out;
	/* The answer before the pool: once there, curl's bytes may follow
	 * it at once. Then the hello's TLS is done with; the socket BIO
	 * leaves the descriptor open. */
	reply(ssl, hs->fd, "OK %s\n", rs->dir, deadline);
	if (SSL_has_pending(ssl)) {
		say_limited("%s: bytes after its hello; closed", hs->peer);
		free(c);
		goto out;
	}
	SSL_free(ssl);
	ssl = NULL;
	c->fd = hs->fd;
	pthread_mutex_lock(&rs->lock);
	prune(rs);
	if (rs->nidle + rs->nactive >= SOURCE_CONNS_MAX) {
		pthread_mutex_unlock(&rs->lock);
		free(c);
		goto out;
	}
	c->next = rs->idle;
	rs->idle = c;
	rs->nidle++;
	if (!rs->since)
		rs->since = time(NULL);
	rs->last_seen = time(NULL);
	snprintf(rs->peer, sizeof rs->peer, "%s", hs->peer);
	rs->dials++;
	pthread_cond_broadcast(&rs->more);
	pthread_mutex_unlock(&rs->lock);
	fleet_joined(l->fleet, rs);
	l->pending--;
	free(hs);
	return NULL;
out:
	SSL_free(ssl);
	close(hs->fd);
	l->pending--;
	free(hs);
	return NULL;
}

static void
handshake_undo(void *arg)
{
	struct handshake *hs = arg;

	close(hs->fd);
	hs->l->pending--;
	free(hs);
}

static void
peer_name(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char host[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";

	getnameinfo((const struct sockaddr *)ss, sizeof *ss, host, sizeof host,
		    serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(out, len, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host,
		 serv);
}

static void *
listen_main(void *arg)
{
	struct listener *l = arg;

	while (!l->stop) {
		struct pollfd pf = { .fd = l->fd, .events = POLLIN };
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		struct handshake *hs;
		int fd;

		if (poll(&pf, 1, 1000) <= 0)
			continue;
		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
			     SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			continue;
		if (l->pending >= PENDING_MAX) {
			say_limited("more than %d connections in handshake; "
				    "closing new ones", PENDING_MAX);
			close(fd);
			continue;
		}
		hs = calloc(1, sizeof *hs);
		if (!hs) {
			close(fd);
			continue;
		}
		ferry_keepalive(fd);
		hs->l = l;
		hs->fd = fd;
		peer_name(&ss, hs->peer, sizeof hs->peer);
		l->pending++;
		spawn_detached(handshake_main, hs, handshake_undo);
	}
	return NULL;
}

/* The token kept in @dir/listen.token, made on first use. */
static int
keep_token(const char *dir, char token[256])
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	FILE *f;
	int fd;

	snprintf(path, sizeof path, "%s/listen.token", dir);
	f = fopen(path, "re");
	if (f) {
		bool ok = fgets(token, 256, f) != NULL;

		fclose(f);
		token[strcspn(token, "\n")] = '\0';
		if (ok && strlen(token) >= 16)
			return 0;
		ferry_error("%s: not a token; remove it to make a new one",
			    path);
		return -EINVAL;
	}
	if (ferry_random_token(token) < 0)
		return -EIO;
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || dprintf(fd, "%s\n", token) < 0 || fsync(fd) < 0 ||
	    close(fd) < 0 || rename(tmp, path) < 0) {
		ferry_error("%s: %m", path);
		return -EIO;
	}
	return 0;
}

int
listen_open(struct listener *l, const char *addr, const char *cert,
	    const char *key, const char *dir, const char *advertise,
	    char *url, size_t urllen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV },
			*res;
	struct ferry_connstr cs = { 0 };
	char host[256], port[16], kc[PATH_MAX], kk[PATH_MAX];
	const char *colon = strrchr(addr, ':');
	unsigned bound;
	int fd, r;

	l->fd = -1;
	l->hello_timeout = 10;
	if (!colon || !colon[1] ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
		ferry_error("--listen %s: expected HOST:PORT", addr);
		return -EINVAL;
	}
	snprintf(host, sizeof host, "%.*s", (int)(colon - addr),
		 addr[0] == '[' ? addr + 1 : addr);
	if (addr[0] == '[' && strchr(host, ']'))
		*strchr(host, ']') = '\0';
	snprintf(port, sizeof port, "%s", colon + 1);

	if (!cert) {
		snprintf(kc, sizeof kc, "%s/listen-cert.pem", dir);
		snprintf(kk, sizeof kk, "%s/listen-key.pem", dir);
		if (ferry_tls_keep_files(kc, kk) < 0)
			return -EIO;
		cert = kc;
		key = kk;
	}
	if (!realpath(cert, l->cert_path) || !realpath(key, l->key_path)) {
		ferry_error("%s, %s: %m", cert, key);
		return -EINVAL;
	}
	if (ferry_tls_server_ctx(cert, key, &l->ctx, l->pin) < 0)
		return -EINVAL;
	SSL_CTX_set_mode(l->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (keep_token(dir, l->token) < 0)
		return -EIO;
	EVP_Digest(l->token, strlen(l->token), l->token_hash, NULL,
		   EVP_sha256(), NULL);

	r = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (r) {
		ferry_error("--listen %s: %s", addr, gai_strerror(r));
		return -EINVAL;
	}
	fd = ferry_listen_tcp(res, false, &bound);
	freeaddrinfo(res);
	if (fd < 0) {
		ferry_error("listen on %s: %m", addr);
		return -EADDRINUSE;
	}
	l->fd = fd;
	snprintf(l->addr, sizeof l->addr, "%s%s%s:%u",
		 strchr(host, ':') ? "[" : "", host,
		 strchr(host, ':') ? "]" : "", bound);

	snprintf(cs.token, sizeof cs.token, "%s", l->token);
	snprintf(cs.pin, sizeof cs.pin, "%s", l->pin);
	cs.port = bound;
	if (advertise) {
		const char *c = strrchr(advertise, ':');
		bool has_port = c && !strchr(c, ']') && c[1] &&
				strspn(c + 1, "0123456789") == strlen(c + 1) &&
				(advertise[0] == '[' || !strchr(advertise, ':') ||
				 strchr(advertise, ':') == c);

		snprintf(cs.host, sizeof cs.host, "%.*s",
			 has_port ? (int)(c - advertise) : (int)strlen(advertise),
			 advertise[0] == '[' ? advertise + 1 : advertise);
		if (strchr(cs.host, ']'))
			*strchr(cs.host, ']') = '\0';
		if (has_port)
			cs.port = (unsigned)atoi(c + 1);
	} else if (!host[0] || strcmp(host, "0.0.0.0") == 0 ||
		   strcmp(host, "::") == 0) {
		gethostname(cs.host, sizeof cs.host - 1);
	} else {
		snprintf(cs.host, sizeof cs.host, "%s", host);
	}
	if (ferry_connstr_format(&cs, url, urllen) < 0)
		return -ENOSPC;
	return 0;
}

int
listen_start(struct listener *l)
{
	if (pthread_create(&l->tid, NULL, listen_main, l) != 0)
		return -EAGAIN;
	l->started = true;
	return 0;
}

void
listen_stop(struct listener *l)
{
	l->stop = true;
	if (l->started)
		pthread_join(l->tid, NULL);
	l->started = false;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	/* Handshakes in flight end by their deadline. */
	for (int i = 0; i < 200 && l->pending > 0; i++)
		usleep(50 * 1000);
	SSL_CTX_free(l->ctx);
	l->ctx = NULL;
}
