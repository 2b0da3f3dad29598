/* The token bucket, on a clock the test sets. */
#include <math.h>

#include "common/rate.h"
#include "tests/unit/check.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

int
main(void)
{
	struct ferry_bucket b;
	double w, t;

	/* No cap: never wait. */
	ferry_bucket_init(&b, 0);
	CHECK(ferry_bucket_take(&b, 1u << 30, 0) == 0);
	ferry_bucket_destroy(&b);

	/* 1 MB/s: the burst is 64 KiB (a twentieth of a second is less). */
	ferry_bucket_init(&b, 1000000);
	CHECK(ferry_bucket_take(&b, 65536, 10) == 0);
	w = ferry_bucket_take(&b, 1000, 10);
	CHECK(NEAR(w, 0.001));
	/* Debt adds up across takes: 1000 more owed 1 ms later is 1 ms. */
	w = ferry_bucket_take(&b, 1000, 10.001);
	CHECK(NEAR(w, 0.001));
	/* Over a long run the rate holds: 10 MB in 1 MB pieces, each taker
	 * waiting what it is told, ends 10 s later. */
	t = 20;
	ferry_bucket_set(&b, 1000000);	/* forgives debt */
	w = ferry_bucket_take(&b, 0, t);
	for (int i = 0; i < 10; i++)
		t += ferry_bucket_take(&b, 1000000, t);
	CHECK(fabs(t - 20 - (10 - 65536 / 1e6)) < 1e-6);
	/* Idle time refills to the burst, not more. */
	CHECK(ferry_bucket_take(&b, 65536, t + 100) == 0);
	CHECK(ferry_bucket_take(&b, 1, t + 100) > 0);
	/* Lifting the cap ends waiting at once. */
	ferry_bucket_set(&b, 0);
	CHECK(ferry_bucket_take(&b, 1u << 30, t + 100) == 0);
	/* A higher cap: 10 MB/s, burst 500 KB. */
	ferry_bucket_set(&b, 10000000);
	w = ferry_bucket_take(&b, 1500000, t + 200);
	CHECK(NEAR(w, 0.1));
	ferry_bucket_destroy(&b);
	return check_result("unit-rate");
}
