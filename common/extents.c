/* ferry — allocation maps. See extents.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/bitmap.h"
#include "common/extents.h"
#include "common/util.h"

void
ferry_extents_init(struct ferry_extents *m, uint64_t size)
{
	memset(m, 0, sizeof *m);
	m->size = size;
}

void
ferry_extents_free(struct ferry_extents *m)
{
	free(m->v);
	m->v = NULL;
	m->n = m->cap = 0;
	m->data_bytes = 0;
}

int
ferry_extents_add(struct ferry_extents *m, uint64_t off, uint64_t len)
{
	if (len == 0)
		return 0;
	if (off > m->size || len > m->size - off)
		return -EINVAL;
	if (m->n > 0) {
		struct ferry_extent *last = &m->v[m->n - 1];
		uint64_t end = last->off + last->len;

		if (off < end)
			return -EINVAL;
		if (off == end) {
			last->len += len;
			m->data_bytes += len;
			return 0;
		}
	}
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		struct ferry_extent *v = realloc(m->v, cap * sizeof *v);

		if (!v)
			return -ENOMEM;
		m->v = v;
		m->cap = cap;
	}
	m->v[m->n].off = off;
	m->v[m->n].len = len;
	m->n++;
	m->data_bytes += len;
	return 0;
}

int
ferry_extents_all_data(struct ferry_extents *m)
{
	m->n = 0;
	m->data_bytes = 0;
	return ferry_extents_add(m, 0, m->size);
}

void
ferry_extents_zero_holes(const struct ferry_extents *m, void *buf,
			 uint64_t off, size_t len)
{
	uint64_t pos = off, end = off + len;

	for (size_t i = ferry_extents_find(m, off); pos < end; i++) {
		uint64_t next = i < m->n ? FERRY_MIN(m->v[i].off, end) : end;

		if (next > pos)
			memset((uint8_t *)buf + (pos - off), 0,
			       (size_t)(next - pos));
		if (i >= m->n)
			break;
		pos = FERRY_MAX(pos, m->v[i].off + m->v[i].len);
	}
}

int
ferry_extents_minus_blocks(const struct ferry_extents *m,
			   const struct ferry_bitmap *blocks, uint64_t gran,
			   struct ferry_extents *out)
{
	for (size_t i = 0; i < m->n; i++) {
		uint64_t off = m->v[i].off, end = off + m->v[i].len;

		while (off < end) {
			uint64_t b = off / gran;
			uint64_t bend = FERRY_MIN((b + 1) * gran, end);
			int r;

			if (b < blocks->nbits && ferry_bitmap_test(blocks, b)) {
				off = bend;
				continue;
			}
			r = ferry_extents_add(out, off, bend - off);
			if (r < 0)
				return r;
			off = bend;
		}
	}
	return 0;
}

size_t
ferry_extents_find(const struct ferry_extents *m, uint64_t off)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->v[mid].off + m->v[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint64_t
ferry_extents_data_in(const struct ferry_extents *m, uint64_t off,
		      uint64_t len)
{
	uint64_t end, total = 0;

	if (off >= m->size || len == 0)
		return 0;
	end = len > m->size - off ? m->size : off + len;
	for (size_t i = ferry_extents_find(m, off); i < m->n; i++) {
		uint64_t a = m->v[i].off, b = a + m->v[i].len;

		if (a >= end)
			break;
		if (a < off)
			a = off;
		if (b > end)
			b = end;
		total += b - a;
	}
	return total;
}

static int
append_range(json_t *arr, uint64_t off, uint64_t len, const char *type)
{
	json_t *e = json_pack("[IIs]", (json_int_t)off, (json_int_t)len, type);

	if (!e || json_array_append_new(arr, e) < 0)
		return -ENOMEM;
	return 0;
}

char *
ferry_extents_to_json(const struct ferry_extents *m)
{
	json_t *root, *arr;
	uint64_t pos = 0;
	char *text = NULL;

	arr = json_array();
	root = json_pack("{sIso}", "size", (json_int_t)m->size, "extents", arr);
	if (!root)
		return NULL;
	for (size_t i = 0; i < m->n; i++) {
		if (m->v[i].off > pos &&
		    append_range(arr, pos, m->v[i].off - pos, "zero") < 0)
			goto out;
		if (append_range(arr, m->v[i].off, m->v[i].len, "data") < 0)
			goto out;
		pos = m->v[i].off + m->v[i].len;
	}
	if (pos < m->size && append_range(arr, pos, m->size - pos, "zero") < 0)
		goto out;
	text = json_dumps(root, JSON_COMPACT);
out:
	json_decref(root);
	return text;
}

int
ferry_extents_from_json(const char *text, size_t len, uint64_t expect_size,
			struct ferry_extents *m, char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *root, *arr, *e;
	json_int_t size;
	uint64_t pos = 0;
	size_t i;
	int r = -EINVAL;

	ferry_extents_init(m, 0);
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(why, whylen, "not JSON: %s (line %d)", jerr.text,
			 jerr.line);
		return -EINVAL;
	}
	if (json_unpack_ex(root, &jerr, JSON_STRICT, "{sIso}", "size", &size,
			   "extents", &arr) < 0 || !json_is_array(arr)) {
		snprintf(why, whylen, "bad map object: %s", jerr.text);
		goto out;
	}
	if (size < 0 ||
	    (expect_size != UINT64_MAX && (uint64_t)size != expect_size)) {
		snprintf(why, whylen, "map size %lld does not match disk",
			 (long long)size);
		goto out;
	}
	m->size = (uint64_t)size;
	json_array_foreach(arr, i, e) {
		json_int_t off, elen;
		const char *type;

		if (json_unpack_ex(e, &jerr, JSON_STRICT, "[IIs]", &off, &elen,
				   &type) < 0) {
			snprintf(why, whylen, "extent %zu: %s", i, jerr.text);
			goto out;
		}
		if (off < 0 || elen <= 0 || (uint64_t)off != pos ||
		    (uint64_t)elen > m->size - pos) {
			snprintf(why, whylen,
				 "extent %zu [%lld,+%lld) is not contiguous "
				 "inside [0,%llu)", i, (long long)off,
				 (long long)elen, (unsigned long long)m->size);
			goto out;
		}
		if (strcmp(type, "data") == 0) {
			r = ferry_extents_add(m, pos, (uint64_t)elen);
			if (r < 0) {
				snprintf(why, whylen, "out of memory");
				goto out;
			}
			r = -EINVAL;
		} else if (strcmp(type, "zero") != 0) {
			snprintf(why, whylen, "extent %zu: unknown type", i);
			goto out;
		}
		pos += (uint64_t)elen;
	}
	if (pos != m->size) {
		snprintf(why, whylen, "map covers %llu of %llu bytes",
			 (unsigned long long)pos, (unsigned long long)m->size);
		goto out;
	}
	r = 0;
out:
	json_decref(root);
	if (r < 0)
		ferry_extents_free(m);
	return r;
}

/* Add [off, off+len) clipped to the disk to @m; runs come in order. */
static int
clip_add(struct ferry_extents *m, uint64_t off, uint64_t len)
{
	if (off >= m->size)
		return 0;
	return ferry_extents_add(m, off, FERRY_MIN(len, m->size - off));
}

/* @a less @b, clipped to out->size, into @out. */
int
ferry_extents_subtract(const struct ferry_extents *a,
		       const struct ferry_extents *b, struct ferry_extents *out)
{
	size_t j = 0;

	for (size_t i = 0; i < a->n; i++) {
		uint64_t off = a->v[i].off, end = off + a->v[i].len;

		while (j < b->n && b->v[j].off + b->v[j].len <= off)
			j++;
		for (size_t k = j; off < end && k < b->n &&
				   b->v[k].off < end; k++) {
			if (b->v[k].off > off) {
				int r = clip_add(out, off, b->v[k].off - off);

				if (r < 0)
					return r;
			}
			off = FERRY_MAX(off, b->v[k].off + b->v[k].len);
		}
		if (off < end) {
			int r = clip_add(out, off, end - off);

			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* @a and @b together, clipped to out->size, into @out. */
int
ferry_extents_unite(const struct ferry_extents *a,
		    const struct ferry_extents *b, struct ferry_extents *out)
{
	size_t i = 0, j = 0;
	uint64_t cur = 0, cend = 0;
	bool open = false;

	while (i < a->n || j < b->n) {
		const struct ferry_extent *e =
			j >= b->n || (i < a->n && a->v[i].off <= b->v[j].off) ?
			&a->v[i++] : &b->v[j++];

		if (open && e->off <= cend) {
			cend = FERRY_MAX(cend, e->off + e->len);
			continue;
		}
		if (open) {
			int r = clip_add(out, cur, cend - cur);

			if (r < 0)
				return r;
		}
		cur = e->off;
		cend = e->off + e->len;
		open = true;
	}
	return open ? clip_add(out, cur, cend - cur) : 0;
}
