/* ferryfs — layouts: a disk's map and the views made from it, as one
 * object that a resync replaces whole.
 *
 * A live source's used map grows and shrinks between syncs, and the qcow2
 * and VHD views are functions of that map: their tables, their sizes, where
 * each cluster lies. So the map and every view of it are one immutable
 * value, reference-counted. An operation (a read, a getattr, a lseek, a
 * status snapshot) takes a reference once and uses that layout to the
 * end: a read that began before a resync is answered wholly from the old
 * layout, one after from the new, never from both. The layout a reader
 * holds stays valid however long it waits for its chunks.
 *
 * The fetch engine reads the current layout's map under sched.lock
 * (disk_map()); a swap holds that lock and lay_lock, so it never sees one
 * change under it, and a worker's run keeps the reference it began with.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "fs/ferryfs.h"

struct layout *
layout_get(struct fdisk *d)
{
	struct layout *l;

	pthread_mutex_lock(&d->lay_lock);
	l = d->lay;
	l->refs++;
	pthread_mutex_unlock(&d->lay_lock);
	return l;
}

void
layout_put(struct layout *l)
{
	if (!l || --l->refs > 0)
		return;
	for (size_t i = 0; i < l->nviews; i++)
		view_close(&l->views[i]);
	ferry_extents_free(&l->map);
	free(l);
}

int
layout_new(struct ferryfs *fs, struct fdisk *d, struct ferry_extents *map,
	   struct layout **out)
{
	size_t n = 0;
	struct layout *l;
	int r = 0;

	for (size_t k = 0; k < fs->nfiles; k++)
		if (fs->files[k].d == d)
			n++;
	l = calloc(1, sizeof *l + n * sizeof l->views[0]);
	if (!l)
		return -ENOMEM;
	l->refs = 1;
	l->nviews = n;
	l->map = *map;		/* moved in */
	memset(map, 0, sizeof *map);
	for (size_t k = 0; k < fs->nfiles && r == 0; k++) {
		struct vfile *f = &fs->files[k];
		struct view_params p;

		if (f->d != d)
			continue;
		p = f->params;
		p.map = &l->map;
		r = view_open(&l->views[f->slot], f->ops, &p);
		if (r < 0)
			ferry_error("%s: laying out %s: %s", d->info.name,
				    f->name, strerror(-r));
	}
	if (r < 0) {
		layout_put(l);	/* views not opened are all zeros */
		return r;
	}
	*out = l;
	return 0;
}

struct layout *
layout_swap(struct fdisk *d, struct layout *l)
{
	struct layout *old;

	pthread_mutex_lock(&d->lay_lock);
	old = d->lay;
	d->lay = l;
	pthread_mutex_unlock(&d->lay_lock);
	return old;
}
