/* ferry — whether to ask for compression, by measurement (adapt.h). */
#include "common/adapt.h"
#include "common/util.h"

#define MIN_BYTES (256u << 10)	/* smaller transfers tell latency, not rate */
#define KNOWN_SECS 0.05		/* a rate counts after this much transfer, */
#define KNOWN_BYTES (4u << 20)	/* or after this many bytes */
#define WINDOW_SECS 2.0		/* past this, a mode's totals are halved */
#define PROBE_EVERY 20		/* time in the better mode per probe time */
#define PROBE_MIN_SECS 0.005	/* a probe is taken to last at least this */
#define TIE 0.95		/* zstd wins at 95% of the plain rate */

void
ferry_adapt_init(struct ferry_adapt *a)
{
	*a = (struct ferry_adapt){ .since = 0 };
	pthread_mutex_init(&a->lock, NULL);
}

void
ferry_adapt_destroy(struct ferry_adapt *a)
{
	pthread_mutex_destroy(&a->lock);
}

static bool
known_one(const struct ferry_adapt *a, int m)
{
	return a->secs[m] >= KNOWN_SECS || a->bytes[m] >= KNOWN_BYTES;
}

static double
rate_of(const struct ferry_adapt *a, int m)
{
	return known_one(a, m) ? a->bytes[m] / a->secs[m] : 0;
}

static bool
known(const struct ferry_adapt *a)
{
	return known_one(a, 0) && known_one(a, 1);
}

static bool
best_of(const struct ferry_adapt *a)
{
	return !known(a) || rate_of(a, 1) >= TIE * rate_of(a, 0);
}

bool
ferry_adapt_best(struct ferry_adapt *a)
{
	bool z;

	pthread_mutex_lock(&a->lock);
	z = best_of(a);
	pthread_mutex_unlock(&a->lock);
	return z;
}

bool
ferry_adapt_choose(struct ferry_adapt *a, bool *probe)
{
	bool z;

	pthread_mutex_lock(&a->lock);
	*probe = true;
	if (!known(a)) {
		/* Measure both first, zstd first. */
		z = !known_one(a, 1) && (known_one(a, 0) ||
					 a->secs[1] <= a->secs[0]);
	} else if (a->since >= PROBE_EVERY * FERRY_MAX(a->probe_secs,
						       PROBE_MIN_SECS)) {
		a->since = 0;
		z = !best_of(a);
	} else {
		*probe = false;
		z = best_of(a);
	}
	pthread_mutex_unlock(&a->lock);
	return z;
}

void
ferry_adapt_note(struct ferry_adapt *a, bool zstd, bool probe,
		 uint64_t bytes, double secs)
{
	int m = zstd ? 1 : 0;

	if (bytes < MIN_BYTES || !(secs > 0))
		return;
	pthread_mutex_lock(&a->lock);
	a->bytes[m] += (double)bytes;
	a->secs[m] += secs;
	while (a->secs[m] > WINDOW_SECS) {
		a->bytes[m] /= 2;
		a->secs[m] /= 2;
	}
	if (probe)
		a->probe_secs = secs;
	else
		a->since += secs;
	pthread_mutex_unlock(&a->lock);
}

double
ferry_adapt_rate(struct ferry_adapt *a, bool zstd)
{
	double r;

	pthread_mutex_lock(&a->lock);
	r = rate_of(a, zstd ? 1 : 0);
	pthread_mutex_unlock(&a->lock);
	return r;
}
