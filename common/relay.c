/* ferry — the sockets of a reverse connection: TLS with deadlines, and the
 * pump between a TLS connection and a plaintext Unix socket.
 *
 * After the hello the TLS that carried it is dropped, unclosed: the
 * transit's curl and the exporter's HTTPS server speak TLS of their own,
 * end to end, over the same TCP connection. So the pump moves bytes it
 * cannot read, by splice(2) through a pipe each way: no copy through this
 * process, and no second encryption.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "common/log.h"
#include "common/relay.h"
#include "common/util.h"

#define PUMP_PIPE (1u << 20)	/* bytes a pipe holds */

int
ferry_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

void
ferry_keepalive(int fd)
{
	int one = 1, idle = 30, intvl = 15, cnt = 5;

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
	/* Replies end in small records: no waiting for delayed ACKs. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Wait for @events on @fd until @deadline. @return 0 or -ETIMEDOUT. */
static int
wait_fd(int fd, short events, double deadline)
{
	for (;;) {
		double left = deadline - ferry_now();
		struct pollfd p = { .fd = fd, .events = events };
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)(left * 1000) + 1);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

/* After an SSL call returned @ret: wait as it asks. @return 0 to call
 * again, or -errno. */
static int
ssl_wait(SSL *ssl, int fd, int ret, double deadline)
{
	switch (SSL_get_error(ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return wait_fd(fd, POLLIN, deadline);
	case SSL_ERROR_WANT_WRITE:
		return wait_fd(fd, POLLOUT, deadline);
	case SSL_ERROR_ZERO_RETURN:
		return -EPIPE;
	default:
		return -EPROTO;
	}
}

int
ferry_tls_handshake(SSL *ssl, int fd, double deadline, char *why,
		    size_t whylen)
{
	for (;;) {
		int ret = SSL_do_handshake(ssl), r;

		if (ret == 1)
			return 0;
		r = ssl_wait(ssl, fd, ret, deadline);
		if (r == -ETIMEDOUT) {
			snprintf(why, whylen, "TLS handshake timed out");
			return r;
		}
		if (r < 0) {
			unsigned long e = ERR_peek_last_error();
			char buf[200];

			ERR_error_string_n(e, buf, sizeof buf);
			snprintf(why, whylen, "TLS handshake failed: %s",
				 e ? buf : "the peer closed the connection");
			ERR_clear_error();
			return -EPROTO;
		}
	}
}

int
ferry_tls_read_line(SSL *ssl, int fd, char *buf, size_t cap, double deadline)
{
	size_t n = 0;

	while (n + 1 < cap) {
		int ret = SSL_read(ssl, buf + n, 1), r;

		if (ret == 1) {
			if (buf[n++] == '\n') {
				buf[n] = '\0';
				return (int)n;
			}
			continue;
		}
		r = ssl_wait(ssl, fd, ret, deadline);
		if (r == -EPROTO)
			r = -EPIPE;
		if (r < 0) {
			ERR_clear_error();
			return r;
		}
	}
	return -EMSGSIZE;
}

int
ferry_tls_write_all(SSL *ssl, int fd, const void *buf, size_t len,
		    double deadline)
{
	const char *p = buf;

	while (len > 0) {
		int ret = SSL_write(ssl, p, (int)len), r;

		if (ret > 0) {
			p += ret;
			len -= (size_t)ret;
			continue;
		}
		r = ssl_wait(ssl, fd, ret, deadline);
		if (r < 0) {
			ERR_clear_error();
			return r == -ETIMEDOUT ? r : -EPIPE;
		}
	}
	return 0;
}

bool
ferry_fd_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) != 0;
}

/* Move what can move now. @return 1 on progress, 0 on none, -1 when the
 * flow failed (a reset, or @out closed). */
static int
flow_step(struct ferry_flow *f, unsigned long long *moved)
{
	int progress = 0;

	/* Into the pipe only when it is empty: its room is counted in
	 * pages, not bytes, so only then does EAGAIN mean "no data". */
	if (!f->eof && f->held == 0) {
		ssize_t n = splice(f->in, NULL, f->pipe[1], NULL, PUMP_PIPE,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

		if (n > 0) {
			f->held += (size_t)n;
			progress = 1;
		} else if (n == 0) {
			f->eof = true;
			progress = 1;
		} else if (errno != EAGAIN && errno != EINTR) {
			f->eof = true;		/* reset: the end */
			progress = 1;
		}
	}
	while (f->held > 0) {
		ssize_t n = splice(f->pipe[0], NULL, f->out, NULL, f->held,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

		if (n > 0) {
			f->held -= (size_t)n;
			*moved += (unsigned long long)n;
			progress = 1;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			break;
		} else {
			return -1;
		}
	}
	return progress;
}

static int
flow_open(struct ferry_flow *f, int in, int out)
{
	f->in = in;
	f->out = out;
	f->held = 0;
	f->eof = false;
	if (pipe2(f->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	fcntl(f->pipe[1], F_SETPIPE_SZ, (int)PUMP_PIPE);
	return 0;
}

static void
flow_close(struct ferry_flow *f)
{
	close(f->pipe[0]);
	close(f->pipe[1]);
}

int
ferry_relay_init(struct ferry_relay *r, int a, int b)
{
	int e;

	r->moved_ab = r->moved_ba = 0;
	e = flow_open(&r->ab, a, b);
	if (e < 0)
		return e;
	e = flow_open(&r->ba, b, a);
	if (e < 0)
		flow_close(&r->ab);
	return e;
}

void
ferry_relay_close(struct ferry_relay *r)
{
	flow_close(&r->ab);
	flow_close(&r->ba);
}

int
ferry_relay_step(struct ferry_relay *r, short *ev_a, short *ev_b)
{
	for (;;) {
		int r1 = flow_step(&r->ab, &r->moved_ab);
		int r2 = flow_step(&r->ba, &r->moved_ba);

		if (r1 < 0 || r2 < 0)
			return 1;
		/* Either end closed and what it sent is delivered: done (an
		 * HTTP connection is not half-closed). */
		if ((r->ab.eof && r->ab.held == 0) ||
		    (r->ba.eof && r->ba.held == 0))
			return 1;
		if (r1 == 0 && r2 == 0)
			break;
	}
	*ev_a = *ev_b = 0;
	if (!r->ab.eof && r->ab.held == 0)
		*ev_a |= POLLIN;
	if (r->ba.held)
		*ev_a |= POLLOUT;
	if (!r->ba.eof && r->ba.held == 0)
		*ev_b |= POLLIN;
	if (r->ab.held)
		*ev_b |= POLLOUT;
	return 0;
}

unsigned long long
ferry_relay_pump(int a, int b, const atomic_bool *stop)
{
	struct ferry_relay r;
	unsigned long long moved;

	if (ferry_relay_init(&r, a, b) < 0)
		return 0;
	while (!(stop && *stop)) {
		struct pollfd p[2] = { { .fd = a }, { .fd = b } };

		if (ferry_relay_step(&r, &p[0].events, &p[1].events))
			break;
		if (poll(p, 2, 1000) < 0 && errno != EINTR)
			break;
		if ((p[0].revents | p[1].revents) & (POLLERR | POLLNVAL))
			break;
	}
	moved = r.moved_ba;
	ferry_relay_close(&r);
	return moved;
}

int
ferry_listen_tcp(const struct addrinfo *res, bool nodelay, unsigned *bound)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	int fd = -1, one = 1, err = EADDRNOTAVAIL;

	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
			    SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (nodelay)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				   sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 1024) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		errno = err;
		return -err;
	}
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	*bound = ntohs(ss.ss_family == AF_INET6 ?
		       ((struct sockaddr_in6 *)&ss)->sin6_port :
		       ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}
