/* ferry — whether to ask for compression, by measurement.
 *
 * zstd on the wire pays when the link is the narrow part (a WAN, a capped
 * link): fewer bytes travel, and the time to compress and decode hides
 * behind the transfer. On a fast link it costs: the exporter compresses at
 * a few hundred MB/s a core, slower than the link, and on a small transit
 * host both ends' CPUs are what limits the rate. Which case holds depends
 * on the link, the data and the CPUs, and changes during a migration, so
 * the transfer engine measures it: each transfer reports its decoded
 * bytes and seconds under the mode it used, and the mode with the higher
 * data rate is used. The other one is tried again now and then (a probe,
 * a transfer of at most PROBE_BYTES) so that a change is seen: a link
 * that got busy, data that compresses better. Probes are paced by time,
 * about 1/PROBE_EVERY of the transfer time, so that on a slow link where
 * the other mode is ten times slower they still cost little. The rates
 * decay: what the last few seconds of transfer showed counts most. A tie
 * goes to zstd, which saves bytes.
 *
 * Thread-safe: workers call it concurrently.
 */
#ifndef FERRY_ADAPT_H
#define FERRY_ADAPT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Largest transfer made in the mode that is not the better one. */
#define FERRY_ADAPT_PROBE_BYTES (1u << 20)

struct ferry_adapt {
	pthread_mutex_t lock;
	double bytes[2], secs[2];	/* [0] plain, [1] zstd; decayed */
	double since;		/* seconds in the better mode since a probe */
	double probe_secs;	/* what the last probe took */
};

void ferry_adapt_init(struct ferry_adapt *a);
void ferry_adapt_destroy(struct ferry_adapt *a);

/*! ferry_adapt_choose() : whether the next transfer asks for zstd; with
 * *probe set, it is a probe: the caller makes it at most
 * FERRY_ADAPT_PROBE_BYTES long. */
bool ferry_adapt_choose(struct ferry_adapt *a, bool *probe);

/*! ferry_adapt_best() : whether zstd is the better mode now (true until
 * both are known). */
bool ferry_adapt_best(struct ferry_adapt *a);

/*! ferry_adapt_note() : a transfer under mode @zstd (a probe or not) gave
 * @bytes of data in @secs. Transfers too small to tell a rate are not
 * counted. */
void ferry_adapt_note(struct ferry_adapt *a, bool zstd, bool probe,
		      uint64_t bytes, double secs);

/*! ferry_adapt_rate() : the data rate measured for a mode, bytes/s, per
 * transfer; 0 until known. */
double ferry_adapt_rate(struct ferry_adapt *a, bool zstd);

#endif
