/* Whether to ask for zstd: the chooser against simulated links, where each
 * mode moves data at a set rate and a transfer takes bytes / rate. */
#include "common/adapt.h"
#include "tests/unit/check.h"

#define RUN (8u << 20)		/* bytes of a transfer, as a fetch run */

/* @n transfers on a link where plain moves @plain and zstd @zstd bytes/s
 * (they may change at transfer @at to @plain2/@zstd2). @return the share
 * of time spent in the slower mode after the switch point, and sets
 * @share_z to the share of time spent asking for zstd. */
static double
simulate(struct ferry_adapt *a, int n, double plain, double zstd, int at,
	 double plain2, double zstd2, double *share_z)
{
	double slow = 0, total = 0, all = 0, tz = 0;

	for (int i = 0; i < n; i++) {
		bool probe, z = ferry_adapt_choose(a, &probe);
		double p = i < at ? plain : plain2, q = i < at ? zstd : zstd2;
		unsigned bytes = probe ? FERRY_ADAPT_PROBE_BYTES : RUN;
		double secs = bytes / (z ? q : p);

		ferry_adapt_note(a, z, probe, bytes, secs);
		all += secs;
		tz += z ? secs : 0;
		if (i >= at + 20) {	/* after the switch has been seen */
			total += secs;
			if ((z ? q : p) < (z ? p : q))
				slow += secs;
		}
	}
	*share_z = tz / all;
	return total > 0 ? slow / total : 0;
}

int
main(void)
{
	struct ferry_adapt a;
	double share_z, slow;

	/* Nothing known: zstd first, then plain, the best guess is zstd. */
	ferry_adapt_init(&a);
	CHECK(ferry_adapt_best(&a));
	CHECK(ferry_adapt_rate(&a, true) == 0);
	{
		bool probe, z = ferry_adapt_choose(&a, &probe);

		CHECK(z && probe);
		ferry_adapt_note(&a, true, probe, RUN, 0.1);
		z = ferry_adapt_choose(&a, &probe);
		CHECK(!z && probe);
		/* Transfers too small to tell are not counted. */
		ferry_adapt_note(&a, false, probe, 4096, 0.1);
		CHECK(ferry_adapt_rate(&a, false) == 0);
	}
	ferry_adapt_destroy(&a);

	/* A slow link (25 MB/s; zstd doubles the data rate): zstd nearly
	 * always, and the probes of plain cost little time. */
	ferry_adapt_init(&a);
	slow = simulate(&a, 400, 25e6, 50e6, 0, 25e6, 50e6, &share_z);
	CHECK(share_z > 0.92);
	CHECK(slow < 0.08);
	CHECK(ferry_adapt_best(&a));
	CHECK(ferry_adapt_rate(&a, true) > 1.9 * ferry_adapt_rate(&a, false));
	ferry_adapt_destroy(&a);

	/* A fast link where compressing is the narrow part: plain. */
	ferry_adapt_init(&a);
	slow = simulate(&a, 400, 700e6, 500e6, 0, 700e6, 500e6, &share_z);
	CHECK(share_z < 0.08);
	CHECK(slow < 0.08);
	CHECK(!ferry_adapt_best(&a));
	ferry_adapt_destroy(&a);

	/* Near a tie (zstd at 97% of plain): zstd, which saves bytes. */
	ferry_adapt_init(&a);
	simulate(&a, 200, 100e6, 97e6, 0, 100e6, 97e6, &share_z);
	CHECK(share_z > 0.9);
	ferry_adapt_destroy(&a);

	/* The link changes half way (it gets busy): the chooser follows
	 * within a few seconds of transfer, and after that rarely uses the
	 * mode that is now the slower one. */
	ferry_adapt_init(&a);
	slow = simulate(&a, 2000, 700e6, 500e6, 1000, 20e6, 60e6, &share_z);
	CHECK(ferry_adapt_best(&a));
	CHECK(slow < 0.15);
	ferry_adapt_destroy(&a);
	return check_result("unit-adapt");
}
