/* Minimal unit-test helpers: CHECK() records a failure and goes on, so one
 * run reports every broken expectation; main returns check_result(). */
#ifndef FERRY_CHECK_H
#define FERRY_CHECK_H

#include <inttypes.h>
#include <stdio.h>

static int check_failures;
static int check_count;

#define CHECK(cond) do {						\
	check_count++;							\
	if (!(cond)) {							\
		check_failures++;					\
		fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__,	\
			__LINE__, #cond);				\
	}								\
} while (0)

#define CHECK_EQ_U64(a, b) do {						\
	uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);		\
	check_count++;							\
	if (a_ != b_) {							\
		check_failures++;					\
		fprintf(stderr, "%s:%d: FAILED: %s == %s (%" PRIu64	\
			" != %" PRIu64 ")\n", __FILE__, __LINE__, #a,	\
			#b, a_, b_);					\
	}								\
} while (0)

static inline int
check_result(const char *name)
{
	printf("%s: %d checks, %d failed\n", name, check_count,
	       check_failures);
	return check_failures ? 1 : 0;
}

#endif
