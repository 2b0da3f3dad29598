/* Unit tests: the byte relay between two sockets (common/relay.c), on
 * socket pairs: every byte both ways, in order, until one side closes;
 * a stop flag ends it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/relay.h"
#include "tests/unit/check.h"

#define UP (3u << 20)		/* client to server */
#define DOWN (700u << 10)	/* server to client */

struct pump {
	int a, b;
	atomic_bool *stop;
	unsigned long long moved;
};

static void *
pump_main(void *arg)
{
	struct pump *p = arg;

	p->moved = ferry_relay_pump(p->a, p->b, p->stop);
	return NULL;
}

static void
fill(uint8_t *buf, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (uint8_t)(seed >> 16);
	}
}

/* Write all of @out to @wfd while reading @inlen bytes from @rfd into @in
 * (both blocking sockets; poll keeps either from filling). */
static int
exchange(int wfd, const uint8_t *out, size_t outlen, int rfd, uint8_t *in,
	 size_t inlen)
{
	size_t w = 0, r = 0;

	while (w < outlen || r < inlen) {
		struct pollfd p[2] = {
			{ .fd = wfd, .events = w < outlen ? POLLOUT : 0 },
			{ .fd = rfd, .events = r < inlen ? POLLIN : 0 },
		};
		ssize_t n;

		if (poll(p, 2, 5000) <= 0)
			return -ETIMEDOUT;
		if (p[0].revents & POLLOUT) {
			n = send(wfd, out + w, outlen - w, MSG_DONTWAIT);
			if (n > 0)
				w += (size_t)n;
		}
		if (p[1].revents & POLLIN) {
			n = recv(rfd, in + r, inlen - r, MSG_DONTWAIT);
			if (n == 0)
				return -EPIPE;
			if (n > 0)
				r += (size_t)n;
		}
	}
	return 0;
}

/* client <-> [a relay b] <-> server */
static void
test_both_ways(void)
{
	int c[2], s[2];
	uint8_t *up = malloc(UP), *down = malloc(DOWN);
	uint8_t *got_up = malloc(UP), *got_down = malloc(DOWN);
	struct pump p;
	pthread_t t;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, c) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
	fill(up, UP, 1);
	fill(down, DOWN, 2);
	p = (struct pump){ .a = c[1], .b = s[0] };
	fcntl(p.a, F_SETFL, O_NONBLOCK);
	fcntl(p.b, F_SETFL, O_NONBLOCK);
	CHECK(pthread_create(&t, NULL, pump_main, &p) == 0);
	/* The client sends while the server answers. */
	CHECK(exchange(c[0], up, UP, s[1], got_up, UP) == 0);
	CHECK(memcmp(up, got_up, UP) == 0);
	CHECK(exchange(s[1], down, DOWN, c[0], got_down, DOWN) == 0);
	CHECK(memcmp(down, got_down, DOWN) == 0);
	/* The server closes: the relay ends, all it sent delivered. */
	close(s[1]);
	pthread_join(t, NULL);
	CHECK_EQ_U64(p.moved, DOWN);
	close(c[0]);
	close(c[1]);
	close(s[0]);
	free(up);
	free(down);
	free(got_up);
	free(got_down);
}

/* Bytes a side sent just before closing still arrive. */
static void
test_close_delivers(void)
{
	int c[2], s[2];
	uint8_t msg[5000], got[5000];
	struct pump p;
	pthread_t t;
	size_t r = 0;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, c) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
	fill(msg, sizeof msg, 3);
	CHECK(write(s[1], msg, sizeof msg) == (ssize_t)sizeof msg);
	close(s[1]);		/* before the relay even starts */
	p = (struct pump){ .a = c[1], .b = s[0] };
	fcntl(p.a, F_SETFL, O_NONBLOCK);
	fcntl(p.b, F_SETFL, O_NONBLOCK);
	CHECK(pthread_create(&t, NULL, pump_main, &p) == 0);
	pthread_join(t, NULL);
	CHECK_EQ_U64(p.moved, sizeof msg);
	while (r < sizeof got) {
		ssize_t n = recv(c[0], got + r, sizeof got - r, MSG_DONTWAIT);

		if (n <= 0)
			break;
		r += (size_t)n;
	}
	CHECK_EQ_U64(r, sizeof msg);
	CHECK(memcmp(msg, got, sizeof msg) == 0);
	close(c[0]);
	close(c[1]);
	close(s[0]);
}

/* A stop flag ends an idle relay (within its second of polling). */
static void
test_stop(void)
{
	int c[2], s[2];
	atomic_bool stop = false;
	struct pump p;
	pthread_t t;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, c) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
	p = (struct pump){ .a = c[1], .b = s[0], .stop = &stop };
	fcntl(p.a, F_SETFL, O_NONBLOCK);
	fcntl(p.b, F_SETFL, O_NONBLOCK);
	CHECK(pthread_create(&t, NULL, pump_main, &p) == 0);
	stop = true;
	pthread_join(t, NULL);	/* a hang here fails the test by timeout */
	CHECK_EQ_U64(p.moved, 0);
	for (int i = 0; i < 2; i++) {
		close(c[i]);
		close(s[i]);
	}
}

int
main(void)
{
	test_both_ways();
	test_close_delivers();
	test_stop();
	return check_result("unit-relay");
}
