/* ferry — a disk's used ranges, volume by volume (see fsmap.h).
 *
 * The disk is a partition table (or none: then the whole disk is one
 * volume). Each volume is looked up in the kernel first (a mounted
 * filesystem), else probed by libblkid and read by its type's parser. An
 * LVM2 PV is a volume of volumes: its unallocated extents are free, and
 * each linear LV is a volume of its own, read through its segments.
 * Volumes only ever give FREE ranges; the disk's used ranges are the disk
 * less all of them, so tables, gaps and whatever was not understood stay.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/fsmap/fsmap.h"
#include "backends/fsmap/lvm.h"
#include "backends/fsmap/parts.h"
#include "common/util.h"

static const struct fsmap_fs *const parsers[] = {
	&fsmap_ext2, &fsmap_ext3, &fsmap_ext4, &fsmap_xfs, &fsmap_ntfs,
	&fsmap_vfat, &fsmap_swap,
};

const struct fsmap_fs *
fsmap_fs_find(const char *type)
{
	for (size_t i = 0; i < sizeof parsers / sizeof parsers[0]; i++)
		if (strcmp(parsers[i]->name, type) == 0)
			return parsers[i];
	return NULL;
}

const char *
fsmap_method_name(enum fsmap_method m)
{
	switch (m) {
	case FSMAP_BITMAP: return "bitmap";
	case FSMAP_KERNEL: return "kernel";
	case FSMAP_VOLUMES: return "volumes";
	default: return "unknown";
	}
}

int
fsmap_fail(char *why, size_t whylen, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return r;
}

int
fsmap_add_free(struct ferry_extents *fr, uint64_t off, uint64_t len)
{
	if (off >= fr->size || len == 0)
		return 0;
	if (fr->n && off < fr->v[fr->n - 1].off + fr->v[fr->n - 1].len)
		return -EINVAL;
	return ferry_extents_add(fr, off, FERRY_MIN(len, fr->size - off));
}

void
fsmap_report_free(struct fsmap_report *rep)
{
	free(rep->v);
	memset(rep, 0, sizeof *rep);
}

/* Where a volume's bytes are on the disk: at @base, or through @segs
 * (an LV on a PV that starts at @base). */
struct xlate {
	uint64_t base;
	const struct lvm_seg *segs;
	size_t nsegs;
};

struct job {
	const struct fsmap_vol *disk;
	const struct fsmap_probe *probe;
	const struct fsmap_kernel *kern;
	struct fsmap_report *rep;
	struct ferry_extent *free;	/* disk coordinates, any order */
	size_t nfree, cap;
};

static int
push_free(struct job *j, uint64_t off, uint64_t len)
{
	if (j->nfree == j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 1024;
		struct ferry_extent *v = realloc(j->free, cap * sizeof *v);

		if (!v)
			return -ENOMEM;
		j->free = v;
		j->cap = cap;
	}
	j->free[j->nfree++] = (struct ferry_extent){ off, len };
	return 0;
}

/* Volume ranges @fr to disk ranges. */
static int
push_volume_free(struct job *j, const struct xlate *x,
		 const struct ferry_extents *fr)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < fr->n; i++) {
		uint64_t off = fr->v[i].off, end = off + fr->v[i].len;

		if (!x->segs) {
			r = push_free(j, x->base + off, end - off);
			continue;
		}
		for (size_t s = 0; r == 0 && s < x->nsegs; s++) {
			const struct lvm_seg *g = &x->segs[s];
			uint64_t a = FERRY_MAX(off, g->lv_off);
			uint64_t b = FERRY_MIN(end, g->lv_off + g->len);

			if (a < b)
				r = push_free(j, x->base + g->pv_off +
					      (a - g->lv_off), b - a);
		}
	}
	return r;
}

static struct fsmap_entry *
new_entry(struct job *j)
{
	struct fsmap_report *rep = j->rep;

	if (!rep)
		return NULL;
	if (rep->n == rep->cap) {
		size_t cap = rep->cap ? rep->cap * 2 : 8;
		struct fsmap_entry *v = realloc(rep->v, cap * sizeof *v);

		if (!v)
			return NULL;
		rep->v = v;
		rep->cap = cap;
	}
	memset(&rep->v[rep->n], 0, sizeof rep->v[rep->n]);
	return &rep->v[rep->n++];
}

/* A slice of a parent volume. */
struct slice {
	const struct fsmap_vol *parent;
	uint64_t base;
	const struct lvm_seg *segs;	/* or through these (an LV) */
	size_t nsegs;
};

static int
slice_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	const struct slice *s = ctx;
	uint8_t *b = buf;

	if (!s->segs)
		return s->parent->read(s->parent->ctx, s->base + off, buf, len);
	for (size_t i = 0; len > 0 && i < s->nsegs; i++) {
		const struct lvm_seg *g = &s->segs[i];
		size_t n;
		int r;

		if (off < g->lv_off || off >= g->lv_off + g->len)
			continue;
		n = (size_t)FERRY_MIN((uint64_t)len, g->lv_off + g->len - off);
		r = s->parent->read(s->parent->ctx, g->pv_off + (off - g->lv_off),
				    b, n);
		if (r < 0)
			return r;
		b += n;
		off += n;
		len -= n;
	}
	return len ? -EIO : 0;
}

static int volume(struct job *j, const struct fsmap_vol *v,
		  const struct fsmap_place *pl, const struct xlate *x,
		  const char *where, unsigned depth);

/* An LVM2 PV: free extents, then each mappable LV as a volume. */
static int
pv_volume(struct job *j, const struct fsmap_vol *v, const struct xlate *x,
	  const char *where, size_t ei, struct ferry_extents *fr, char *why,
	  size_t whylen)
{
	struct lvm_pv pv;
	uint64_t freed = 0;
	int r = lvm_pv_read(v, &pv, why, whylen);

	if (r < 0)
		return r;
	/* Unallocated extents. */
	if (pv.free_known) {
		struct ferry_extents all;

		ferry_extents_init(&all, v->size);
		r = ferry_extents_add(&all, pv.pe_start,
				      pv.pe_end - pv.pe_start);
		if (r == 0)
			r = ferry_extents_subtract(&all, &pv.taken, fr);
		ferry_extents_free(&all);
		if (r == 0)
			r = push_volume_free(j, x, fr);
		freed += fr->data_bytes;
	}
	for (size_t i = 0; r == 0 && i < pv.nlvs; i++) {
		struct lvm_lv *lv = &pv.lvs[i];
		struct slice s = { v, 0, lv->segs, lv->nsegs };
		struct fsmap_vol lvv = { slice_read, &s, lv->size,
					 v->has_fd && lv->nsegs == 1, v->fd,
					 v->fd_off + (lv->nsegs ? lv->segs[0].pv_off
							      : 0) };
		struct xlate lx = { x->base, lv->segs, lv->nsegs };
		char dm[300], w[200];
		struct fsmap_place pl = { 0, lv->size, dm };
		size_t before = j->nfree;

		lvm_dm_name(pv.vg, lv->name, dm, sizeof dm);
		snprintf(w, sizeof w, "%s/%s/%s", where, pv.vg, lv->name);
		if (!lv->mappable) {
			struct fsmap_entry *le = new_entry(j);

			if (le) {
				snprintf(le->where, sizeof le->where, "%s", w);
				le->len = lv->size;
				le->used = lv->size;
				snprintf(le->why, sizeof le->why, "%s", lv->why);
			}
			continue;
		}
		r = volume(j, &lvv, &pl, &lx, w, 1);
		for (size_t k = before; k < j->nfree; k++)
			freed += j->free[k].len;
	}
	if (r == 0 && j->rep && ei < j->rep->n) {
		struct fsmap_entry *e = &j->rep->v[ei];

		e->method = FSMAP_VOLUMES;
		e->used = v->size - FERRY_MIN(freed, v->size);
	}
	lvm_pv_free(&pv);
	return r;
}

static int
volume(struct job *j, const struct fsmap_vol *v, const struct fsmap_place *pl,
       const struct xlate *x, const char *where, unsigned depth)
{
	struct fsmap_entry *e = new_entry(j), scratch;
	size_t ei = j->rep ? j->rep->n - 1 : 0;
	struct ferry_extents fr;
	const struct fsmap_fs *fs;
	int r = 0;

	if (!e) {
		if (j->rep)
			return -ENOMEM;
		e = &scratch;
		memset(e, 0, sizeof *e);
	}
	snprintf(e->where, sizeof e->where, "%s", where);
	e->off = x->segs ? x->base + (x->nsegs ? x->segs[0].pv_off : 0) :
		 x->base;
	e->len = v->size;
	e->used = v->size;
	ferry_extents_init(&fr, v->size);
	if (j->probe) {
		r = j->probe->probe(j->probe->ctx, v, e->type, sizeof e->type);
		if (r < 0) {
			snprintf(e->why, sizeof e->why, "probe: %s",
				 strerror(-r));
			r = 0;
			goto out;
		}
	}
	if (j->kern) {
		r = j->kern->lookup(j->kern->ctx, pl, &fr, e->why,
				    sizeof e->why);
		if (r < 0) {
			r = 0;
			goto out;	/* mounted, no map: all data */
		}
		if (r == 1) {
			e->method = FSMAP_KERNEL;
			goto mapped;
		}
	}
	if (!e->type[0]) {
		snprintf(e->why, sizeof e->why, "no filesystem recognised");
		goto out;
	}
	if (strcmp(e->type, "LVM2_member") == 0 && depth == 0) {
		/* Its LVs add entries, so @e may move (@ei stays); the reason
		 * is written before any is added. */
		r = pv_volume(j, v, x, where, ei, &fr, e->why, sizeof e->why);
		if (r == -EINVAL || r == -ENOTSUP || r == -EIO)
			r = 0;		/* the reason is in e->why */
		ferry_extents_free(&fr);
		return r;
	}
	fs = fsmap_fs_find(e->type);
	if (!fs) {
		snprintf(e->why, sizeof e->why, "%s: %s", e->type,
			 strncmp(e->type, "crypto_", 7) == 0 ? "encrypted" :
			 "no map for this type");
		goto out;
	}
	r = fs->free(v, &fr, e->why, sizeof e->why);
	if (r < 0) {
		if (r != -EINVAL && r != -ENOTSUP)
			snprintf(e->why, sizeof e->why, "reading it: %s",
				 strerror(-r));
		r = r == -ENOMEM ? r : 0;
		goto out;
	}
	e->method = FSMAP_BITMAP;
mapped:
	e->why[0] = '\0';
	e->used = v->size - fr.data_bytes;
	r = push_volume_free(j, x, &fr);
out:
	ferry_extents_free(&fr);
	return r;
}

static int
cmp_extent(const void *a, const void *b)
{
	const struct ferry_extent *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

static int
disk_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	const struct fsmap_vol *v = ctx;

	if (off > v->size || len > v->size - off)
		return -EIO;
	return v->read(v->ctx, off, buf, len);
}

int
fsmap_disk(const struct fsmap_vol *v, const struct fsmap_probe *probe,
	   const struct fsmap_kernel *kern, struct ferry_extents *used,
	   struct fsmap_report *rep)
{
	struct job j = { v, probe, kern, rep, NULL, 0, 0 };
	struct part_table *t = malloc(sizeof *t);
	struct ferry_extents fr, all;
	char why[160] = "";
	int r;

	if (!t)
		return -ENOMEM;
	r = parts_scan(v->size, disk_read, (void *)v, t, why, sizeof why);
	if (r == -EINVAL) {
		struct fsmap_entry *e = new_entry(&j);

		if (e) {
			snprintf(e->where, sizeof e->where, "disk");
			e->len = e->used = v->size;
			snprintf(e->why, sizeof e->why, "partition table: %s",
				 why);
		}
		r = 0;
		t->n = 0;
		goto done;
	}
	if (r < 0)
		goto out;
	if (t->n == 0) {
		struct fsmap_place pl = { 0, v->size, NULL };
		struct xlate x = { 0, NULL, 0 };

		r = volume(&j, v, &pl, &x, "disk", 0);
	}
	for (size_t i = 0; r == 0 && i < t->n; i++) {
		struct slice s = { v, t->v[i].off, NULL, 0 };
		struct fsmap_vol pv = { slice_read, &s, t->v[i].len, v->has_fd,
					v->fd, v->fd_off + t->v[i].off };
		struct fsmap_place pl = { t->v[i].off, t->v[i].len, NULL };
		struct xlate x = { t->v[i].off, NULL, 0 };
		char w[16];

		snprintf(w, sizeof w, "p%u", t->v[i].num);
		r = volume(&j, &pv, &pl, &x, w, 0);
	}
done:
	if (r < 0)
		goto out;
	/* Used = the disk less every free range. */
	if (j.nfree)
		qsort(j.free, j.nfree, sizeof *j.free, cmp_extent);
	ferry_extents_init(&fr, v->size);
	ferry_extents_init(&all, v->size);
	for (size_t i = 0; r == 0 && i < j.nfree; i++) {
		uint64_t off = j.free[i].off, end = off + j.free[i].len;

		if (fr.n && off < fr.v[fr.n - 1].off + fr.v[fr.n - 1].len) {
			r = -EINVAL;	/* volumes overlap: cannot be */
			break;
		}
		r = ferry_extents_add(&fr, off, FERRY_MIN(end, v->size) - off);
	}
	if (r == 0)
		r = ferry_extents_all_data(&all);
	if (r == 0)
		r = ferry_extents_subtract(&all, &fr, used);
	ferry_extents_free(&fr);
	ferry_extents_free(&all);
out:
	free(j.free);
	free(t);
	return r;
}
