/* ferry — what every view shares: opening, clipped mapping, rendering into
 * memory, tables of big-endian entries, and granule runs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/views/view.h"

int
view_open(struct view *v, const struct view_ops *ops,
	  const struct view_params *p)
{
	int r;

	memset(v, 0, sizeof *v);
	v->ops = ops;
	v->p = *p;
	r = ops->open(v);
	if (r < 0)
		memset(v, 0, sizeof *v);
	return r;
}

void
view_close(struct view *v)
{
	if (v->ops && v->ops->close)
		v->ops->close(v);
	memset(v, 0, sizeof *v);
}

void
view_map(const struct view *v, uint64_t off, uint64_t len,
	 struct view_seg *seg)
{
	v->ops->map(v, off, seg);
	if (seg->len > len)
		seg->len = len;
}

size_t
view_render(const struct view *v, uint64_t off, size_t len, uint8_t *buf,
	    const uint8_t *disk)
{
	size_t done = 0;

	if (off >= v->size)
		return 0;
	if (len > v->size - off)
		len = (size_t)(v->size - off);
	while (done < len) {
		struct view_seg s;

		view_map(v, off + done, len - done, &s);
		switch (s.kind) {
		case VIEW_META:
			v->ops->meta(v, off + done, buf + done, s.len);
			break;
		case VIEW_DISK:
			memcpy(buf + done, disk + s.disk_off, s.len);
			break;
		case VIEW_ZERO:
			memset(buf + done, 0, s.len);
			break;
		}
		done += s.len;
	}
	return done;
}

int64_t
view_seek(const struct view *v, uint64_t off, bool data)
{
	const struct ferry_extents *m = v->p.map;
	uint64_t pos = off;

	while (pos < v->size) {
		struct view_seg s;
		uint64_t d, end;
		size_t i;

		view_map(v, pos, UINT64_MAX, &s);
		if (s.kind != VIEW_DISK) {
			if ((s.kind == VIEW_META) == data)
				return (int64_t)pos;
			pos += s.len;
			continue;
		}
		d = s.disk_off;
		end = d + s.len;
		i = ferry_extents_find(m, d);
		if (data && i < m->n && m->v[i].off < end)
			return (int64_t)(pos + (m->v[i].off > d ?
						m->v[i].off - d : 0));
		if (!data) {
			if (i == m->n || m->v[i].off > d)
				return (int64_t)pos;	/* d is in a hole */
			if (m->v[i].off + m->v[i].len < end)
				return (int64_t)(pos + m->v[i].off +
						 m->v[i].len - d);
		}
		pos += s.len;
	}
	return data ? -ENXIO : (int64_t)v->size;
}

void
view_fill_table(const struct view *v, uint64_t off, uint8_t *buf, size_t len,
		unsigned width, uint64_t (*entry)(const struct view *v,
						  uint64_t i))
{
	while (len) {
		uint64_t i = off / width;
		unsigned at = (unsigned)(off % width);
		size_t n = width - at < len ? width - at : len;
		uint8_t e[8];

		if (width == 8)
			view_be64(e, entry(v, i));
		else
			view_be32(e, (uint32_t)entry(v, i));
		memcpy(buf, e + at, n);
		buf += n;
		off += n;
		len -= n;
	}
}

int
granules_build(struct granules *g, const struct ferry_extents *m,
	       uint64_t gsize)
{
	size_t cap = 0;

	memset(g, 0, sizeof *g);
	g->size = gsize;
	for (size_t i = 0; i < m->n; i++) {
		uint64_t a = m->v[i].off / gsize;
		uint64_t b = (m->v[i].off + m->v[i].len - 1) / gsize + 1;
		struct granule_run *last = g->n ? &g->v[g->n - 1] : NULL;

		if (m->v[i].len == 0)
			continue;
		if (last && a <= last->end) {	/* shares a granule */
			if (b > last->end) {
				g->total += b - last->end;
				last->end = b;
			}
			continue;
		}
		if (g->n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct granule_run *nv = realloc(g->v,
							 ncap * sizeof *nv);

			if (!nv) {
				granules_free(g);
				return -ENOMEM;
			}
			g->v = nv;
			cap = ncap;
		}
		g->v[g->n++] = (struct granule_run){ a, b, g->total };
		g->total += b - a;
	}
	return 0;
}

void
granules_free(struct granules *g)
{
	free(g->v);
	g->v = NULL;
	g->n = 0;
	g->total = 0;
}

bool
granules_rank(const struct granules *g, uint64_t i, uint64_t *rank)
{
	size_t lo = 0, hi = g->n;

	/* The first run that ends after i. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (g->v[mid].end <= i)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == g->n || g->v[lo].start > i)
		return false;
	*rank = g->v[lo].before + (i - g->v[lo].start);
	return true;
}

uint64_t
granules_select(const struct granules *g, uint64_t k, size_t *run)
{
	size_t lo = 0, hi = g->n;

	/* The last run whose count before is <= k. */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (g->v[mid].before <= k)
			lo = mid;
		else
			hi = mid;
	}
	*run = lo;
	return g->v[lo].start + (k - g->v[lo].before);
}
