/* ferry — the receive window of a background connection.
 *
 * Hydration yields to readers by not reading its socket (fs/fetch.c). But
 * the source keeps sending until the window it was last given is full, and
 * the kernel's autotuning grows a busy connection's receive buffer to
 * megabytes: behind a slow link's queue, a demand read then waits for a
 * paused hydration's data (tens of ms at 200 Mbit/s), and even while
 * hydration runs, a sender that fills the bottleneck's queue puts every
 * reader's reply behind it.
 *
 * So a background connection's receive buffer is sized from what it
 * measures, as a delay-based scavenger would: twice the bytes it carries
 * in its smallest round trip (its rate times its minimum RTT), and at
 * least FERRY_RWND_QUEUE of its rate and FERRY_RWND_FLOOR. That is enough
 * for the link's whole rate, as the rate doubles each sample while the
 * queue is empty, and little more waits in the link's queue. Samples in
 * which the transfer was held (paused for readers, or by the bandwidth
 * cap) for more than a quarter of the time are left out. The buffer only
 * grows: shrinking it under the data it holds makes the kernel drop what
 * the sender was allowed to send.
 *
 * Setting a buffer ends the kernel's autotuning for that socket, and an
 * unprivileged process cannot set more than net.core.rmem_max (208 KiB on
 * many systems). So a connection is taken over only once its measured
 * window fits under what can be set; one that later needs more than that
 * is given up (the caller drops it, and its next connection is left to
 * the kernel).
 *
 * Pure: no sockets here; backends/http.c applies the sizes.
 */
#ifndef FERRY_RWND_H
#define FERRY_RWND_H

#include <stdbool.h>
#include <stdint.h>

/* The smallest buffer set. On a LAN or a veth the RTT term is nothing,
 * and this is what covers the receiver's own delays (a busy 2-core transit
 * host). Chosen by bench/randread.sh's hydrating row at 200 Mbit/s and
 * bench/link.sh at 1 Gbit/s: with 128 KiB two medians of four took 1.71 s
 * at 1 Gbit/s (1.39-1.53 s otherwise); 512 KiB gave readers 3x the idle
 * p99 at 200 Mbit/s, 1 MiB 11x. */
#define FERRY_RWND_FLOOR (256u << 10)
#define FERRY_RWND_SAMPLE 0.02		/* seconds: the shortest sample */
/* Seconds of the connection's rate a buffer holds at least. On a fast
 * link the floor alone would be a fraction of a millisecond of data, and
 * the receiver would wake for every few packets. */
#define FERRY_RWND_QUEUE 0.002

struct ferry_rwnd {
	double start;		/* this sample's start, seconds */
	double held;		/* of it, seconds the transfer was held */
	uint64_t bytes;		/* received in it */
	uint64_t set;		/* buffer set on the socket, 0: the kernel's */
	bool off;		/* not managed */
};

enum ferry_rwnd_act {
	FERRY_RWND_KEEP,	/* nothing to do */
	FERRY_RWND_SET,		/* set the buffer to *size */
	FERRY_RWND_GIVE_UP,	/* it needs more than can be set: drop the
				 * connection once its transfer is done */
};

/*! ferry_rwnd_begin() : a transfer starts at @now on the connection;
 * what was set stays. */
void ferry_rwnd_begin(struct ferry_rwnd *w, double now);

/*! ferry_rwnd_note() : @bytes arrived, after the transfer was held for
 * @held seconds. */
void ferry_rwnd_note(struct ferry_rwnd *w, uint64_t bytes, double held);

/*! ferry_rwnd_due() : is a sample complete at @now, for a connection
 * whose smallest RTT is @min_rtt seconds (0: not known)? */
bool ferry_rwnd_due(const struct ferry_rwnd *w, double now, double min_rtt);

/*! ferry_rwnd_next() : end the sample at @now; with the connection's
 * smallest RTT @min_rtt (seconds, > 0) and the largest buffer that can be
 * set @ceiling (bytes, 0: no limit), what to do. After FERRY_RWND_SET,
 * the caller sets *@size and reports what the socket took with
 * ferry_rwnd_took(). */
enum ferry_rwnd_act ferry_rwnd_next(struct ferry_rwnd *w, double now,
				    double min_rtt, uint64_t ceiling,
				    uint64_t *size);

/*! ferry_rwnd_took() : the buffer set was @size. */
void ferry_rwnd_took(struct ferry_rwnd *w, uint64_t size);

#endif
