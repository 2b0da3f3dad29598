/* What every fuzz target checks with: CHECK() aborts (libFuzzer then keeps
 * the input) in every build, unlike assert(), which NDEBUG removes from a
 * release build's seed runs. */
#ifndef FERRY_FUZZ_H
#define FERRY_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n",	\
	__FILE__, __LINE__, #c); abort(); } } while (0)

#endif
