/* ferry — LVM2 physical volumes, read from the label and text metadata.
 *
 * Layout (lvm2's lib/format_text/layout.h): one of the first four sectors
 * holds a label ("LABELONE", its own sector number, type "LVM2 001") that
 * points at the PV header: the PV's UUID, then lists of data areas (the
 * first gives pe_start) and metadata areas. A metadata area starts with a
 * header (magic " LVM2 x[5A%r0N*>") whose first location points at the
 * current metadata, a text in a ring buffer, checksummed.
 *
 * The text (a small config language: key = value, name { ... }, values
 * integers, strings or arrays of them) describes the VG: its extent size,
 * its PVs (ours is the one with the label's UUID) and its LVs, each a list
 * of segments. A "striped" segment with one stripe maps LV extents to PV
 * extents linearly; every other type (thin, raid, mirror, snapshot, cache)
 * makes its LV unmappable, and the extents it takes stay used.
 *
 * Everything is checked against the PV: extents inside it, LV segments in
 * order, no two segments on one extent. Metadata that does not add up is
 * refused as a whole: the PV is then all data.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "backends/fsmap/lvm.h"
#include "common/util.h"

#define SECTOR 512u
#define MDA_MAGIC " LVM2 x[5A%r0N*>"
#define LVM_CRC_INIT 0xf597a6cfu
#define META_MAX (16u << 20)	/* bytes of metadata text */
#define NODES_MAX 200000
#define DEPTH_MAX 16
#define AREAS_MAX 4096
/* A fuzzer cannot forge checksums: its builds skip them, to reach the
 * text parser (libFuzzer's convention). */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CHECK_CRC 0
#else
#define CHECK_CRC 1
#endif

/* --- the text: a tree of nodes ------------------------------------- */

enum node_kind { N_SECTION, N_INT, N_STR, N_ARRAY };

struct node {
	enum node_kind kind;
	const char *key;	/* NULL for array elements */
	size_t keylen;
	const char *str;	/* N_STR, unescaped copy */
	long long num;		/* N_INT */
	int child, next;	/* first child, next sibling: indices or -1 */
};

struct tree {
	struct node *v;
	size_t n, cap;
	const char *p, *end;
	char *strings;		/* unescaped strings, one after another */
	size_t slen;
};

static int
new_node(struct tree *t, enum node_kind kind, const char *key, size_t keylen)
{
	if (t->n == NODES_MAX)
		return -1;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		struct node *v = realloc(t->v, cap * sizeof *v);

		if (!v)
			return -1;
		t->v = v;
		t->cap = cap;
	}
	t->v[t->n] = (struct node){ kind, key, keylen, NULL, 0, -1, -1 };
	return (int)t->n++;
}

static void
skip_space(struct tree *t)
{
	while (t->p < t->end) {
		if (*t->p == '#') {
			while (t->p < t->end && *t->p != '\n')
				t->p++;
		} else if (isspace((unsigned char)*t->p)) {
			t->p++;
		} else {
			break;
		}
	}
}

static bool
is_ident(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '+' ||
	       c == '-';
}

static int parse_value(struct tree *t, int idx);

/* Items up to '}' (@depth > 0) or the end, as children of node @parent. */
static int
parse_items(struct tree *t, int parent, unsigned depth)
{
	int last = -1;

	if (depth > DEPTH_MAX)
		return -1;
	for (;;) {
		const char *key;
		size_t keylen;
		int idx;

		skip_space(t);
		if (t->p == t->end)
			return depth == 0 ? 0 : -1;
		if (*t->p == '}') {
			if (depth == 0)
				return -1;
			t->p++;
			return 0;
		}
		key = t->p;
		while (t->p < t->end && is_ident(*t->p))
			t->p++;
		keylen = (size_t)(t->p - key);
		if (keylen == 0)
			return -1;
		skip_space(t);
		if (t->p == t->end)
			return -1;
		if (*t->p == '{') {
			t->p++;
			idx = new_node(t, N_SECTION, key, keylen);
			if (idx < 0 || parse_items(t, idx, depth + 1) < 0)
				return -1;
		} else if (*t->p == '=') {
			t->p++;
			idx = new_node(t, N_INT, key, keylen);
			if (idx < 0 || parse_value(t, idx) < 0)
				return -1;
		} else {
			return -1;
		}
		if (last < 0)
			t->v[parent].child = idx;
		else
			t->v[last].next = idx;
		last = idx;
	}
}

static int
parse_scalar(struct tree *t, int idx)
{
	skip_space(t);
	if (t->p < t->end && *t->p == '"') {
		char *s = t->strings + t->slen;

		t->p++;
		while (t->p < t->end && *t->p != '"') {
			if (*t->p == '\\' && t->p + 1 < t->end)
				t->p++;
			t->strings[t->slen++] = *t->p++;
		}
		if (t->p == t->end)
			return -1;
		t->p++;
		t->strings[t->slen++] = '\0';
		t->v[idx].kind = N_STR;
		t->v[idx].str = s;
		return 0;
	}
	if (t->p < t->end && (isdigit((unsigned char)*t->p) || *t->p == '-')) {
		char num[32];
		size_t n = 0;

		while (t->p < t->end && n < sizeof num - 1 &&
		       (isdigit((unsigned char)*t->p) || *t->p == '-' ||
			*t->p == '.'))
			num[n++] = *t->p++;
		num[n] = '\0';
		t->v[idx].kind = N_INT;
		t->v[idx].num = strtoll(num, NULL, 10);
		return 0;
	}
	return -1;
}

static int
parse_value(struct tree *t, int idx)
{
	int last = -1;

	skip_space(t);
	if (t->p == t->end || *t->p != '[')
		return parse_scalar(t, idx);
	t->p++;
	t->v[idx].kind = N_ARRAY;
	for (;;) {
		int e;

		skip_space(t);
		if (t->p < t->end && *t->p == ']') {
			t->p++;
			return 0;
		}
		if (last >= 0) {
			if (t->p == t->end || *t->p != ',')
				return -1;
			t->p++;
		}
		e = new_node(t, N_INT, NULL, 0);
		if (e < 0 || parse_scalar(t, e) < 0)
			return -1;
		if (last < 0)
			t->v[idx].child = e;
		else
			t->v[last].next = e;
		last = e;
	}
}

static int
find(const struct tree *t, int parent, const char *key)
{
	size_t n = strlen(key);

	for (int i = parent >= 0 ? t->v[parent].child : -1; i >= 0;
	     i = t->v[i].next)
		if (t->v[i].key && t->v[i].keylen == n &&
		    memcmp(t->v[i].key, key, n) == 0)
			return i;
	return -1;
}

static bool
get_int(const struct tree *t, int parent, const char *key, long long *out)
{
	int i = find(t, parent, key);

	if (i < 0 || t->v[i].kind != N_INT || t->v[i].num < 0)
		return false;
	*out = t->v[i].num;
	return true;
}

static const char *
get_str(const struct tree *t, int parent, const char *key)
{
	int i = find(t, parent, key);

	return i >= 0 && t->v[i].kind == N_STR ? t->v[i].str : NULL;
}

static bool
has_flag(const struct tree *t, int parent, const char *key, const char *flag)
{
	int i = find(t, parent, key);

	for (int e = i >= 0 && t->v[i].kind == N_ARRAY ? t->v[i].child : -1;
	     e >= 0; e = t->v[e].next)
		if (t->v[e].kind == N_STR && strcmp(t->v[e].str, flag) == 0)
			return true;
	return false;
}

/* --- the label and metadata area ------------------------------------ */

static uint32_t
lvm_crc(const void *buf, size_t len)
{
	return ~(uint32_t)crc32(~LVM_CRC_INIT & 0xffffffffu, buf, (uInt)len);
}

/* The PV UUID, and the metadata text (malloc'd, NUL-terminated). */
static int
read_label(const struct fsmap_vol *v, char uuid[33], uint64_t *pe_start,
	   char **text, size_t *textlen, char *why, size_t whylen)
{
	uint8_t s[SECTOR], mh[SECTOR];
	uint64_t mda_off = 0, mda_size = 0, off, size;
	const uint8_t *loc;
	unsigned sec;
	char *buf;
	int r;

	if (v->size < 4 * SECTOR)
		return fsmap_fail(why, whylen, -EINVAL, "too small for a label");
	for (sec = 0; sec < 4; sec++) {
		r = v->read(v->ctx, sec * SECTOR, s, SECTOR);
		if (r < 0)
			return r;
		if (memcmp(s, "LABELONE", 8) == 0 && fsmap_le64(s + 8) == sec &&
		    memcmp(s + 24, "LVM2 001", 8) == 0)
			break;
	}
	if (sec == 4)
		return fsmap_fail(why, whylen, -EINVAL, "no LVM2 label");
	off = fsmap_le32(s + 20);
	if (off < 32 || off > SECTOR - 32 - 32)
		return fsmap_fail(why, whylen, -EINVAL, "bad PV header place");
	memcpy(uuid, s + off, 32);
	uuid[32] = '\0';
	loc = s + off + 40;
	/* Data areas, then metadata areas, each list ending in zeros. */
	*pe_start = 0;
	for (unsigned list = 0; list < 2; list++)
		for (;; loc += 16) {
			if (loc + 16 > s + SECTOR)
				return fsmap_fail(why, whylen, -EINVAL,
						  "PV header runs off its sector");
			if (!fsmap_le64(loc) && !fsmap_le64(loc + 8))
				{ loc += 16; break; }
			if (list == 0 && !*pe_start)
				*pe_start = fsmap_le64(loc);
			if (list == 1 && !mda_off) {
				mda_off = fsmap_le64(loc);
				mda_size = fsmap_le64(loc + 8);
			}
		}
	if (!mda_off || mda_size < 2 * SECTOR || mda_off > v->size ||
	    mda_size > v->size - mda_off)
		return fsmap_fail(why, whylen, -EINVAL, "no metadata area");
	r = v->read(v->ctx, mda_off, mh, SECTOR);
	if (r < 0)
		return r;
	if (memcmp(mh + 4, MDA_MAGIC, 16) != 0 ||
	    (CHECK_CRC && fsmap_le32(mh) != lvm_crc(mh + 4, SECTOR - 4)))
		return fsmap_fail(why, whylen, -EINVAL, "bad metadata area "
				  "header");
	off = fsmap_le64(mh + 40);
	size = fsmap_le64(mh + 48);
	if (off == 0 || size == 0)
		return fsmap_fail(why, whylen, -EINVAL, "the PV is in no VG");
	if (off < SECTOR || off >= mda_size || size > META_MAX ||
	    size > mda_size - SECTOR)
		return fsmap_fail(why, whylen, -EINVAL, "metadata outside its "
				  "area");
	buf = malloc((size_t)size + 1);
	if (!buf)
		return -ENOMEM;
	{	/* A ring buffer: what passes the end goes on after the header. */
		uint64_t first = FERRY_MIN(size, mda_size - off);

		r = v->read(v->ctx, mda_off + off, buf, (size_t)first);
		if (r == 0 && first < size)
			r = v->read(v->ctx, mda_off + SECTOR, buf + first,
				    (size_t)(size - first));
	}
	if (r < 0) {
		free(buf);
		return r;
	}
	if (CHECK_CRC && lvm_crc(buf, (size_t)size) != fsmap_le32(mh + 56)) {
		free(buf);
		return fsmap_fail(why, whylen, -EINVAL, "metadata checksum "
				  "mismatch");
	}
	buf[size] = '\0';
	*text = buf;
	*textlen = (size_t)strnlen(buf, (size_t)size);
	return 0;
}

/* --- the VG ---------------------------------------------------------- */

static bool
same_uuid(const char *label, const char *text)
{
	size_t n = 0;

	for (; *text && n < 32; text++)
		if (*text != '-' && *text != label[n++])
			return false;
	return n == 32 && !*text;
}

struct area {
	uint64_t off, len;	/* PV bytes */
	int lv;			/* index into pv->lvs */
};

static int
cmp_area(const void *a, const void *b)
{
	const struct area *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* The segments of LV node @lvn: what it takes of our PV (@pvname) into
 * @areas, and whether it is linear on it. */
static int
read_lv(const struct tree *t, int lvn, const char *pvname, uint64_t extent,
	struct lvm_pv *pv, struct area *areas, size_t *nareas, char *why,
	size_t whylen)
{
	struct lvm_lv *lv = &pv->lvs[pv->nlvs];
	long long count = 0;
	uint64_t next = 0;

	memset(lv, 0, sizeof *lv);
	snprintf(lv->name, sizeof lv->name, "%.*s", (int)t->v[lvn].keylen,
		 t->v[lvn].key);
	lv->mappable = has_flag(t, lvn, "status", "VISIBLE");
	if (!lv->mappable)
		snprintf(lv->why, sizeof lv->why, "hidden LV");
	if (!get_int(t, lvn, "segment_count", &count) || count < 1 ||
	    count > 1024)
		return fsmap_fail(why, whylen, -EINVAL, "LV %s: bad "
				  "segment_count", lv->name);
	lv->segs = calloc((size_t)count, sizeof *lv->segs);
	if (!lv->segs)
		return -ENOMEM;
	pv->nlvs++;
	for (long long k = 1; k <= count; k++) {
		char key[32];
		long long start, ext, stripes = 1, pairs = 0;
		const char *type;
		int seg, arr;
		bool striped;

		snprintf(key, sizeof key, "segment%lld", k);
		seg = find(t, lvn, key);
		type = get_str(t, seg, "type");
		if (seg < 0 || !type || !get_int(t, seg, "start_extent", &start) ||
		    !get_int(t, seg, "extent_count", &ext) || ext == 0 ||
		    ext > (1ll << 40) || start > (1ll << 40))
			return fsmap_fail(why, whylen, -EINVAL, "LV %s: bad %s",
					  lv->name, key);
		striped = strcmp(type, "striped") == 0;
		if (striped && (!get_int(t, seg, "stripe_count", &stripes) ||
				stripes < 1 || ext % stripes))
			return fsmap_fail(why, whylen, -EINVAL, "LV %s: bad "
					  "stripes in %s", lv->name, key);
		if (!striped || stripes != 1) {
			lv->mappable = false;
			snprintf(lv->why, sizeof lv->why, "%s segment", type);
		}
		if ((uint64_t)start != next) {
			lv->mappable = false;
			snprintf(lv->why, sizeof lv->why, "segments out of "
				 "order");
		}
		next = (uint64_t)start + (uint64_t)ext;
		/* Areas: ["pv0", 0, ...] in stripes (or mirrors, raids). */
		arr = find(t, seg, "stripes");
		if (arr < 0)
			arr = find(t, seg, "mirrors");
		if (arr < 0)
			arr = find(t, seg, "raids");
		for (int e = arr >= 0 && t->v[arr].kind == N_ARRAY ?
			     t->v[arr].child : -1; e >= 0; e = t->v[e].next) {
			int ne = t->v[e].next;
			uint64_t len = striped ? (uint64_t)(ext / stripes) :
				       (uint64_t)ext;

			if (t->v[e].kind != N_STR || ne < 0 ||
			    t->v[ne].kind != N_INT || t->v[ne].num < 0 ||
			    (striped && ++pairs > stripes))
				return fsmap_fail(why, whylen, -EINVAL, "LV %s: "
						  "bad area list", lv->name);
			if (strcmp(t->v[e].str, pvname) == 0) {
				uint64_t pvext = (uint64_t)t->v[ne].num;

				if (*nareas == AREAS_MAX)
					return fsmap_fail(why, whylen, -EINVAL,
							  "too many areas");
				if (pvext > (pv->pe_end - pv->pe_start) / extent ||
				    len > (pv->pe_end - pv->pe_start) / extent -
				    pvext)
					return fsmap_fail(why, whylen, -EINVAL,
							  "LV %s: extents "
							  "outside the PV",
							  lv->name);
				areas[*nareas] = (struct area){
					pv->pe_start + pvext * extent,
					len * extent, (int)(pv->nlvs - 1) };
				(*nareas)++;
				if (striped && stripes == 1) {
					lv->segs[lv->nsegs++] = (struct lvm_seg){
						(uint64_t)start * extent,
						pv->pe_start + pvext * extent,
						len * extent };
				}
			} else if (t->v[e].kind == N_STR) {
				/* On another PV, or a sub-LV. */
				lv->mappable = false;
				snprintf(lv->why, sizeof lv->why, "not whole "
					 "on this PV");
			}
			e = ne;
		}
		if (!striped && arr < 0) {
			lv->mappable = false;
			snprintf(lv->why, sizeof lv->why, "%s segment", type);
		}
		lv->size = next * extent;
	}
	return 0;
}

/* LVs that a snapshot reads from: origin = "name" in any segment. */
static void
mark_origins(const struct tree *t, int lvs, struct lvm_pv *pv)
{
	for (int l = t->v[lvs].child; l >= 0; l = t->v[l].next)
		for (int s = t->v[l].child; s >= 0; s = t->v[s].next) {
			const char *o = t->v[s].kind == N_SECTION ?
					get_str(t, s, "origin") : NULL;

			for (size_t i = 0; o && i < pv->nlvs; i++)
				if (strcmp(pv->lvs[i].name, o) == 0) {
					pv->lvs[i].mappable = false;
					snprintf(pv->lvs[i].why,
						 sizeof pv->lvs[i].why,
						 "has snapshots");
				}
		}
}

static int
read_vg(const struct tree *t, const char *uuid, uint64_t label_pe_start,
	uint64_t size, struct lvm_pv *pv, char *why, size_t whylen)
{
	int vg = -1, pvs, lvs, me = -1;
	long long extent_s, pe_start, pe_count;
	uint64_t extent;
	struct area *areas = NULL;
	size_t nareas = 0, nlvs = 0;
	char pvname[128];
	int r = 0;

	for (int i = t->v[0].child; i >= 0; i = t->v[i].next)
		if (t->v[i].kind == N_SECTION &&
		    find(t, i, "physical_volumes") >= 0)
			vg = i;
	if (vg < 0)
		return fsmap_fail(why, whylen, -EINVAL, "no VG in the metadata");
	snprintf(pv->vg, sizeof pv->vg, "%.*s", (int)t->v[vg].keylen,
		 t->v[vg].key);
	pvs = find(t, vg, "physical_volumes");
	for (int i = t->v[pvs].child; i >= 0; i = t->v[i].next) {
		const char *id = get_str(t, i, "id");

		if (id && same_uuid(uuid, id))
			me = i;
	}
	if (me < 0)
		return fsmap_fail(why, whylen, -EINVAL, "VG %s does not list "
				  "this PV", pv->vg);
	snprintf(pvname, sizeof pvname, "%.*s", (int)t->v[me].keylen,
		 t->v[me].key);
	if (!get_int(t, vg, "extent_size", &extent_s) || extent_s < 1 ||
	    extent_s > (1ll << 31) || !get_int(t, me, "pe_start", &pe_start) ||
	    !get_int(t, me, "pe_count", &pe_count))
		return fsmap_fail(why, whylen, -EINVAL, "VG %s: bad extent "
				  "size, pe_start or pe_count", pv->vg);
	extent = (uint64_t)extent_s * SECTOR;
	pv->pe_start = (uint64_t)pe_start * SECTOR;
	if ((uint64_t)pe_start > size / SECTOR ||
	    (uint64_t)pe_count > (size - pv->pe_start) / extent ||
	    (label_pe_start && label_pe_start != pv->pe_start))
		return fsmap_fail(why, whylen, -EINVAL, "VG %s: extents do not "
				  "fit the PV", pv->vg);
	pv->pe_end = pv->pe_start + (uint64_t)pe_count * extent;
	lvs = find(t, vg, "logical_volumes");
	for (int l = lvs >= 0 ? t->v[lvs].child : -1; l >= 0; l = t->v[l].next)
		nlvs++;
	pv->lvs = calloc(nlvs + 1, sizeof *pv->lvs);
	areas = calloc(AREAS_MAX, sizeof *areas);
	if (!pv->lvs || !areas) {
		free(areas);
		return -ENOMEM;
	}
	for (int l = lvs >= 0 ? t->v[lvs].child : -1; r == 0 && l >= 0;
	     l = t->v[l].next)
		if (t->v[l].kind == N_SECTION)
			r = read_lv(t, l, pvname, extent, pv, areas, &nareas,
				    why, whylen);
	if (r == 0 && lvs >= 0)
		mark_origins(t, lvs, pv);
	/* No two areas on one extent: metadata that says so lies. */
	qsort(areas, nareas, sizeof *areas, cmp_area);
	ferry_extents_init(&pv->taken, size);
	for (size_t i = 0; r == 0 && i < nareas; i++) {
		if (i > 0 && areas[i].off < areas[i - 1].off + areas[i - 1].len)
			r = fsmap_fail(why, whylen, -EINVAL, "VG %s: two "
				       "segments on one extent of this PV",
				       pv->vg);
		else
			r = ferry_extents_add(&pv->taken, areas[i].off,
					      areas[i].len);
	}
	pv->free_known = true;
	free(areas);
	return r;
}

int
lvm_pv_read(const struct fsmap_vol *v, struct lvm_pv *pv, char *why,
	    size_t whylen)
{
	struct tree t = { 0 };
	char uuid[33], *text = NULL;
	size_t len = 0;
	uint64_t pe_start = 0;
	int r;

	memset(pv, 0, sizeof *pv);
	ferry_extents_init(&pv->taken, v->size);
	r = read_label(v, uuid, &pe_start, &text, &len, why, whylen);
	if (r < 0)
		return r;
	t.p = text;
	t.end = text + len;
	t.strings = malloc(len + 1);
	if (!t.strings || new_node(&t, N_SECTION, NULL, 0) < 0) {
		r = -ENOMEM;
	} else if (parse_items(&t, 0, 0) < 0) {
		r = fsmap_fail(why, whylen, -EINVAL, "metadata text does not "
			       "parse (near byte %zu)", (size_t)(t.p - text));
	} else {
		ferry_extents_free(&pv->taken);
		r = read_vg(&t, uuid, pe_start, v->size, pv, why, whylen);
	}
	free(t.v);
	free(t.strings);
	free(text);
	if (r < 0)
		lvm_pv_free(pv);
	return r;
}

void
lvm_pv_free(struct lvm_pv *pv)
{
	for (size_t i = 0; pv->lvs && i < pv->nlvs; i++)
		free(pv->lvs[i].segs);
	free(pv->lvs);
	ferry_extents_free(&pv->taken);
	memset(pv, 0, sizeof *pv);
}

void
lvm_dm_name(const char *vg, const char *lv, char *out, size_t len)
{
	size_t n = 0;

	for (const char *s = vg; *s && n + 3 < len; s++) {
		out[n++] = *s;
		if (*s == '-')
			out[n++] = '-';
	}
	if (n + 2 < len)
		out[n++] = '-';
	for (const char *s = lv; *s && n + 3 < len; s++) {
		out[n++] = *s;
		if (*s == '-')
			out[n++] = '-';
	}
	out[n] = '\0';
}
