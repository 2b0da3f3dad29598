/* ferry — the sockets of a reverse connection (relay.c).
 *
 * A reverse connection is a TCP connection the exporter dialled. It starts
 * with TLS, the transit the server, for the hello (common/reverse.h); then
 * that TLS is dropped and each end relays the raw bytes to a local peer over
 * a Unix socket: curl (CURLOPT_UNIX_SOCKET_PATH) on the transit, the
 * exporter's own HTTPS server on the source, which do TLS of their own. All
 * sockets here are non-blocking; waits end at an absolute deadline on
 * ferry_now()'s clock.
 */
#ifndef FERRY_RELAY_H
#define FERRY_RELAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/*! ferry_tls_handshake() : finish @ssl's handshake on non-blocking @fd by
 * @deadline. @return 0, -ETIMEDOUT, or -EPROTO (the reason in @why). */
int ferry_tls_handshake(SSL *ssl, int fd, double deadline, char *why,
			size_t whylen);

/*! ferry_tls_read_line() : read one line, newline included, of at most
 * @cap - 1 bytes into @buf (NUL-terminated), no byte beyond it.
 * @return its length, -ETIMEDOUT, -EMSGSIZE, or -EPIPE (closed). */
int ferry_tls_read_line(SSL *ssl, int fd, char *buf, size_t cap,
			double deadline);

/*! ferry_tls_write_all() : @return 0, -ETIMEDOUT or -EPIPE. */
int ferry_tls_write_all(SSL *ssl, int fd, const void *buf, size_t len,
			double deadline);

/*! ferry_fd_readable() : has the peer of @fd sent anything, or closed?
 * Used on idle connections, where the peer sends nothing until used. */
bool ferry_fd_readable(int fd);

/* One direction of a relay: from @in through a pipe to @out. */
struct ferry_flow {
	int in, out;
	int pipe[2];
	size_t held;		/* bytes in the pipe */
	bool eof;		/* @in ended */
};

/* A relay between sockets @a and @b, driven by the caller's loop. */
struct ferry_relay {
	struct ferry_flow ab, ba;
	unsigned long long moved_ab, moved_ba;
};

/*! ferry_relay_init() : a relay between non-blocking sockets @a and @b
 * (both stay the caller's). @return 0 or -errno. */
int ferry_relay_init(struct ferry_relay *r, int a, int b);

/*! ferry_relay_step() : move all that can move now, until each way waits
 * for its input (nothing more to read) or its output (full). @return 1
 * when the relay is over (either side closed, all it sent delivered, or a
 * failure), else 0 with what to wait for in *@ev_a, *@ev_b (POLLIN,
 * POLLOUT). Safe under edge-triggered readiness: it stops only at EAGAIN. */
int ferry_relay_step(struct ferry_relay *r, short *ev_a, short *ev_b);

/*! ferry_relay_close() : its pipes (not the sockets). */
void ferry_relay_close(struct ferry_relay *r);

/*! ferry_relay_pump() : move bytes both ways between sockets @a and @b
 * until either closes or fails, or *@stop is set (checked every second).
 * Both stay open for the caller. @return bytes moved from @b to @a. */
unsigned long long ferry_relay_pump(int a, int b, const atomic_bool *stop);

/*! ferry_set_nonblock() / ferry_keepalive() : socket settings used on
 * both ends (keepalive: probes after 30 s idle, dead after 75 s more). */
struct addrinfo;
/*! ferry_listen_tcp() : a non-blocking, close-on-exec listening socket on
 * the first of @res that binds (SO_REUSEADDR, backlog 1024; TCP_NODELAY
 * with @nodelay, which accepted sockets inherit). Its port in *@bound.
 * @return the socket, or -errno of the last failure (errno set too). */
int ferry_listen_tcp(const struct addrinfo *res, bool nodelay,
		     unsigned *bound);

int ferry_set_nonblock(int fd);
void ferry_keepalive(int fd);

#endif
