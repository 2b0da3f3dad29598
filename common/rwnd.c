/* ferry — the receive window of a background connection (see rwnd.h). */
#include "common/rwnd.h"

void
ferry_rwnd_begin(struct ferry_rwnd *w, double now)
{
	w->start = now;
	w->held = 0;
	w->bytes = 0;
}

void
ferry_rwnd_note(struct ferry_rwnd *w, uint64_t bytes, double held)
{
	w->bytes += bytes;
	w->held += held;
}

bool
ferry_rwnd_due(const struct ferry_rwnd *w, double now, double min_rtt)
{
	double span = 4 * min_rtt;

	if (span < FERRY_RWND_SAMPLE)
		span = FERRY_RWND_SAMPLE;
	return !w->off && now - w->start >= span - 1e-9;
}

enum ferry_rwnd_act
ferry_rwnd_next(struct ferry_rwnd *w, double now, double min_rtt,
		uint64_t ceiling, uint64_t *size)
{
	double span = now - w->start, held = w->held;
	uint64_t bytes = w->bytes, v;
	double want;

	ferry_rwnd_begin(w, now);
	if (w->off || min_rtt <= 0 || bytes == 0)
		return FERRY_RWND_KEEP;
	/* Held for a part of the sample: it tells little of the link (and
	 * right after a pause, the bytes the socket kept come at once). */
	if (span <= 0 || held > span / 4)
		return FERRY_RWND_KEEP;
	want = (double)bytes / span *
	       (2 * min_rtt > FERRY_RWND_QUEUE ? 2 * min_rtt : FERRY_RWND_QUEUE);
	v = want < FERRY_RWND_FLOOR ? FERRY_RWND_FLOOR : (uint64_t)want;
	if (ceiling && v > ceiling) {
		if (w->set == 0) {
			/* The kernel's autotuning does better than the
			 * most that can be set: leave the socket to it. */
			w->off = true;
			return FERRY_RWND_KEEP;
		}
		if (w->set >= ceiling) {
			w->off = true;
			return FERRY_RWND_GIVE_UP;
		}
		v = ceiling;
	}
	/* Never smaller: a buffer shrunk under the data it holds makes the
	 * kernel drop what it had let the sender send (retransmissions, and
	 * the sender's CPU). Nor larger by less than an eighth. */
	if (w->set && v <= w->set + w->set / 8)
		return FERRY_RWND_KEEP;
	*size = v;
	return FERRY_RWND_SET;
}

void
ferry_rwnd_took(struct ferry_rwnd *w, uint64_t size)
{
	w->set = size;
}
