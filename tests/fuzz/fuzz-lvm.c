/* libFuzzer target: an LVM2 PV's label, metadata area and text metadata,
 * on a PV that is the input itself. Whatever the bytes, it refuses them
 * with a reason, or every extent it says is taken and every LV segment
 * lies inside the PV's extents, and no two segments share a byte. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/memfile.h"
#include "backends/fsmap/lvm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct memfile f = { data, size };
	struct fsmap_vol v = { .read = mem_read, .ctx = &f, .size = size };
	struct lvm_pv pv;
	char why[200] = "";
	int r = lvm_pv_read(&v, &pv, why, sizeof why);

	CHECK(r == 0 || r == -EINVAL || r == -EIO || r == -ENOMEM);
	if (r < 0) {
		CHECK(r != -EINVAL || why[0]);
		return 0;
	}
	CHECK(pv.pe_start <= pv.pe_end && pv.pe_end <= size);
	for (size_t i = 0; i < pv.taken.n; i++)
		CHECK(pv.taken.v[i].off >= pv.pe_start &&
		      pv.taken.v[i].off + pv.taken.v[i].len <= pv.pe_end);
	for (size_t l = 0; l < pv.nlvs; l++) {
		const struct lvm_lv *lv = &pv.lvs[l];
		uint64_t next = 0;

		for (size_t s = 0; lv->mappable && s < lv->nsegs; s++) {
			const struct lvm_seg *g = &lv->segs[s];

			CHECK(g->lv_off == next && g->len > 0);
			CHECK(g->pv_off >= pv.pe_start &&
			      g->pv_off + g->len <= pv.pe_end);
			CHECK(ferry_extents_data_in(&pv.taken, g->pv_off,
						    g->len) == g->len);
			next += g->len;
		}
		CHECK(!lv->mappable || next == lv->size);
	}
	lvm_pv_free(&pv);
	return 0;
}
