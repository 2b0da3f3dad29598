/* ferryfs — re-verify the whole cache against the source's digests.
 *
 * Started by writing "verify" to .ferry/control; one background thread
 * walks every disk whose source serves digests, asks for them a batch at a
 * time, hashes each cached chunk as it reads back from the cache file
 * (holes read as zeros, as on the source) and forgets every chunk that
 * differs, so that it is fetched again. Progress is in status.json under
 * "reverify".
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "fs/ferryfs.h"

#define BATCH_BYTES (64u << 20)	/* digests asked for at once */
#define READ_PIECE (1u << 20)

static int
verify_disk(struct ferryfs *fs, struct fdisk *d, uint8_t *buf,
	    struct ferry_hasher *h)
{
	size_t batch = (size_t)FERRY_MAX(1, BATCH_BYTES / d->chunk);
	struct ferry_digest *want = calloc(batch, sizeof *want), got;
	struct layout *l;
	int r = 0;

	if (!want)
		return -ENOMEM;
	for (uint64_t first = 0; first < d->nchunks && !fs->stop && r == 0;
	     first += batch) {
		size_t n = (size_t)FERRY_MIN((uint64_t)batch,
					     d->nchunks - first);
		bool any = false;

		for (size_t i = 0; i < n && !any; i++)
			any = ferry_bitmap_test(&d->present, first + i);
		if (!any)
			continue;
		r = ferry_source_digests(fs->src, d->idx, d->chunk, first, n,
					 want);
		for (size_t i = 0; i < n && r == 0 && !fs->stop; i++) {
			uint64_t c = first + i;

			if (!ferry_bitmap_test(&d->present, c))
				continue;
			l = layout_get(d);
			r = cache_hash(d, &l->map, c, buf, READ_PIECE, h,
				       &got);
			layout_put(l);
			if (r < 0)
				break;
			fs->reverify.checked++;
			if (ferry_digest_equal(&got, &want[i]))
				continue;
			fs->reverify.bad++;
			ferry_error("cache %s: chunk %" PRIu64 " differs from "
				    "the source's digest; fetching it again",
				    d->path, c);
			fetch_forget(fs, d, c);
		}
	}
	free(want);
	return r;
}

static void *
verify_main(void *arg)
{
	struct ferryfs *fs = arg;
	struct ferry_hasher h;
	uint8_t *buf = malloc(READ_PIECE);
	int r = 0;

	if (!buf || ferry_hasher_init(&h) < 0) {
		free(buf);
		fs->reverify.state = "error";
		return NULL;
	}
	for (size_t i = 0; i < fs->ndisks && r == 0 && !fs->stop; i++)
		if (fs->disks[i].verify)
			r = verify_disk(fs, &fs->disks[i], buf, &h);
	ferry_hasher_free(&h);
	free(buf);
	if (fs->stop)
		r = -ECANCELED;
	if (r == 0)
		ferry_info("re-verify: %" PRIu64 " cached chunks checked, %"
			   PRIu64 " differed and will be fetched again",
			   (uint64_t)fs->reverify.checked,
			   (uint64_t)fs->reverify.bad);
	fs->reverify.state = r == 0 ? "done" :
			     r == -ECANCELED ? "stopped" : "error";
	return NULL;
}

int
verify_start(struct ferryfs *fs)
{
	bool any = false;

	for (size_t i = 0; i < fs->ndisks; i++)
		any |= fs->disks[i].verify;
	if (!any) {
		ferry_error(".ferry/control: verify: the source serves no "
			    "digests (or -o verify=0)");
		return -ENOTSUP;
	}
	pthread_mutex_lock(&fs->reverify.lock);
	if (strcmp(fs->reverify.state, "running") == 0) {
		pthread_mutex_unlock(&fs->reverify.lock);
		return 0;	/* already at it */
	}
	if (fs->reverify.started)
		pthread_join(fs->reverify.tid, NULL);
	fs->reverify.checked = fs->reverify.bad = 0;
	fs->reverify.state = "running";
	fs->reverify.started =
		pthread_create(&fs->reverify.tid, NULL, verify_main, fs) == 0;
	if (!fs->reverify.started)
		fs->reverify.state = "error";
	pthread_mutex_unlock(&fs->reverify.lock);
	return fs->reverify.started ? 0 : -EAGAIN;
}

void
verify_stop(struct ferryfs *fs)
{
	pthread_mutex_lock(&fs->reverify.lock);
	if (fs->reverify.started)
		pthread_join(fs->reverify.tid, NULL);
	fs->reverify.started = false;
	pthread_mutex_unlock(&fs->reverify.lock);
}
