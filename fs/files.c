/* ferryfs — the files of the mount: for each disk, the views chosen with
 * -o views= (NAME.raw, NAME.qcow2, NAME.vhd, NAME.fixed.vhd, NAME.pN.raw).
 * All of them read through the disk's one cache. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/log.h"
#include "fs/ferryfs.h"
#include "backends/fsmap/parts.h"

static const struct {
	const char *word;
	unsigned bit;
} view_words[] = {
	{ "raw", VIEWS_RAW },
	{ "qcow2", VIEWS_QCOW2 },
	{ "vhd", VIEWS_VHD },
	{ "fixedvhd", VIEWS_FIXEDVHD },
	{ "parts", VIEWS_PARTS },
	{ "all", VIEWS_ALL },
};

int
files_parse_views(const char *list, char *why, size_t whylen)
{
	unsigned bits = 0;
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ",:");
		bool found = false;

		for (size_t i = 0; i < sizeof view_words / sizeof *view_words;
		     i++)
			if (strlen(view_words[i].word) == n &&
			    strncmp(p, view_words[i].word, n) == 0) {
				bits |= view_words[i].bit;
				found = true;
			}
		if (!found) {
			snprintf(why, whylen, "unknown view '%.*s' (raw, qcow2, "
				 "vhd, fixedvhd, parts, all)", (int)n, p);
			return -EINVAL;
		}
		p += n;
		if (*p)
			p++;
	}
	if (!bits) {
		snprintf(why, whylen, "no view chosen");
		return -EINVAL;
	}
	return (int)bits;
}

static int
add_file(struct ferryfs *fs, size_t *cap, struct fdisk *d,
	 const struct view_ops *ops, const struct view_params *p,
	 const char *kind, const char *suffix, unsigned part)
{
	struct vfile *f;
	struct view v;
	size_t slot = 0;
	int r;

	if (fs->nfiles == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		struct vfile *nv = realloc(fs->files, ncap * sizeof *nv);

		if (!nv)
			return -ENOMEM;
		fs->files = nv;
		*cap = ncap;
	}
	f = &fs->files[fs->nfiles];
	memset(f, 0, sizeof *f);
	snprintf(f->name, sizeof f->name, "%s%s", d->info.name, suffix);
	for (size_t i = 0; i < fs->nfiles; i++)
		if (strcmp(fs->files[i].name, f->name) == 0) {
			ferry_error("%s: no %s view: the name is taken",
				    f->name, kind);
			return 0;
		}
	/* Tried on the map now; layouts made later have the same size. */
	r = view_open(&v, ops, p);
	view_close(&v);
	if (r == -EFBIG || r == -EINVAL) {
		/* Not for this disk (too large for VHD, say): no file. */
		ferry_info("%s: no %s view: %s", d->info.name, kind,
			   r == -EFBIG ? "the disk is too large for the format"
				       : "invalid layout parameters");
		return 0;
	}
	if (r < 0)
		return r;
	for (size_t i = 0; i < fs->nfiles; i++)
		slot += fs->files[i].d == d;
	f->d = d;
	f->ops = ops;
	f->params = *p;
	f->params.map = NULL;
	f->slot = slot;
	f->kind = kind;
	f->part = part;
	fs->nfiles++;
	return 0;
}

/* @d's layout again, with a view for each of its files now. */
static int
relayout(struct ferryfs *fs, struct fdisk *d)
{
	struct ferry_extents m, none;
	struct layout *l, *old;
	int r;

	ferry_extents_init(&m, d->info.size);
	ferry_extents_init(&none, d->info.size);
	r = ferry_extents_unite(disk_map(d), &none, &m);	/* a copy */
	if (r == 0)
		r = layout_new(fs, d, &m, &l);
	ferry_extents_free(&m);
	if (r < 0)
		return r;
	pthread_mutex_lock(&fs->sched.lock);
	l->seq = d->lay->seq;
	old = layout_swap(d, l);
	pthread_mutex_unlock(&fs->sched.lock);
	layout_put(old);
	return 0;
}

struct pread_ctx {
	struct ferryfs *fs;
	struct fdisk *d;
};

static int
read_disk(void *arg, uint64_t off, void *buf, size_t len)
{
	struct pread_ctx *c = arg;

	if (off > c->d->info.size || len > c->d->info.size - off)
		return -EINVAL;
	return fetch_pread(c->fs, c->d, buf, len, off);
}

/* @d's partition table into a malloc'd *@t (d->ptable its scheme).
 * @return as parts_scan(); *@t is set unless -ENOMEM. */
static int
scan_ptable(struct ferryfs *fs, struct fdisk *d, struct part_table **t,
	    char *why, size_t whylen)
{
	struct pread_ctx ctx = { fs, d };
	int r;

	*t = malloc(sizeof **t);
	if (!*t)
		return -ENOMEM;
	r = parts_scan(d->info.size, read_disk, &ctx, *t, why, whylen);
	snprintf(d->ptable, sizeof d->ptable, "%s", (*t)->scheme);
	return r;
}

int
files_scan_ptable(struct ferryfs *fs, struct fdisk *d)
{
	struct part_table *t;
	char why[160];
	int r = scan_ptable(fs, d, &t, why, sizeof why);

	free(t);
	return r;
}

static int
add_partitions(struct ferryfs *fs, size_t *cap, struct fdisk *d,
	       const struct view_params *base)
{
	struct part_table *t;
	char why[160];
	int r = scan_ptable(fs, d, &t, why, sizeof why);

	if (r == -ENOMEM)
		return r;
	if (r == -EINVAL)
		ferry_error("%s: no partition views: %s", d->info.name, why);
	else if (r < 0)
		ferry_error("%s: no partition views: cannot read the "
			    "partition table: %s", d->info.name,
			    strerror(-r));
	r = 0;
	for (size_t i = 0; r == 0 && i < t->n; i++) {
		struct view_params p = *base;
		char suffix[24];

		p.slice_off = t->v[i].off;
		p.slice_len = t->v[i].len;
		snprintf(suffix, sizeof suffix, ".p%u.raw", t->v[i].num);
		r = add_file(fs, cap, d, &view_raw_ops, &p, "part", suffix,
			     t->v[i].num);
	}
	free(t);
	return r;
}

int
files_setup(struct ferryfs *fs)
{
	size_t cap = 0;
	int r = 0;

	for (size_t i = 0; r == 0 && i < fs->ndisks; i++) {
		struct fdisk *d = &fs->disks[i];
		struct view_params p = {
			.size = d->info.size,
			.map = disk_map(d),
			.qcow2_cluster_bits = fs->qcow2_cluster_bits,
		};
		unsigned char md[32];
		EVP_MD_CTX *h = EVP_MD_CTX_new();

		/* VHD unique id: the same disk of the same source always
		 * gets the same one (an RFC 4122 version 4 layout). */
		if (!h)
			return -ENOMEM;
		EVP_DigestInit_ex(h, EVP_sha256(), NULL);
		EVP_DigestUpdate(h, fs->src->id, strlen(fs->src->id) + 1);
		EVP_DigestUpdate(h, d->info.name, strlen(d->info.name));
		EVP_DigestFinal_ex(h, md, NULL);
		EVP_MD_CTX_free(h);
		memcpy(p.uuid, md, 16);
		p.uuid[6] = (uint8_t)((p.uuid[6] & 0x0f) | 0x40);
		p.uuid[8] = (uint8_t)((p.uuid[8] & 0x3f) | 0x80);

		if (fs->views & VIEWS_RAW)
			r = add_file(fs, &cap, d, &view_raw_ops, &p, "raw",
				     ".raw", 0);
		if (r == 0 && fs->views & VIEWS_QCOW2)
			r = add_file(fs, &cap, d, &view_qcow2_ops, &p, "qcow2",
				     ".qcow2", 0);
		if (r == 0 && fs->views & VIEWS_VHD)
			r = add_file(fs, &cap, d, &view_vhd_ops, &p, "vhd",
				     ".vhd", 0);
		if (r == 0 && fs->views & VIEWS_FIXEDVHD)
			r = add_file(fs, &cap, d, &view_fixedvhd_ops, &p,
				     "fixedvhd", ".fixed.vhd", 0);
		if (r == 0 && fs->views & VIEWS_PARTS)
			r = add_partitions(fs, &cap, d, &p);
		if (r == 0)
			r = relayout(fs, d);
	}
	return r;
}

void
files_free(struct ferryfs *fs)
{
	free(fs->files);
	fs->files = NULL;
	fs->nfiles = 0;
}
