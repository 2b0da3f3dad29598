/* ferry — Linux swap: only its header page is used.
 *
 * A swap area holds nothing a migrated server needs: the copy boots with
 * it empty. Its first page carries the header (boot block, version, size,
 * label, UUID) and ends in "SWAPSPACE2"; the page size is where that
 * signature ends. A hibernation image ("S1SUSPEND"...) is not swap to us:
 * libblkid calls it swsuspend, and it stays data.
 */
#include <errno.h>
#include <string.h>

#include "backends/fsmap/fsmap.h"

#define SIG "SWAPSPACE2"
#define SIGLEN 10

static int
swap_free(const struct fsmap_vol *v, struct ferry_extents *fr, char *why,
	  size_t whylen)
{
	static const uint32_t pages[] = { 4096, 8192, 16384, 65536 };
	char sig[SIGLEN];

	for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
		uint32_t page = pages[i];
		int r;

		if (v->size < 2 * (uint64_t)page)
			break;
		r = v->read(v->ctx, page - SIGLEN, sig, SIGLEN);
		if (r < 0)
			return r;
		if (memcmp(sig, SIG, SIGLEN) == 0)
			return fsmap_add_free(fr, page, v->size - page);
	}
	return fsmap_fail(why, whylen, -EINVAL,
			  "no SWAPSPACE2 signature at a page's end");
}

const struct fsmap_fs fsmap_swap = { .name = "swap", .free = swap_free };
