/* ferry — token bucket. See rate.h. */
#include <time.h>

#include "common/rate.h"
#include "common/util.h"

static double
burst_of(uint64_t rate)
{
	double b = (double)rate / 20;

	return b < 65536 ? 65536 : b;
}

void
ferry_bucket_init(struct ferry_bucket *b, uint64_t rate)
{
	b->rate = rate;
	pthread_mutex_init(&b->lock, NULL);
	b->tokens = burst_of(rate);
	b->last = -1;
}

void
ferry_bucket_destroy(struct ferry_bucket *b)
{
	pthread_mutex_destroy(&b->lock);
}

void
ferry_bucket_set(struct ferry_bucket *b, uint64_t rate)
{
	pthread_mutex_lock(&b->lock);
	b->rate = rate;
	if (b->tokens < 0)
		b->tokens = 0;
	pthread_mutex_unlock(&b->lock);
}

double
ferry_bucket_take(struct ferry_bucket *b, uint64_t n, double now)
{
	uint64_t rate = b->rate;
	double wait = 0;

	if (rate == 0)
		return 0;
	pthread_mutex_lock(&b->lock);
	if (b->last >= 0 && now > b->last)
		b->tokens += (now - b->last) * (double)rate;
	if (b->last < 0 || now > b->last)
		b->last = now;
	if (b->tokens > burst_of(rate))
		b->tokens = burst_of(rate);
	b->tokens -= (double)n;
	if (b->tokens < 0)
		wait = -b->tokens / (double)rate;
	pthread_mutex_unlock(&b->lock);
	return wait;
}

void
ferry_bucket_throttle(struct ferry_bucket *b, uint64_t n,
		      const atomic_bool *stop)
{
	double wait;

	if (!b->rate)
		return;		/* no cap: not even a clock read */
	wait = ferry_bucket_take(b, n, ferry_now());

	/* A cap lifted meanwhile ends the wait. */
	while (wait > 0 && !(stop && *stop) && b->rate) {
		double slice = wait < 0.1 ? wait : 0.1;
		struct timespec ts = {
			.tv_sec = (time_t)slice,
			.tv_nsec = (long)((slice - (double)(time_t)slice) * 1e9),
		};

		nanosleep(&ts, NULL);
		wait -= slice;
	}
}
