/* ferry — the used-blocks filter: a source as its filesystems see it.
 *
 * Like an nbdkit filter, it is a backend over another backend. The disk's
 * used ranges (fsmap/) are computed on demand and kept FERRY_USEDMAP_TTL
 * seconds (or 20 times what the computation took, if longer: a map that
 * takes 100 ms is kept 2 s, so mapping costs at most 5%); a reader
 * meanwhile uses the last map, so a map is never older than that plus one
 * computation. Every read zeroes what the current
 * map calls free, and extents are the inner allocation less the free
 * space, so what goes on the wire is always "the source with its free
 * space zeroed", whichever way it is asked for (data, digests, zstd).
 *
 * A volume whose map changes method or reason is logged once, with the
 * cause (an unknown type, a damaged bitmap, a mount without GETFSMAP).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/fsmap/fsmap.h"
#include "backends/fsmap/mounted.h"
#include "backends/usedmap.h"
#include "common/log.h"
#include "common/util.h"

struct umap {
	struct ferry_extents used;	/* what the filesystems use */
	struct ferry_extents served;	/* inner allocation less free space */
	struct fsmap_report rep;
	double at;			/* when it was computed */
	double cost;			/* seconds it took */
	unsigned refs;			/* under the wrapper's lock */
};

struct usedmap {
	struct ferry_source *inner;
	char path[4096];
	struct mounted_ctx mctx;
	struct fsmap_kernel kern;
	bool kern_ok;
	pthread_mutex_t lock;
	pthread_cond_t done;
	bool computing;
	struct umap *cur;
	double since;			/* no map computed before serves */
	/* A volume of the disk (a file) is mounted here: it changes while
	 * served, so it is live, with a generation of its identity and size
	 * (its mtime changes at every write). Set by a map, under lock;
	 * applied by a refresh, which runs under the exporter's disk lock. */
	bool live, live_applied;
	struct fsmap_report logged;	/* the last report, as logged */
};

static const struct ferry_backend usedmap_backend;

static void
umap_free(struct umap *m)
{
	ferry_extents_free(&m->used);
	ferry_extents_free(&m->served);
	fsmap_report_free(&m->rep);
	free(m);
}

static void
umap_put(struct usedmap *u, struct umap *m)
{
	bool last;

	pthread_mutex_lock(&u->lock);
	last = --m->refs == 0;
	pthread_mutex_unlock(&u->lock);
	if (last)
		umap_free(m);
}

static int
inner_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct usedmap *u = ctx;

	return u->inner->ops->pread(u->inner, 0, buf, len, off);
}

/* Log the volumes whose map changed method or reason since last time. */
static void
log_changes(struct usedmap *u, const struct umap *m)
{
	const char *disk = u->inner->disks[0].name;

	for (size_t i = 0; i < m->rep.n; i++) {
		const struct fsmap_entry *e = &m->rep.v[i], *o = NULL;
		char a[32], b[32];

		for (size_t k = 0; k < u->logged.n && !o; k++)
			if (strcmp(u->logged.v[k].where, e->where) == 0)
				o = &u->logged.v[k];
		if (o && o->method == e->method && !strcmp(o->why, e->why) &&
		    !strcmp(o->type, e->type))
			continue;
		if (e->method == FSMAP_UNKNOWN)
			ferry_info("%s %s: %s%sall data: %s", disk, e->where,
				   e->type, e->type[0] ? ", " : "", e->why);
		else
			ferry_info("%s %s: %s, %s used of %s (%s map)", disk,
				   e->where, e->type,
				   ferry_format_size(e->used, a, sizeof a),
				   ferry_format_size(e->len, b, sizeof b),
				   fsmap_method_name(e->method));
	}
	fsmap_report_free(&u->logged);
	u->logged.v = malloc(m->rep.n * sizeof *m->rep.v + 1);
	if (u->logged.v) {
		memcpy(u->logged.v, m->rep.v, m->rep.n * sizeof *m->rep.v);
		u->logged.n = u->logged.cap = m->rep.n;
	}
}

static struct umap *
compute(struct usedmap *u)
{
	struct ferry_source *in = u->inner;
	uint64_t size = in->disks[0].size;
	int fd = in->ops->fd ? in->ops->fd(in, 0) : -1;
	struct fsmap_vol v = { inner_read, u, size, fd >= 0, fd, 0 };
	struct umap *m = calloc(1, sizeof *m);
	struct ferry_extents alloc, all, free_space;
	int r;

	if (!m)
		return NULL;
	m->refs = 1;
	m->at = ferry_now();
	ferry_extents_init(&m->used, size);
	ferry_extents_init(&m->served, size);
	ferry_extents_init(&alloc, size);
	ferry_extents_init(&all, size);
	ferry_extents_init(&free_space, size);
	r = fsmap_disk(&v, &fsmap_probe_blkid, u->kern_ok ? &u->kern : NULL,
		       &m->used, &m->rep);
	if (r < 0) {
		ferry_error("%s: filesystem maps: %s; serving every block",
			    in->disks[0].name, strerror(-r));
		ferry_extents_free(&m->used);
		ferry_extents_init(&m->used, size);
		fsmap_report_free(&m->rep);
		ferry_extents_all_data(&m->used);
	}
	r = in->ops->extents(in, 0, &alloc);
	if (r == 0)
		r = ferry_extents_all_data(&all);
	if (r == 0)
		r = ferry_extents_subtract(&all, &m->used, &free_space);
	if (r == 0)
		r = ferry_extents_subtract(&alloc, &free_space, &m->served);
	ferry_extents_free(&alloc);
	ferry_extents_free(&all);
	ferry_extents_free(&free_space);
	if (r < 0) {
		umap_free(m);
		return NULL;
	}
	m->cost = ferry_now() - m->at;
	return m;
}

/* How long @m serves: FERRY_USEDMAP_TTL, or longer for a map that was
 * slow to compute, so that mapping takes at most 1/20 of the time. */
static double
ttl(const struct umap *m)
{
	return FERRY_MAX(FERRY_USEDMAP_TTL, 20 * m->cost);
}

/* The current map, computed again when older than the TTL. */
static struct umap *
get_map(struct usedmap *u)
{
	struct umap *m, *old;

	pthread_mutex_lock(&u->lock);
	for (;;) {
		m = u->cur;
		if (m && m->at >= u->since &&
		    (u->computing || ferry_now() - m->at < ttl(m))) {
			m->refs++;
			pthread_mutex_unlock(&u->lock);
			return m;
		}
		if (!u->computing)
			break;
		pthread_cond_wait(&u->done, &u->lock);
	}
	u->computing = true;
	pthread_mutex_unlock(&u->lock);
	m = compute(u);
	pthread_mutex_lock(&u->lock);
	if (m) {
		for (size_t i = 0; i < m->rep.n; i++)
			u->live = u->live || m->rep.v[i].method == FSMAP_KERNEL;
		log_changes(u, m);
		ferry_debug("%s: mapped in %.3f s; %" PRIu64 " bytes used, "
			    "%" PRIu64 " served", u->inner->disks[0].name,
			    m->cost, m->used.data_bytes, m->served.data_bytes);
	}
	old = m ? u->cur : NULL;
	if (m) {
		u->cur = m;
		m->refs++;
	} else if ((m = u->cur)) {
		m->refs++;	/* keep serving the last map */
	}
	u->computing = false;
	pthread_cond_broadcast(&u->done);
	if (old && --old->refs == 0) {
		pthread_mutex_unlock(&u->lock);
		umap_free(old);
		return m;
	}
	pthread_mutex_unlock(&u->lock);
	return m;
}

static int
usedmap_extents(struct ferry_source *src, unsigned disk,
		struct ferry_extents *map)
{
	struct usedmap *u = src->priv;
	struct umap *m = get_map(u);
	int r = 0;

	(void)disk;
	if (!m) {
		ferry_error("%s: no filesystem map (out of memory)",
			    src->disks[0].name);
		return -ENOMEM;
	}
	if (m->served.size != map->size) {
		r = -EAGAIN;	/* the disk changed size meanwhile */
		ferry_error("%s: disk size changed while mapping",
			    src->disks[0].name);
	}
	for (size_t i = 0; r == 0 && i < m->served.n; i++)
		r = ferry_extents_add(map, m->served.v[i].off,
				      m->served.v[i].len);
	umap_put(u, m);
	return r;
}

static int
usedmap_pread(struct ferry_source *src, unsigned disk, void *buf, size_t len,
	      uint64_t off)
{
	struct usedmap *u = src->priv;
	struct umap *m;
	int r = u->inner->ops->pread(u->inner, disk, buf, len, off);

	if (r < 0)
		return r;
	m = get_map(u);
	if (!m)
		return 0;	/* no map: every byte as it is, never less */
	ferry_extents_zero_holes(&m->used, buf, off, len);
	umap_put(u, m);
	return 0;
}

/* A live file's generation: its identity (the inner source's) and size. */
static void
live_generation(struct usedmap *u, uint64_t size, char *out, size_t len)
{
	uint64_t h = 0xcbf29ce484222325u;	/* FNV-1a of the identity */

	for (const char *p = u->inner->id; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3u;
	snprintf(out, len, "live-%016" PRIx64 "-%" PRIu64, h, size);
}

/* A file written since (new generation) or resized: map it again now. A
 * live one (mounted here) changes generation only with its size. */
static int
usedmap_refresh(struct ferry_source *src, unsigned disk)
{
	struct usedmap *u = src->priv;
	struct ferry_disk_info *d = &src->disks[0];
	int r;

	if (!u->inner->ops->refresh)
		return 0;
	r = u->inner->ops->refresh(u->inner, disk);
	if (r < 0)
		return r;
	pthread_mutex_lock(&u->lock);
	if (r == 1 || (u->live && !u->live_applied)) {
		char old[sizeof d->generation];

		snprintf(old, sizeof old, "%s", d->generation);
		if (r == 1 && u->cur)
			u->cur->at = -INFINITY;
		*d = u->inner->disks[0];
		if (u->live && !d->live) {
			/* Its content follows the mounted filesystem. */
			d->live = true;
			live_generation(u, d->size, d->generation,
					sizeof d->generation);
		}
		u->live_applied = u->live;
		r = strcmp(old, d->generation) != 0;
	}
	pthread_mutex_unlock(&u->lock);
	return r;
}

static void
usedmap_close(struct ferry_source *src)
{
	struct usedmap *u = src->priv;

	if (u->cur)
		umap_free(u->cur);
	fsmap_report_free(&u->logged);
	ferry_source_close(u->inner);
	pthread_mutex_destroy(&u->lock);
	pthread_cond_destroy(&u->done);
	free(u);
	free(src->disks);
	free(src);
}

static const struct ferry_backend usedmap_backend = {
	.name = "usedmap",
	.close = usedmap_close,
	.extents = usedmap_extents,
	.pread = usedmap_pread,
	.refresh = usedmap_refresh,
};

int
ferry_usedmap_wrap(struct ferry_source **srcp, const char *path)
{
	struct ferry_source *in = *srcp, *src;
	struct usedmap *u;
	struct umap *m;

	if (in->ndisks != 1)
		return -EINVAL;
	src = calloc(1, sizeof *src);
	u = calloc(1, sizeof *u);
	if (src)
		src->disks = calloc(1, sizeof *src->disks);
	if (!src || !u || !src->disks) {
		if (src)
			free(src->disks);
		free(src);
		free(u);
		return -ENOMEM;
	}
	u->inner = in;
	snprintf(u->path, sizeof u->path, "%s", path);
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->done, NULL);
	u->since = -INFINITY;
	/* Mounted volumes are mapped by the kernel when we can tell where
	 * the path lies; an image's virtual disk is never mounted here. */
	u->kern_ok = strcmp(in->ops->name, "file") == 0 &&
		     mounted_init(&u->mctx, path, &u->kern) == 0;
	pthread_mutex_init(&src->health.lock, NULL);
	src->ops = &usedmap_backend;
	src->priv = u;
	src->ndisks = 1;
	src->disks[0] = in->disks[0];
	snprintf(src->id, sizeof src->id, "%s", in->id);
	m = get_map(u);
	if (!m) {
		u->inner = NULL;
		pthread_mutex_destroy(&u->lock);
		pthread_cond_destroy(&u->done);
		free(u);
		free(src->disks);
		free(src);
		return -ENOMEM;
	}
	umap_put(u, m);
	*srcp = src;
	return 0;
}

void
ferry_usedmap_since(struct ferry_source *src, double t)
{
	struct usedmap *u = src->priv;

	if (src->ops != &usedmap_backend)
		return;
	pthread_mutex_lock(&u->lock);
	u->since = FERRY_MAX(u->since, t);
	pthread_mutex_unlock(&u->lock);
}

json_t *
ferry_usedmap_volumes(struct ferry_source *src)
{
	struct usedmap *u = src->priv;
	struct umap *m;
	json_t *a;

	if (src->ops != &usedmap_backend || !(m = get_map(u)))
		return NULL;
	a = json_array();
	for (size_t i = 0; a && i < m->rep.n; i++) {
		const struct fsmap_entry *e = &m->rep.v[i];
		json_t *o = json_pack("{sssIsIsssIss}", "where", e->where,
				      "offset", (json_int_t)e->off,
				      "length", (json_int_t)e->len,
				      "type", e->type,
				      "used", (json_int_t)e->used,
				      "map", fsmap_method_name(e->method));

		if (o && e->why[0])
			json_object_set_new(o, "reason", json_string(e->why));
		json_array_append_new(a, o);
	}
	umap_put(u, m);
	return a;
}

uint64_t
ferry_usedmap_used(struct ferry_source *src)
{
	struct usedmap *u = src->priv;
	struct umap *m;
	uint64_t n;

	if (src->ops != &usedmap_backend || !(m = get_map(u)))
		return src->disks[0].allocated;
	n = m->served.data_bytes;
	umap_put(u, m);
	return n;
}
