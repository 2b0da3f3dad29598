/* ferry — a token bucket for a bandwidth cap shared by many streams.
 *
 * Every stream takes its bytes as they pass; the bucket answers how long
 * the stream must wait so that the sum stays at the rate. Tokens refill at
 * the rate up to a burst of a twentieth of a second (at least 64 KiB);
 * a take larger than the tokens goes into debt that later takes wait out,
 * so streams of any piece size are held to the rate on average.
 *
 * The rate may change at any time (a control file); 0 means no cap.
 */
#ifndef FERRY_RATE_H
#define FERRY_RATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct ferry_bucket {
	_Atomic uint64_t rate;	/* bytes per second, 0 = unlimited */
	pthread_mutex_t lock;
	double tokens;		/* bytes; negative = debt */
	double last;		/* time of the last refill, seconds */
};

void ferry_bucket_init(struct ferry_bucket *b, uint64_t rate);
void ferry_bucket_destroy(struct ferry_bucket *b);

/*! ferry_bucket_set() : change the rate (0 = no cap); pending debt is
 * forgiven, so a raised cap takes effect at once. */
void ferry_bucket_set(struct ferry_bucket *b, uint64_t rate);

/*! ferry_bucket_take() : @n bytes pass at time @now (seconds, monotonic).
 * @return seconds the caller should wait before moving more, 0 if none. */
double ferry_bucket_take(struct ferry_bucket *b, uint64_t n, double now);

/*! ferry_bucket_throttle() : take @n bytes now and sleep as long as the
 * bucket says, in slices of at most 100 ms, giving up early when *@stop
 * becomes true (may be NULL). */
void ferry_bucket_throttle(struct ferry_bucket *b, uint64_t n,
			   const atomic_bool *stop);

#endif
