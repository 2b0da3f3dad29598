/* ferry — LVM2 physical volumes: the label, the text metadata, and where
 * each logical volume lies on the PV (see lvm.c). */
#ifndef FERRY_FSMAP_LVM_H
#define FERRY_FSMAP_LVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/fsmap/fsmap.h"

/* A piece of a logical volume: LV bytes [lv_off, lv_off+len) are PV bytes
 * [pv_off, pv_off+len). */
struct lvm_seg {
	uint64_t lv_off, pv_off, len;
};

struct lvm_lv {
	char name[128];
	uint64_t size;		/* bytes */
	/* Its content is whole on this PV, in order, as a linear visible
	 * LV that no snapshot reads: its filesystem can be mapped. */
	bool mappable;
	char why[96];		/* if not mappable: why */
	struct lvm_seg *segs;
	size_t nsegs;
};

struct lvm_pv {
	char vg[128];
	uint64_t pe_start;	/* bytes: label and metadata before it */
	uint64_t pe_end;	/* bytes: end of the extents */
	/* Extents of the PV that some segment takes, in PV bytes (an
	 * upper bound where a segment type's area size is not known). */
	struct ferry_extents taken;
	bool free_known;	/* false: unallocated extents stay used */
	struct lvm_lv *lvs;
	size_t nlvs;
};

/*! lvm_pv_read() :
 * Read the LVM2 label and metadata of the PV @v.
 * @return 0; -EINVAL (not a PV, damaged, lying or no VG metadata) with a
 * reason in @why; -ENOMEM; or the read callback's error. */
int lvm_pv_read(const struct fsmap_vol *v, struct lvm_pv *pv, char *why,
		size_t whylen);
void lvm_pv_free(struct lvm_pv *pv);

/*! lvm_dm_name() : device-mapper's name of LV @lv of VG @vg ("vg-lv", a
 * '-' inside either name doubled) into @out. */
void lvm_dm_name(const char *vg, const char *lv, char *out, size_t len);

#endif
