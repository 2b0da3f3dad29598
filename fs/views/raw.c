/* ferry — raw view: the disk as it is, or one slice of it (a partition).
 * slice_len == 0 means the whole disk. */
#include <errno.h>

#include "fs/views/view.h"

static int
raw_open(struct view *v)
{
	struct view_params *p = &v->p;

	if (p->slice_len == 0 && p->slice_off == 0)
		p->slice_len = p->size;
	if (p->slice_off > p->size || p->slice_len > p->size - p->slice_off)
		return -EINVAL;
	v->size = p->slice_len;
	v->allocated = ferry_extents_data_in(p->map, p->slice_off,
					     p->slice_len);
	return 0;
}

static void
raw_map(const struct view *v, uint64_t off, struct view_seg *seg)
{
	seg->kind = VIEW_DISK;
	seg->len = v->size - off;
	seg->disk_off = v->p.slice_off + off;
}

const struct view_ops view_raw_ops = {
	.format = "raw",
	.open = raw_open,
	.map = raw_map,
};
