/* The background receive window against a simulated link: a connection
 * whose window is W moves min(W / RTT, its share of the link) bytes/s,
 * and the RTT grows with the queue the windows put in the link. */
#include <string.h>

#include "common/rwnd.h"
#include "tests/unit/check.h"

#define MB 1000000.0

/* The rate a window gives on a link of @cap bytes/s and base RTT @rtt,
 * shared by @n connections with the same window: at most the link, and
 * what does not fit in the link's pipe waits in its queue. */
static double
rate_of(double window, double rtt, double cap, int n)
{
	double r = window / rtt;

	return r * n > cap ? cap / n : r;
}

/* @samples samples from the kernel's window (autotuned: the link's share)
 * on, each of @span seconds; the buffer set at the end (0: none). */
static uint64_t
converge(struct ferry_rwnd *w, double rtt, double cap, int n, int samples,
	 uint64_t ceiling, int *sets, int *gave_up)
{
	double now = 100;
	uint64_t size;

	*sets = *gave_up = 0;
	ferry_rwnd_begin(w, now);
	for (int i = 0; i < samples; i++) {
		double r = w->set ? rate_of((double)w->set, rtt, cap, n) : cap / n;
		double span = 4 * rtt < FERRY_RWND_SAMPLE ? FERRY_RWND_SAMPLE : 4 * rtt;

		ferry_rwnd_note(w, (uint64_t)(r * span), 0);
		now += span;
		CHECK(ferry_rwnd_due(w, now, rtt) || w->off);
		switch (ferry_rwnd_next(w, now, rtt, ceiling, &size)) {
		case FERRY_RWND_SET:
			(*sets)++;
			CHECK(size >= FERRY_RWND_FLOOR);
			CHECK(!ceiling || size <= ceiling);
			ferry_rwnd_took(w, size);
			break;
		case FERRY_RWND_GIVE_UP:
			(*gave_up)++;
			break;
		case FERRY_RWND_KEEP:
			break;
		}
	}
	return w->set;
}

int
main(void)
{
	struct ferry_rwnd w = { 0 };
	uint64_t size = 0, set;
	int sets, gave_up;

	/* A sample lasts 4 RTTs, at least FERRY_RWND_SAMPLE. */
	ferry_rwnd_begin(&w, 10);
	CHECK(!ferry_rwnd_due(&w, 10 + FERRY_RWND_SAMPLE / 2, 0.0001));
	CHECK(ferry_rwnd_due(&w, 10 + FERRY_RWND_SAMPLE, 0.0001));
	CHECK(!ferry_rwnd_due(&w, 10.1, 0.05));
	CHECK(ferry_rwnd_due(&w, 10.2, 0.05));

	/* A short RTT (a LAN, a veth): the floor, set once and kept. */
	memset(&w, 0, sizeof w);
	set = converge(&w, 20e-6, 25 * MB, 2, 50, 0, &sets, &gave_up);
	CHECK_EQ_U64(set, FERRY_RWND_FLOOR);
	CHECK(sets == 1 && gave_up == 0);

	/* A WAN, 1 Gbit/s and 40 ms: from the kernel's window, the buffer
	 * settles at about twice the connection's share of the pipe, and
	 * gives the link's whole rate. */
	memset(&w, 0, sizeof w);
	set = converge(&w, 0.04, 125 * MB, 2, 200, 0, &sets, &gave_up);
	CHECK(set >= 2 * 62.5 * MB * 0.04 * 7 / 8 &&
	      set <= 2 * 62.5 * MB * 0.04 * 9 / 8);
	CHECK(rate_of((double)set, 0.04, 125 * MB, 2) >= 62.5 * MB * 0.99);
	CHECK(sets >= 1 && sets < 10 && gave_up == 0);

	/* Taken over while the rate was low (a slow start, a busy source):
	 * the window doubles each sample until the link is full. */
	memset(&w, 0, sizeof w);
	w.set = FERRY_RWND_FLOOR;
	set = converge(&w, 0.04, 125 * MB, 1, 40, 0, &sets, &gave_up);
	CHECK(rate_of((double)set, 0.04, 125 * MB, 1) >= 125 * MB * 0.99);
	CHECK(set <= 2 * 125 * MB * 0.04 * 9 / 8);
	CHECK(sets >= 5 && sets <= 12);

	/* More than can be set, measured before taking over: never taken
	 * (the kernel's autotuning stays). */
	memset(&w, 0, sizeof w);
	set = converge(&w, 0.04, 125 * MB, 2, 20, 212992, &sets, &gave_up);
	CHECK_EQ_U64(set, 0);
	CHECK(w.off && sets == 0 && gave_up == 0);
	/* ... once off, never again. */
	ferry_rwnd_note(&w, 1000, 0);
	CHECK(!ferry_rwnd_due(&w, 1e6, 0.04));
	CHECK(ferry_rwnd_next(&w, 1e6, 0.04, 0, &size) == FERRY_RWND_KEEP);

	/* Taken over small, then it needs more than can be set: up to the
	 * ceiling, then given up once. */
	memset(&w, 0, sizeof w);
	w.set = FERRY_RWND_FLOOR;
	set = converge(&w, 0.04, 125 * MB, 1, 20, 1u << 20, &sets, &gave_up);
	CHECK_EQ_U64(set, 1u << 20);
	CHECK(gave_up == 1 && w.off);

	/* Held (paused for readers) for more than a quarter of a sample:
	 * no change, however fast the bytes came. */
	memset(&w, 0, sizeof w);
	w.set = FERRY_RWND_FLOOR;
	ferry_rwnd_begin(&w, 0);
	ferry_rwnd_note(&w, 100000000, 0.3);
	CHECK(ferry_rwnd_next(&w, 1.0, 0.04, 0, &size) == FERRY_RWND_KEEP);
	CHECK_EQ_U64(w.set, FERRY_RWND_FLOOR);
	/* Held a little: the rate is over the whole sample. 20 MB in 1 s,
	 * 40 ms: 2 * 20 MB/s * 0.04 = 1.6 MB. */
	ferry_rwnd_begin(&w, 0);
	ferry_rwnd_note(&w, 20000000, 0.2);
	CHECK(ferry_rwnd_next(&w, 1.0, 0.04, 0, &size) == FERRY_RWND_SET);
	CHECK_EQ_U64(size, 1600000);
	ferry_rwnd_took(&w, size);
	/* Never smaller: a slower sample keeps what is set. */
	ferry_rwnd_begin(&w, 0);
	ferry_rwnd_note(&w, 2000000, 0);
	CHECK(ferry_rwnd_next(&w, 1.0, 0.04, 0, &size) == FERRY_RWND_KEEP);
	CHECK_EQ_U64(w.set, 1600000);
	/* A short RTT on a fast link: FERRY_RWND_QUEUE of the rate. */
	memset(&w, 0, sizeof w);
	ferry_rwnd_begin(&w, 0);
	ferry_rwnd_note(&w, 1000000000, 0);
	CHECK(ferry_rwnd_next(&w, 1.0, 20e-6, 0, &size) == FERRY_RWND_SET);
	CHECK_EQ_U64(size, (uint64_t)(1e9 * FERRY_RWND_QUEUE));
	/* Nothing arrived, or no RTT known: no change. */
	ferry_rwnd_begin(&w, 0);
	CHECK(ferry_rwnd_next(&w, 1.0, 0.04, 0, &size) == FERRY_RWND_KEEP);
	ferry_rwnd_note(&w, 1000000, 0);
	CHECK(ferry_rwnd_next(&w, 2.0, 0, 0, &size) == FERRY_RWND_KEEP);
	return check_result("rwnd");
}
