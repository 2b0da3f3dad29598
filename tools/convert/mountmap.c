/* ferry-convert — .ferry/map.json parsed. See mountmap.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "tools/convert/mountmap.h"

#define MAX_CHUNKS (UINT64_C(1) << 32)

static int
bad(char *why, size_t whylen, const char *what)
{
	snprintf(why, whylen, "%s", what);
	return -EPROTO;
}

static int
parse_disk(json_t *d, struct mount_map *m, char *why, size_t whylen)
{
	json_t *data, *present, *e;
	const char *gen;
	json_int_t size, chunk, layout = 0;
	int complete, r;
	size_t i;

	if (json_unpack(d, "{s:I, s:I, s:s, s:b, s:o, s:o, s?:I}", "size",
			&size, "chunk_size", &chunk, "generation", &gen,
			"complete", &complete, "data", &data, "present",
			&present, "layout", &layout) < 0 ||
	    !json_is_array(data) || !json_is_array(present))
		return bad(why, whylen, "a disk entry lacks a field");
	if (size < 0 || chunk < 4096 || (chunk & (chunk - 1)) ||
	    chunk > (1 << 30) ||
	    ((uint64_t)size + (uint64_t)chunk - 1) / (uint64_t)chunk >
		    MAX_CHUNKS)
		return bad(why, whylen, "a disk's size or chunk size is out "
			   "of range");
	m->size = (uint64_t)size;
	m->chunk = (uint64_t)chunk;
	m->nchunks = (m->size + m->chunk - 1) / m->chunk;
	m->complete = complete;
	snprintf(m->generation, sizeof m->generation, "%s", gen);
	m->layout = layout > 0 ? (uint64_t)layout : 0;
	ferry_extents_init(&m->data, m->size);
	json_array_foreach(data, i, e) {
		json_int_t off, len;

		if (json_unpack(e, "[II]", &off, &len) < 0 || off < 0 ||
		    len <= 0 || (uint64_t)off > m->size ||
		    (uint64_t)len > m->size - (uint64_t)off)
			return bad(why, whylen, "a data range is malformed "
				   "or outside the disk");
		r = ferry_extents_add(&m->data, (uint64_t)off, (uint64_t)len);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			return bad(why, whylen, "data ranges out of order");
	}
	if (ferry_bitmap_init(&m->present, m->nchunks) < 0)
		return -ENOMEM;
	json_array_foreach(present, i, e) {
		json_int_t first, count;

		if (json_unpack(e, "[II]", &first, &count) < 0 || first < 0 ||
		    count <= 0 || (uint64_t)first > m->nchunks ||
		    (uint64_t)count > m->nchunks - (uint64_t)first)
			return bad(why, whylen, "a run of cached chunks is "
				   "malformed or outside the disk");
		for (json_int_t k = 0; k < count; k++)
			ferry_bitmap_set(&m->present, (uint64_t)(first + k));
	}
	return 0;
}

int
mount_map_parse(const char *text, size_t len, const char *name,
		struct mount_map *m, char *why, size_t whylen)
{
	json_t *root, *disks, *files, *e, *disk = NULL;
	json_error_t jerr;
	const char *fdisk = NULL, *format = NULL;
	json_int_t off = 0, length = 0, version = 0;
	int prefetch = 0;
	size_t i;
	int r;

	memset(m, 0, sizeof *m);
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(why, whylen, "not JSON: %s", jerr.text);
		return -EPROTO;
	}
	if (json_unpack(root, "{s:I, s?:b, s:o, s:o}", "version", &version,
			"prefetch", &prefetch, "disks", &disks, "files",
			&files) < 0 || version != 1 ||
	    !json_is_array(disks) || !json_is_array(files)) {
		r = bad(why, whylen, "not a version 1 map (version, disks, "
			"files)");
		goto out;
	}
	json_array_foreach(files, i, e) {
		const char *n, *d, *f;
		json_int_t o, l;

		if (json_unpack(e, "{s:s, s:s, s:s, s:I, s:I}", "name", &n,
				"disk", &d, "format", &f, "offset", &o,
				"length", &l) < 0) {
			r = bad(why, whylen, "a file entry lacks a field");
			goto out;
		}
		if (strcmp(n, name) == 0) {
			fdisk = d;
			format = f;
			off = o;
			length = l;
		}
	}
	if (!fdisk) {
		snprintf(why, whylen, "no file \"%s\" in the mount", name);
		r = -ENOENT;
		goto out;
	}
	if (strlen(fdisk) >= sizeof m->disk || strlen(format) >= sizeof
	    m->format) {
		r = bad(why, whylen, "a name is too long");
		goto out;
	}
	snprintf(m->disk, sizeof m->disk, "%s", fdisk);
	snprintf(m->format, sizeof m->format, "%s", format);
	json_array_foreach(disks, i, e) {
		json_t *n = json_object_get(e, "name");

		if (json_is_string(n) && strcmp(json_string_value(n),
						 fdisk) == 0)
			disk = e;
	}
	if (!disk) {
		r = bad(why, whylen, "the file's disk is not listed");
		goto out;
	}
	r = parse_disk(disk, m, why, whylen);
	if (r < 0)
		goto out;
	if (off < 0 || length < 0 || (uint64_t)off > m->size ||
	    (uint64_t)length > m->size - (uint64_t)off) {
		r = bad(why, whylen, "the file's range is outside its disk");
		goto out;
	}
	m->offset = (uint64_t)off;
	m->length = (uint64_t)length;
	m->prefetch = prefetch;
	/* A raw file of the whole disk, to read the disk's bytes from
	 * whatever the format of the file asked for. */
	json_array_foreach(files, i, e) {
		const char *n = "", *d = "", *f = "";
		json_int_t o = -1, l = -1;

		json_unpack(e, "{s:s, s:s, s:s, s:I, s:I}", "name", &n, "disk",
			    &d, "format", &f, "offset", &o, "length", &l);
		if (strcmp(d, fdisk) == 0 && strcmp(f, "raw") == 0 && o == 0 &&
		    (uint64_t)l == m->size && !m->raw_file[0] &&
		    strlen(n) < sizeof m->raw_file && !strchr(n, '/'))
			snprintf(m->raw_file, sizeof m->raw_file, "%s", n);
	}
out:
	json_decref(root);
	if (r < 0)
		mount_map_free(m);
	return r;
}

void
mount_map_free(struct mount_map *m)
{
	ferry_extents_free(&m->data);
	ferry_bitmap_free(&m->present);
	memset(m, 0, sizeof *m);
}

bool
mount_map_ready(const struct mount_map *m, uint64_t off, uint64_t len)
{
	size_t i;

	if (len == 0)
		return true;
	/* Only chunks with data need to be cached; holes read as zeros. */
	for (i = ferry_extents_find(&m->data, off); i < m->data.n; i++) {
		const struct ferry_extent *e = &m->data.v[i];
		uint64_t a = e->off > off ? e->off : off;
		uint64_t b = e->off + e->len < off + len ? e->off + e->len :
			     off + len;

		if (a >= off + len)
			break;
		for (uint64_t c = a / m->chunk; c <= (b - 1) / m->chunk; c++)
			if (!ferry_bitmap_test(&m->present, c))
				return false;
	}
	return true;
}
