/* ferryfs — chunk scheduler.
 *
 * Workers (-o streams=N, one backend connection each) take jobs in strict
 * priority: chunks readers wait for, then readahead behind readers, then
 * background hydration of the next allocated chunk not yet cached (round
 * robin over disks). Hydration jobs are made only when a worker is idle, so
 * a demand read waits at most for the chunks already on the wire.
 *
 * Readers whose data is cached never take a lock: presence is an atomic
 * bitmap. The scheduler lock is held only to queue, pick or finish a job.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/chunk.h"
#include "common/log.h"
#include "common/util.h"
#include "fs/ferryfs.h"

struct fetch_job {
	struct fdisk *d;
	uint64_t chunk;
	struct fetch_queue *queue;	/* queued on, or NULL */
	struct fetch_job *qnext, *qprev;
	struct fetch_job *inext;	/* in sched.inflight */
	bool done;
	int err;
	int waiters;
};

bool
fetch_chunk_has_data(const struct fdisk *d, uint64_t c)
{
	return ferry_chunk_data(&d->map, d->chunk, c) > 0;
}

static void
q_push(struct fetch_queue *q, struct fetch_job *j)
{
	j->queue = q;
	j->qnext = NULL;
	j->qprev = q->tail;
	if (q->tail)
		q->tail->qnext = j;
	else
		q->head = j;
	q->tail = j;
}

static void
q_remove(struct fetch_job *j)
{
	struct fetch_queue *q = j->queue;

	if (!q)
		return;
	if (j->qprev)
		j->qprev->qnext = j->qnext;
	else
		q->head = j->qnext;
	if (j->qnext)
		j->qnext->qprev = j->qprev;
	else
		q->tail = j->qprev;
	j->queue = NULL;
	j->qnext = j->qprev = NULL;
}

static struct fetch_job *
job_new(struct sched *s, struct fdisk *d, uint64_t c)
{
	struct fetch_job *j = calloc(1, sizeof *j);

	if (!j)
		return NULL;
	j->d = d;
	j->chunk = c;
	j->inext = s->inflight;
	s->inflight = j;
	ferry_bitmap_set(&d->busy, c);
	return j;
}

static struct fetch_job *
job_find(struct sched *s, struct fdisk *d, uint64_t c)
{
	for (struct fetch_job *j = s->inflight; j; j = j->inext)
		if (j->d == d && j->chunk == c)
			return j;
	return NULL;
}

/* Next job for a worker, or NULL; sched.lock held. */
static struct fetch_job *
job_next(struct ferryfs *fs)
{
	struct sched *s = &fs->sched;
	struct fetch_job *j = s->demand.head ? s->demand.head : s->ahead.head;

	if (j) {
		q_remove(j);
		return j;
	}
	if (!fs->prefetch)
		return NULL;
	for (size_t i = 0; i < fs->ndisks; i++) {
		size_t di = (s->rr + i) % fs->ndisks;
		struct fdisk *d = &fs->disks[di];

		for (uint64_t c = d->hydrate_next; c < d->nchunks; c++) {
			if (ferry_bitmap_test(&d->present, c) ||
			    ferry_bitmap_test(&d->busy, c) ||
			    !fetch_chunk_has_data(d, c))
				continue;
			d->hydrate_next = c + 1;
			s->rr = di + 1;
			return job_new(s, d, c);
		}
		d->hydrate_next = d->nchunks;
	}
	return NULL;
}

static int
sink_to_cache(void *arg, uint64_t off, const void *buf, size_t len)
{
	struct fdisk *d = arg;
	int r;

	d->received += len;
	r = ferry_pwrite_all(d->data_fd, buf, len, off);
	if (r < 0) {
		errno = -r;
		ferry_error("cache %s.data: write at %" PRIu64 ": %m",
			    d->path, off);
	}
	return r;
}

/* Fetch the data ranges of chunk @c straight into the cache file. */
static int
fetch_chunk(struct ferryfs *fs, struct fdisk *d, uint64_t c)
{
	uint64_t start = c * d->chunk;
	uint64_t end = FERRY_MIN(start + d->chunk, d->info.size);

	for (size_t i = ferry_extents_find(&d->map, start); i < d->map.n; i++) {
		const struct ferry_extent *e = &d->map.v[i];
		uint64_t a = FERRY_MAX(e->off, start);
		uint64_t b = FERRY_MIN(e->off + e->len, end);
		int r;

		if (e->off >= end)
			break;
		r = ferry_source_read(fs->src, d->idx, a, b - a, sink_to_cache,
				      d);
		if (r < 0)
			return r;
	}
	return 0;
}

/* sched.lock held. */
static void
job_finish(struct ferryfs *fs, struct fetch_job *j, int err)
{
	struct sched *s = &fs->sched;
	struct fdisk *d = j->d;

	if (err == 0) {
		d->cached += ferry_chunk_data(&d->map, d->chunk, j->chunk);
		d->present_chunks++;
		ferry_bitmap_set(&d->present, j->chunk);
		d->dirty = true;
	} else if (j->chunk < d->hydrate_next) {
		d->hydrate_next = j->chunk;	/* hydration comes back */
	}
	pthread_mutex_lock(&d->lock);
	if (err == 0) {
		d->failing = false;
	} else if (err != -ECANCELED) {
		const char *msg = ferry_last_error();

		d->failing = true;
		snprintf(d->error, sizeof d->error, "%s",
			 msg[0] ? msg : strerror(-err));
	}
	pthread_mutex_unlock(&d->lock);

	ferry_bitmap_clear(&d->busy, j->chunk);
	for (struct fetch_job **pp = &s->inflight; *pp; pp = &(*pp)->inext)
		if (*pp == j) {
			*pp = j->inext;
			break;
		}
	j->done = true;
	j->err = err;
	if (j->waiters == 0)
		free(j);
	pthread_cond_broadcast(&s->done);
}

static void *
worker_main(void *arg)
{
	struct ferryfs *fs = arg;
	struct sched *s = &fs->sched;
	unsigned backoff = 0;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct fetch_job *j = NULL;
		bool demand;
		int err;

		while (!fs->stop && !(j = job_next(fs)))
			pthread_cond_wait(&s->work, &s->lock);
		if (fs->stop)
			break;
		demand = j->waiters > 0;
		pthread_mutex_unlock(&s->lock);

		err = fetch_chunk(fs, j->d, j->chunk);

		pthread_mutex_lock(&s->lock);
		job_finish(fs, j, err);
		if (err == 0 || demand) {
			backoff = 0;
			continue;
		}
		/* Background work that fails (source gone, cache full)
		 * must not spin: wait, longer each time, up to 30 s. */
		backoff = backoff ? FERRY_MIN(backoff * 2, 30u) : 1;
		pthread_mutex_unlock(&s->lock);
		for (unsigned t = 0; t < backoff * 10 && !fs->stop; t++)
			usleep(100000);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static bool
range_needs_fetch(const struct fdisk *d, uint64_t c, uint64_t off,
		  uint64_t end)
{
	return !ferry_bitmap_test(&d->present, c) &&
	       ferry_chunk_data_in_range(&d->map, d->chunk, c, off,
					 end - off) > 0;
}

/* Queue readahead for the chunks after @last; sched.lock held. */
static void
queue_readahead(struct ferryfs *fs, struct fdisk *d, uint64_t last)
{
	for (uint64_t c = last + 1;
	     c <= last + fs->readahead && c < d->nchunks; c++) {
		struct fetch_job *j;

		if (ferry_bitmap_test(&d->present, c) ||
		    ferry_bitmap_test(&d->busy, c) ||
		    !fetch_chunk_has_data(d, c))
			continue;
		j = job_new(&fs->sched, d, c);
		if (!j)
			return;
		q_push(&fs->sched.ahead, j);
		pthread_cond_signal(&fs->sched.work);
	}
}

/* Queue (or join) a demand job for every chunk of [off, end) that holds
 * data not yet cached, adding it to @jobs; sched.lock held. */
static int
queue_demand(struct ferryfs *fs, struct fdisk *d, uint64_t off, uint64_t end,
	     struct fetch_job **jobs, size_t *n)
{
	struct sched *s = &fs->sched;
	uint64_t first, last;

	if (!ferry_chunk_span(off, end - off, d->info.size, d->chunk, &first,
			      &last))
		return 0;
	for (uint64_t c = first; c <= last; c++) {
		struct fetch_job *j;

		if (!range_needs_fetch(d, c, off, end))
			continue;
		j = ferry_bitmap_test(&d->busy, c) ? job_find(s, d, c) : NULL;
		if (!j) {
			j = job_new(s, d, c);
			if (!j)
				return -ENOMEM;
			q_push(&s->demand, j);
		} else if (j->queue == &s->ahead) {
			/* Readahead a reader now needs: to the front. */
			q_remove(j);
			q_push(&s->demand, j);
		}	/* else queued as demand already, or on the wire */
		j->waiters++;
		jobs[(*n)++] = j;
	}
	return 0;
}

int
fetch_ensure_v(struct ferryfs *fs, struct fdisk *d,
	       const struct ferry_extent *rv, size_t nr, bool sequential)
{
	struct sched *s = &fs->sched;
	struct fetch_job *small[16], **jobs = small;
	uint64_t first, last = 0, need = 0;
	size_t n = 0;
	bool ahead = false;
	int r = 0;

	for (size_t i = 0; i < nr; i++) {
		uint64_t off = rv[i].off, end;

		if (!ferry_chunk_span(off, rv[i].len, d->info.size, d->chunk,
				      &first, &last))
			continue;
		end = FERRY_MIN(off + rv[i].len, d->info.size);
		for (uint64_t c = first; c <= last; c++)
			if (range_needs_fetch(d, c, off, end))
				need++;
	}
	/* Keep readahead going while a reader moves through cached data:
	 * look only at the farthest chunk of the window (one atomic load). */
	if (sequential && nr && fs->readahead &&
	    last + fs->readahead < d->nchunks &&
	    !ferry_bitmap_test(&d->present, last + fs->readahead))
		ahead = true;
	if (need == 0 && !ahead)
		return 0;

	if (need > sizeof small / sizeof small[0]) {
		jobs = calloc(need, sizeof *jobs);
		if (!jobs)
			return -ENOMEM;
	}
	pthread_mutex_lock(&s->lock);
	/* Presence only grows, so no more than @need jobs are queued. */
	for (size_t i = 0; i < nr && r == 0; i++) {
		uint64_t end;

		if (rv[i].off >= d->info.size || rv[i].len == 0)
			continue;
		end = FERRY_MIN(rv[i].off + rv[i].len, d->info.size);
		r = queue_demand(fs, d, rv[i].off, end, jobs, &n);
	}
	if (n)
		pthread_cond_broadcast(&s->work);
	if (ahead)
		queue_readahead(fs, d, last);
	for (size_t i = 0; i < n; i++) {
		struct fetch_job *j = jobs[i];

		while (!j->done && !fs->stop)
			pthread_cond_wait(&s->done, &s->lock);
		if (!j->done) {
			r = -ECANCELED;	/* unmounting */
			j->waiters--;
			continue;
		}
		if (j->err && !r)
			r = j->err;
		if (--j->waiters == 0)
			free(j);
	}
	pthread_mutex_unlock(&s->lock);
	if (jobs != small)
		free(jobs);
	return r;
}

int
fetch_ensure(struct ferryfs *fs, struct fdisk *d, uint64_t off, uint64_t len,
	     bool sequential)
{
	struct ferry_extent r = { off, len };

	return fetch_ensure_v(fs, d, &r, 1, sequential);
}

int
fetch_pread(struct ferryfs *fs, struct fdisk *d, void *buf, size_t len,
	    uint64_t off)
{
	int r = fetch_ensure(fs, d, off, len, false);

	while (r == 0 && len) {
		ssize_t k = pread(d->data_fd, buf, len, (off_t)off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			r = k < 0 ? -errno : -EIO;
			break;
		}
		buf = (char *)buf + k;
		len -= (size_t)k;
		off += (uint64_t)k;
	}
	return r;
}

int
fetch_start(struct ferryfs *fs)
{
	struct sched *s = &fs->sched;

	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->work, NULL);
	pthread_cond_init(&s->done, NULL);
	fs->workers = calloc(fs->streams, sizeof *fs->workers);
	if (!fs->workers)
		return -ENOMEM;
	for (unsigned i = 0; i < fs->streams; i++) {
		if (pthread_create(&fs->workers[i], NULL, worker_main, fs)) {
			ferry_error("cannot start fetch worker %u", i);
			return -EAGAIN;
		}
		fs->nworkers++;
	}
	return 0;
}

void
fetch_stop(struct ferryfs *fs)
{
	struct sched *s = &fs->sched;

	pthread_mutex_lock(&s->lock);
	fs->stop = true;
	pthread_cond_broadcast(&s->work);
	pthread_cond_broadcast(&s->done);
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < fs->nworkers; i++)
		pthread_join(fs->workers[i], NULL);
	/* Jobs nobody will run any more. */
	while (s->inflight) {
		struct fetch_job *j = s->inflight;

		s->inflight = j->inext;
		ferry_bitmap_clear(&j->d->busy, j->chunk);
		if (j->waiters == 0)
			free(j);
	}
	s->demand.head = s->demand.tail = NULL;
	s->ahead.head = s->ahead.tail = NULL;
	free(fs->workers);
	fs->workers = NULL;
	fs->nworkers = 0;
}
