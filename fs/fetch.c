/* ferryfs — transfer engine: which chunks travel, when, on which stream.
 *
 * Two sets of -o streams=N workers, each worker a thread with a keep-alive
 * connection of its own (the http backend's handle pool):
 *  - foreground workers fetch what readers need: first the chunks readers
 *    wait for (demand), then readahead queued ahead of sequential readers;
 *  - background workers hydrate the allocated chunks not yet cached, round
 *    robin over the disks (-o prefetch=1).
 * While any foreground work is queued or on the wire, and for FG_HOLD
 * after, background transfers pause inside their receive callback: the
 * connection is simply not read, TCP holds the sender back, and the demand
 * read has the link and the CPUs to itself. The hold is for readers that
 * come back at once (a run of random reads): were hydration to go on
 * between two reads, the next would wait behind what the source had sent
 * meanwhile, queued in the link (9 ms a read at 200 Mbit/s). A pause longer than PAUSE_MAX gives the request up (its
 * finished chunks stay), well before a server would time the connection
 * out. A background run a reader waits for is never paused.
 *
 * Why threads with blocking easy handles rather than one curl multi handle:
 * TLS is decrypted on the thread that reads the socket, so a multi handle
 * puts every stream's decryption on one core; on a 2-core transit host that
 * core is the limit. Blocking transfers also make yielding and the cap a
 * plain sleep in the callback, with no unpause bookkeeping.
 *
 * A worker takes a run of adjacent chunks (one disk, one class) of up to
 * REQ_MAX bytes and fetches each contiguous data range of the run with one
 * request; holes inside never travel. Chunks complete one by one as the
 * received bytes pass their last data byte, so a reader of the run's first
 * chunk does not wait for the whole run.
 *
 * Readahead: each open file carries a window (struct fetch_ra) that starts
 * at RA_START chunks and doubles, up to -o readahead=, each time a
 * sequential reader comes within half a window of what is queued.
 *
 * Compression (-o compress=auto, the default): each request asks for zstd
 * or not as the data rates measured so far say (common/adapt.h): zstd on
 * a slow link, plain on a fast one where compressing is the narrow part.
 *
 * Verification: when the source serves digests (-o verify=1, the default),
 * a run gets its chunks' digests in the headers of its data replies
 * (in-band, one request for both; from .../digests after the data when a
 * source sends none, and before it when cached chunks are to be compared
 * first), hashes the bytes as they
 * arrive (holes as zeros) and marks a chunk present only if the two agree;
 * a chunk that differs is fetched again a few times, then fails with EIO.
 * On a live disk the retries fetch whole chunks, holes too: a filesystem
 * may have taken blocks since the map was made.
 *
 * Resync: a cached chunk of an earlier generation (a candidate) is kept
 * if its hash matches the source's digest now; if not, it is mended in
 * PATCH_BLOCKs, fetching only the blocks whose own digests differ, and
 * fetched whole only if that does not make it match.
 *
 * Readers whose data is cached never take a lock: presence is an atomic
 * bitmap. The scheduler lock is held only to queue, pick or finish a job.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/chunk.h"
#include "common/log.h"
#include "common/util.h"
#include "fs/ferryfs.h"
#include "fs/pause.h"

#define REQ_MAX (8u << 20)	/* bytes of one run, at least one chunk */
#define RUN_MAX 64		/* chunks of one run */
#define CAND_BUF (1u << 20)	/* reading back a kept chunk */
#define PAUSE_MAX 10.0		/* seconds a background transfer may wait */
#define RA_START 4		/* chunks: the first readahead window */
#define VERIFY_TRIES 3		/* fetches of a chunk whose digest differs */
#define FOLLOW_AHEAD (2u << 20)	/* ra_follows(): reads ahead */
#define LATER_QUIET 0.2		/* seconds without a reader before the
				 * chunks of small reads are fetched */
#define FG_HOLD 0.05		/* seconds background transfers stay
				 * paused after the last foreground work */

struct fetch_job {
	struct fdisk *d;
	uint64_t chunk;
	unsigned epoch;			/* fdisk.epoch when its run began */
	bool started;			/* a run has it (epoch is set) */
	bool fg;			/* demand or readahead */
	struct fetch_queue *queue;	/* queued on, or NULL */
	struct fetch_job *qnext, *qprev;
	struct fetch_job *inext;	/* in sched.inflight */
	bool done;
	int err;
	int waiters;
};

/* The chunks one worker fetches in one go: adjacent, from chunk @first. */
struct run {
	struct ferryfs *fs;
	struct fdisk *d;
	struct layout *lay;		/* the disk's, when the run began */
	bool fg;
	/* Fetch the chunks whole, holes and all: a live disk's chunk that
	 * differed from its digest may have data where the map is older. */
	bool whole;
	uint64_t first;
	size_t n, next;			/* jobs; the first not yet done */
	struct fetch_job *jobs[RUN_MAX];
	uint64_t ends[RUN_MAX];		/* a job is done once bytes reach */
	/* Verification (fdisk.verify): the source's digests of the chunks,
	 * and the hash of the bytes received so far, holes as zeros, up to
	 * disk offset @hpos; a chunk whose digests differ is not done. */
	struct ferry_digest want[RUN_MAX], got[RUN_MAX];
	/* Bit i: want[i] is known. With @inband the digests come in the
	 * data replies' headers (one request for both, and the exporter
	 * reads the blocks once); a chunk none brought waits for the end of
	 * the transfer, when .../digests is asked for it (run_want_rest). */
	uint64_t have;
	bool inband;
	struct ferry_hasher h;
	uint64_t hpos;
	size_t bad;			/* the chunk that differed */
	/* -o compress=auto: the data bytes received, and whether the run
	 * was held back (a paused hydration tells nothing of the link). */
	uint64_t bytes;
	bool paused;
	/* Received bytes not yet written: @slen of them from disk offset
	 * @soff, never across a chunk's end (the worker's buffer of
	 * STAGE_MAX bytes; NULL: each piece is written as it comes). */
	uint8_t *stage;
	uint64_t soff;
	size_t slen;
};

/* The cache file is written in pieces of up to this much, not in the
 * transfer's (a TLS record, 16 KiB): ext4's buffered write costs about as
 * much per call as per byte at that size. Small enough that the piece is
 * still in the CPU's cache when the kernel copies it (half of this
 * machine's 512 KiB L2). ferryfs's CPU per GiB against 16 KiB writes (cold
 * cat, hydration; median of 5): 128 KiB 0.85, 0.83; 256 KiB 0.80, 0.84;
 * 1 MiB 0.95, 0.98. 64 and 512 KiB against 256 under cat: 1.08, 0.99. */
#define STAGE_MAX (256u << 10)

bool
fetch_chunk_has_data(const struct fdisk *d, uint64_t c)
{
	return ferry_chunk_data(disk_map(d), d->chunk, c) > 0;
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

/* sched.lock held. */
static struct fetch_job *
job_new(struct sched *s, struct fdisk *d, uint64_t c, bool fg)
{
	struct fetch_job *j = calloc(1, sizeof *j);

	if (!j)
		return NULL;
	j->d = d;
	j->chunk = c;
	j->fg = fg;
	j->inext = s->inflight;
	s->inflight = j;
	if (fg)
		s->fg_busy++;
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

/* A chunk that holds data, is not cached and has no job yet. */
static bool
chunk_wanted(const struct fdisk *d, uint64_t c)
{
	return c < d->nchunks && !ferry_bitmap_test(&d->present, c) &&
	       !ferry_bitmap_test(&d->busy, c) && fetch_chunk_has_data(d, c);
}

/* Where the last data byte of chunk @c ends (the chunk holds data). */
static uint64_t
chunk_data_end(const struct fdisk *d, uint64_t c)
{
	const struct ferry_extents *m = disk_map(d);
	uint64_t end = FERRY_MIN((c + 1) * d->chunk, d->info.size);
	size_t i = ferry_extents_find(m, end - 1);

	if (i < m->n && m->v[i].off < end)
		return end;	/* an extent runs to the chunk's end */
	/* Else the data ends in the extent before, inside the chunk. */
	return i > 0 ? m->v[i - 1].off + m->v[i - 1].len : end;
}

static size_t
run_limit(const struct fdisk *d)
{
	return (size_t)FERRY_MAX(1, FERRY_MIN((uint64_t)RUN_MAX,
					      REQ_MAX / d->chunk));
}

static void
run_add(struct run *r, struct fetch_job *j)
{
	if (r->n == 0)
		r->first = j->chunk;
	r->ends[r->n] = chunk_data_end(r->d, j->chunk);
	r->jobs[r->n++] = j;
}

/* A run from queued job @j: it and the jobs queued on @q (any queue if
 * NULL) for the chunks right after it. sched.lock held. */
static void
run_from(struct sched *s, struct run *r, struct fetch_job *j,
	 const struct fetch_queue *q)
{
	size_t max = run_limit(j->d);

	r->d = j->d;
	q_remove(j);
	run_add(r, j);
	while (r->n < max) {
		uint64_t c = j->chunk + 1;

		if (c >= r->d->nchunks || !ferry_bitmap_test(&r->d->busy, c))
			break;
		j = job_find(s, r->d, c);
		if (!j || !j->queue || (q && j->queue != q))
			break;	/* on the wire already, or another class */
		q_remove(j);
		run_add(r, j);
	}
}

/* A foreground run: the first queued job, demand before readahead, and
 * the queued jobs for the chunks right after it. sched.lock held. */
static bool
run_fg(struct ferryfs *fs, struct run *r)
{
	struct sched *s = &fs->sched;
	struct fetch_job *j = s->demand.head ? s->demand.head : s->ahead.head;

	if (!j)
		return false;
	run_from(s, r, j, NULL);
	return true;
}

/* A background run of what small reads left (sched.later): its first
 * job and the ones queued there right after it. sched.lock held. */
static bool
run_later(struct ferryfs *fs, struct run *r)
{
	struct sched *s = &fs->sched;

	if (!s->later.head)
		return false;
	run_from(s, r, s->later.head, &s->later);
	return true;
}

/* A background run: the next chunks of a disk to hydrate. sched.lock
 * held. */
static bool
run_bg(struct ferryfs *fs, struct run *r)
{
	struct sched *s = &fs->sched;

	for (size_t i = 0; i < fs->ndisks; i++) {
		size_t di = (s->rr + i) % fs->ndisks;
		struct fdisk *d = &fs->disks[di];
		size_t max = run_limit(d);
		uint64_t c = d->hydrate_next;

		while (c < d->nchunks && !chunk_wanted(d, c))
			c++;
		d->hydrate_next = c;
		if (c >= d->nchunks)
			continue;
		r->d = d;
		for (; r->n < max && chunk_wanted(d, c); c++) {
			struct fetch_job *j = job_new(s, d, c, false);

			if (!j)
				break;
			run_add(r, j);
		}
		d->hydrate_next = c;
		s->rr = di + 1;
		return r->n > 0;
	}
	return false;
}

void
fetch_note_result(struct fdisk *d, int err)
{
	pthread_mutex_lock(&d->lock);
	if (err == 0) {
		d->failing = false;
	} else if (err != -ECANCELED && err != -EAGAIN) {
		const char *msg = ferry_last_error();

		d->failing = true;
		snprintf(d->error, sizeof d->error, "%s",
			 msg[0] ? msg : strerror(-err));
	}
	pthread_mutex_unlock(&d->lock);
}

void
fetch_chunk_done(struct fdisk *d, uint64_t c, unsigned epoch, int err)
{
	if (err == 0 && epoch != d->epoch) {
		/* Fetched for the generation a resync has left since: kept
		 * for checking, like the other chunks cached before it, if
		 * it still holds data (else nothing would ever check it). */
		if (fetch_chunk_has_data(d, c) &&
		    !ferry_bitmap_test(&d->candidate, c)) {
			ferry_bitmap_set(&d->candidate, c);
			d->candidates++;
			d->dirty = true;
		}
	} else if (err == 0) {
		/* A job queued before a resync made its chunk a hole holds
		 * nothing to count; the bit lets a reader still on the old
		 * layout read its zeros (cache_clear_holes punched them). */
		if (fetch_chunk_has_data(d, c)) {
			d->cached += ferry_chunk_data(disk_map(d), d->chunk, c);
			d->present_chunks++;
		}
		ferry_bitmap_set(&d->present, c);
		d->dirty = true;
	} else if (c < d->hydrate_next) {
		d->hydrate_next = c;	/* hydration comes back */
	}
}

/* sched.lock held. */
static void
job_finish(struct ferryfs *fs, struct fetch_job *j, int err)
{
	struct sched *s = &fs->sched;
	struct fdisk *d = j->d;

	fetch_chunk_done(d, j->chunk, j->epoch, err);
	fetch_note_result(d, err);

	ferry_bitmap_clear(&d->busy, j->chunk);
	for (struct fetch_job **pp = &s->inflight; *pp; pp = &(*pp)->inext)
		if (*pp == j) {
			*pp = j->inext;
			break;
		}
	if (j->fg && --s->fg_busy == 0) {
		s->fg_last = ferry_now();
		pthread_cond_broadcast(&s->fg_idle);
		pthread_cond_broadcast(&s->work);	/* hydration may go */
	}
	j->done = true;
	j->err = err;
	if (j->waiters == 0)
		free(j);
	pthread_cond_broadcast(&s->done);
}

/* Hash the run's bytes up to @off + @len: zeros (holes) up to @off, then
 * @len bytes of @buf. Each chunk's digest is kept as it completes. */
static void
run_hash(struct run *r, uint64_t off, const uint8_t *buf, size_t len)
{
	struct fdisk *d = r->d;
	uint64_t end = off + len;

	while (r->hpos < end) {
		uint64_t c = r->hpos / d->chunk;
		uint64_t cend = FERRY_MIN((c + 1) * d->chunk, d->info.size);
		uint64_t stop = FERRY_MIN(cend, r->hpos < off ? off : end);

		if (r->hpos < off)
			ferry_hasher_zeros(&r->h, stop - r->hpos);
		else
			ferry_hasher_update(&r->h, buf + (r->hpos - off),
					    (size_t)(stop - r->hpos));
		r->hpos = stop;
		if (stop == cend) {
			ferry_hasher_final(&r->h, &r->got[c - r->first]);
			ferry_hasher_reset(&r->h);
		}
	}
}

/* Finish the jobs of @r whose data has all arrived, now that the bytes
 * before @pos are in the cache file; with verification, only those whose
 * digest matches. @return 0, or -EBADMSG when one differs (r->bad). */
static int
run_progress(struct run *r, uint64_t pos)
{
	struct sched *s = &r->fs->sched;
	struct fdisk *d = r->d;
	size_t done = r->next;
	int e = 0;

	if (r->next >= r->n || pos < r->ends[r->next])
		return 0;
	pause_at("run", r->first + r->next, 1, &r->fs->stop);
	pthread_mutex_lock(&s->lock);
	for (; r->next < r->n && pos >= r->ends[r->next]; r->next++) {
		if (d->verify && !(r->have >> r->next & 1))
			break;	/* its digest is still to come */
		if (d->verify) {
			uint64_t c = r->first + r->next;

			/* The chunk's tail after its last data is a hole. */
			run_hash(r, FERRY_MIN((c + 1) * d->chunk, d->info.size),
				 NULL, 0);
			if (!ferry_digest_equal(&r->got[r->next],
						&r->want[r->next])) {
				r->bad = r->next;
				e = -EBADMSG;
				break;
			}
		}
		if (r->jobs[r->next])
			job_finish(r->fs, r->jobs[r->next], 0);
	}
	pthread_mutex_unlock(&s->lock);
	/* Start writing the finished chunks back now (a hint; the flusher's
	 * fdatasync decides), so that the disk writes the cache as it
	 * arrives rather than a second's worth at each flush, in the way of
	 * whoever flushes next: ferry-convert's last flush of its image. */
	if (r->next > done) {
		uint64_t from = (r->first + done) * d->chunk;
		uint64_t to = FERRY_MIN((r->first + r->next) * d->chunk,
					d->info.size);

		sync_file_range(d->data_fd, (off64_t)from, (off64_t)(to - from),
				SYNC_FILE_RANGE_WRITE);
	}
	return e;
}

/* Received disk bytes into the cache file, counted. */
static int
cache_write(struct fdisk *d, uint64_t off, const void *buf, size_t len)
{
	int e = ferry_pwrite_all(d->data_fd, buf, len, off);

	if (e < 0) {
		errno = -e;
		ferry_error("cache %s.data: write at %" PRIu64 ": %m",
			    d->path, off);
		return e;
	}
	d->received += len;
	return 0;
}

/* Write the staged bytes, and finish the jobs they complete. */
static int
stage_flush(struct run *r)
{
	int e;

	if (r->slen == 0)
		return 0;
	e = cache_write(r->d, r->soff, r->stage, r->slen);
	r->soff += r->slen;
	r->slen = 0;
	return e < 0 ? e : run_progress(r, r->soff);
}

static int
sink_data(void *arg, uint64_t off, const void *buf, size_t len)
{
	struct run *r = arg;
	struct fdisk *d = r->d;
	const uint8_t *p = buf;
	int e;

	r->bytes += len;
	if (d->verify)
		run_hash(r, off, buf, len);
	if (!r->stage) {
		e = cache_write(d, off, buf, len);
		return e < 0 ? e : run_progress(r, off + len);
	}
	while (len > 0) {
		uint64_t cend;
		size_t n;

		if (r->slen && off != r->soff + r->slen &&
		    (e = stage_flush(r)) < 0)
			return e;
		if (r->slen == 0)
			r->soff = off;
		cend = FERRY_MIN((r->soff / d->chunk + 1) * d->chunk,
				 d->info.size);
		n = (size_t)FERRY_MIN((uint64_t)len,
				      FERRY_MIN(STAGE_MAX - r->slen,
						cend - (r->soff + r->slen)));
		memcpy(r->stage + r->slen, p, n);
		r->slen += n;
		off += n;
		p += n;
		len -= n;
		if ((r->slen == STAGE_MAX || r->soff + r->slen == cend) &&
		    (e = stage_flush(r)) < 0)
			return e;
	}
	return 0;
}

/* In-band digests of a data reply: blocks of one chunk each. */
static void
sink_digests(void *arg, uint64_t first, const struct ferry_digest *dg,
	     size_t n)
{
	struct run *r = arg;

	for (size_t k = 0; k < n; k++) {
		uint64_t c = first + k;

		if (c < r->first || c - r->first >= r->n)
			continue;
		r->want[c - r->first] = dg[k];
		r->have |= (uint64_t)1 << (c - r->first);
	}
}

/* Bits @from to RUN_MAX - 1 (the run's chunks from @from on). */
static uint64_t
bits_from(size_t from)
{
	return from >= 64 ? 0 : UINT64_MAX << from;
}

/* The digests of the chunks from r->next on that no reply brought, from
 * .../digests: a source without in-band digests, or chunks that no
 * request touched (holes to the map). */
static int
run_want_rest(struct run *r)
{
	uint64_t all = bits_from(r->next) & ~bits_from(r->n);
	int err;

	if (!r->d->verify || (r->have & all) == all)
		return 0;
	err = ferry_source_digests(r->fs->src, r->d->idx, r->d->chunk,
				   r->first + r->next, r->n - r->next,
				   r->want + r->next);
	if (err == 0)
		r->have |= all;
	return err;
}

/* Wait on @c until woken or until ferry_now() reaches @at. */
static void
timed_wait(pthread_cond_t *c, pthread_mutex_t *m, double at)
{
	double left = at - ferry_now();
	struct timespec ts;

	if (left <= 0)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)left;
	ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(c, m, &ts);
}

/* Are readers at work, or were they a moment ago (FG_HOLD)? Background
 * transfers wait. sched.lock held. */
static bool
fg_holds(const struct sched *s)
{
	return s->fg_busy > 0 || ferry_now() < s->fg_last + FG_HOLD;
}

/* Does a reader wait for a job of @r from its @from'th not yet done?
 * sched.lock held. */
static bool
run_awaited_from(const struct run *r, size_t from)
{
	for (size_t i = r->next + from; i < r->n; i++)
		if (r->jobs[i] && r->jobs[i]->waiters > 0)
			return true;
	return false;
}

static bool
run_awaited(const struct run *r)
{
	return run_awaited_from(r, 0);
}

static int
sink_wire(void *arg, size_t n)
{
	struct run *r = arg;
	struct ferryfs *fs = r->fs;
	struct sched *s = &fs->sched;

	r->d->wire += n;
	ferry_bucket_throttle(&fs->bucket, n, &fs->stop);
	if (r->fg)
		return 0;
	/* Background: yield while readers have work on the wire. */
	double until = 0;
	int e = 0;

	pthread_mutex_lock(&s->lock);
	/* A reader waits for a chunk further down this run: hand that job
	 * to the foreground workers rather than make the reader wait for
	 * the chunks before it, and give the rest of the run up. */
	if (run_awaited_from(r, 1)) {
		for (size_t i = r->next + 1; i < r->n; i++) {
			struct fetch_job *j = r->jobs[i];

			if (!j || j->waiters == 0)
				continue;
			j->fg = true;
			s->fg_busy++;
			q_push(&s->demand, j);
			r->jobs[i] = NULL;	/* no longer this run's */
		}
		pthread_cond_broadcast(&s->work);
		pthread_mutex_unlock(&s->lock);
		return -EAGAIN;
	}
	while (fg_holds(s) && !fs->stop && !run_awaited(r)) {
		double now = ferry_now();

		r->paused = true;
		if (until == 0) {
			until = now + PAUSE_MAX;
		} else if (now >= until) {
			e = -EAGAIN;	/* given up; comes back later */
			break;
		}
		timed_wait(&s->fg_idle, &s->lock, s->fg_busy > 0 ? now + 0.1 :
			   s->fg_last + FG_HOLD);
	}
	pthread_mutex_unlock(&s->lock);
	return fs->stop ? -ECANCELED : e;
}

/* Fetch the data ranges of the run's chunks straight into the cache,
 * one request per range. With -o compress=auto, each request asks for
 * zstd or not as the measured rates say (common/adapt.h) and reports its
 * own rate; a probe of the other mode is cut to its size limit, and the
 * rest of the range follows as a request of its own. */
static int
run_fetch_range(struct run *r, uint64_t a, uint64_t b)
{
	struct ferryfs *fs = r->fs;
	struct ferry_sink sink = { .data = sink_data, .wire = sink_wire,
				   .arg = r, .background = !r->fg };

	if (r->inband) {
		sink.digest_block = (uint32_t)r->d->chunk;
		sink.digests = sink_digests;
	}

	while (a < b) {
		bool probe = false, zstd = fs->compress;
		uint64_t n = b - a;
		double t0;
		int err;

		if (fs->compress_auto) {
			zstd = ferry_adapt_choose(&fs->adapt, &probe);
			if (probe)
				n = FERRY_MIN(n, FERRY_ADAPT_PROBE_BYTES);
		}
		sink.plain = !zstd;
		r->bytes = 0;
		r->paused = false;
		t0 = ferry_now();
		err = ferry_source_read(fs->src, r->d->idx, a, n, &sink);
		if (err == 0)
			err = stage_flush(r);
		/* After a failure the staged bytes are dropped: their chunk
		 * is not done, and is fetched again from its start. */
		r->slen = 0;
		if (err < 0)
			return err;
		if (fs->compress_auto && !r->paused)
			ferry_adapt_note(&fs->adapt, zstd, probe, r->bytes,
					 ferry_now() - t0);
		a += n;
	}
	return 0;
}

static int
run_fetch(struct run *r)
{
	struct fdisk *d = r->d;
	const struct ferry_extents *m = &r->lay->map;
	uint64_t start = (r->first + r->next) * d->chunk;
	uint64_t end = FERRY_MIN((r->first + r->n) * d->chunk, d->info.size);
	int err = 0;

	if (r->whole) {
		/* Each chunk is done once its last byte, not its last data
		 * byte, has arrived. */
		for (size_t i = r->next; i < r->n; i++)
			r->ends[i] = FERRY_MIN((r->first + i + 1) * d->chunk,
					       d->info.size);
		err = run_fetch_range(r, start, end);
	}
	for (size_t i = ferry_extents_find(m, start);
	     !r->whole && err == 0 && i < m->n; i++) {
		const struct ferry_extent *e = &m->v[i];

		if (e->off >= end)
			break;
		err = run_fetch_range(r, FERRY_MAX(e->off, start),
				      FERRY_MIN(e->off + e->len, end));
	}
	if (err == 0)
		err = run_want_rest(r);
	/* Chunks after the last data byte (holes to the map) are done now. */
	return err ? err : run_progress(r, end);
}

/* Fetch the run, checking each chunk against the source's digests when
 * the disk is verified: a chunk that differs is fetched again, from it
 * on, up to VERIFY_TRIES times; its bytes are never marked present. */
static int
run_fetch_tries(struct run *r)
{
	struct fdisk *d = r->d;
	int err;

	for (unsigned tries = 1;; tries++) {
		char got[33], want[33];
		uint64_t c;

		r->hpos = (r->first + r->next) * d->chunk;
		ferry_hasher_reset(&r->h);
		err = run_fetch(r);
		if (err != -EBADMSG)
			break;
		c = r->first + r->bad;
		d->mismatches++;
		/* Blocks a live filesystem took since the map was made are
		 * in the digest, not in the map's data: from here on, whole
		 * chunks. */
		if (__atomic_load_n(&d->info.live, __ATOMIC_RELAXED))
			r->whole = true;
		ferry_digest_hex(&r->got[r->bad], got);
		ferry_digest_hex(&r->want[r->bad], want);
		if (tries == VERIFY_TRIES) {
			ferry_error("%s: chunk %" PRIu64 " differs from the "
				    "source's digest %u times (received %s, "
				    "source %s); not cached", d->info.name, c,
				    tries, got, want);
			err = -EIO;
			break;
		}
		ferry_error("%s: chunk %" PRIu64 " differs from the source's "
			    "digest (received %s, source %s); fetching it "
			    "and its digest again", d->info.name, c, got,
			    want);
		/* Either may have been wrong: the digests of the chunks
		 * still to come are asked again too (with the data, when
		 * in-band). */
		r->have &= ~bits_from(r->next);
		err = r->inband ? 0 : run_want_rest(r);
		if (err < 0)
			break;
	}
	return err;
}

/* A chunk kept from an earlier generation that differs from the source
 * now has most often had a few blocks written: it is mended in blocks of
 * this size, each fetched only if its own digest differs. */
#define PATCH_BLOCK (64u << 10)
#define PATCH_MAX 256		/* blocks of one chunk, at most */

static int
patch_data(void *arg, uint64_t off, const void *buf, size_t len)
{
	return cache_write(((struct run *)arg)->d, off, buf, len);
}

/* Mend candidate @i of @r, which differs from r->want[i]: the digests of
 * its PATCH_BLOCKs are asked, the data of the blocks whose cached bytes
 * differ is fetched into the cache, and the whole chunk is checked again.
 * @return 1 if it matches now, 0 if not (it is then fetched whole, as
 * before), or -errno. */
static int
run_patch(struct run *r, size_t i, uint8_t *buf)
{
	struct fdisk *d = r->d;
	const struct ferry_extents *m = &r->lay->map;
	uint64_t c = r->first + i, off = c * d->chunk;
	uint64_t len = FERRY_MIN(d->chunk, d->info.size - off);
	size_t n = (size_t)((len + PATCH_BLOCK - 1) / PATCH_BLOCK);
	struct ferry_digest want[PATCH_MAX], have;
	struct ferry_sink sink = { .data = patch_data, .wire = sink_wire,
				   .arg = r, .plain = !r->fs->compress };
	int err;

	if (d->chunk % PATCH_BLOCK || n < 2 || n > PATCH_MAX)
		return 0;
	err = ferry_source_digests(r->fs->src, d->idx, PATCH_BLOCK,
				   off / PATCH_BLOCK, n, want);
	if (err < 0)
		return err;
	for (size_t k = 0; k < n; k++) {
		uint64_t a = off + k * PATCH_BLOCK;
		uint64_t b = FERRY_MIN(a + PATCH_BLOCK, off + len);

		err = cache_hash_range(d, m, a, b - a, buf, CAND_BUF, &r->h,
				       &have);
		if (err < 0)
			return err;
		if (ferry_digest_equal(&have, &want[k]))
			continue;
		/* The block's data by the map; its holes hash as zeros. */
		for (size_t e = ferry_extents_find(m, a);
		     e < m->n && m->v[e].off < b; e++) {
			uint64_t x = FERRY_MAX(a, m->v[e].off);
			uint64_t y = FERRY_MIN(b, m->v[e].off + m->v[e].len);

			err = ferry_source_read(r->fs->src, d->idx, x, y - x,
						&sink);
			if (err < 0)
				return err;
		}
	}
	err = cache_hash(d, m, c, buf, CAND_BUF, &r->h, &have);
	if (err < 0)
		return err;
	return ferry_digest_equal(&have, &r->want[i]);
}

/* Chunks kept from an earlier generation (fdisk.candidate) among the run:
 * @keep[i] tells whether chunk first+i is one whose cached bytes match the
 * digest the source gives now, as they were or once mended (run_patch).
 * Each candidate is taken out of the set here, once, whatever the
 * outcome. */
static int
run_candidates(struct run *r, bool *keep, bool *any)
{
	struct fdisk *d = r->d;
	uint8_t *buf = NULL;
	int err = 0;

	*any = false;
	for (size_t i = r->next; i < r->n; i++) {
		uint64_t c = r->first + i;
		struct ferry_digest have;

		keep[i] = false;
		if (!ferry_bitmap_test(&d->candidate, c))
			continue;
		if (!buf && !(buf = malloc(CAND_BUF)))
			return -ENOMEM;
		err = cache_hash(d, &r->lay->map, c, buf, CAND_BUF, &r->h,
				 &have);
		if (err < 0)
			break;
		if (!ferry_bitmap_take(&d->candidate, c))
			continue;	/* another worker had it */
		d->candidates--;
		keep[i] = ferry_digest_equal(&have, &r->want[i]);
		if (keep[i]) {
			d->kept++;
			*any = true;
			continue;
		}
		d->changed++;
		err = run_patch(r, i, buf);
		if (err < 0)
			break;
		keep[i] = err == 1;	/* mended: only its changed blocks */
		*any = *any || keep[i];
		err = 0;
	}
	free(buf);
	return err;
}

/* Fetch the run with its digests checked (fdisk.verify). With chunks kept
 * from an earlier generation, digests first, then those that still match
 * are taken from the cache, and the stretches between them are fetched;
 * otherwise the digests come with the data. */
static int
run_fetch_verified(struct run *r)
{
	struct fdisk *d = r->d;
	bool keep[RUN_MAX], any = false, kept = d->candidates > 0;
	int err = 0;

	if (!d->verify)
		return run_fetch(r);
	/* Kept chunks are compared before anything is fetched, so their
	 * digests come first; otherwise with the data, where the exporter's
	 * in-band digests can carry them. */
	r->have = 0;
	r->inband = !kept && d->chunk <= FERRY_DIGESTS_BLOCK_MAX;
	if (!r->inband && (err = run_want_rest(r)) < 0)
		return err;
	if (ferry_hasher_init(&r->h) < 0)
		return -ENOMEM;
	if (kept)
		err = run_candidates(r, keep, &any);
	if (!any) {
		if (err == 0)
			err = run_fetch_tries(r);
		ferry_hasher_free(&r->h);
		return err;
	}
	while (err == 0 && r->next < r->n) {
		size_t n = r->n, m;

		for (; r->next < r->n && keep[r->next]; r->next++) {
			pthread_mutex_lock(&r->fs->sched.lock);
			if (r->jobs[r->next])
				job_finish(r->fs, r->jobs[r->next], 0);
			r->jobs[r->next] = NULL;
			pthread_mutex_unlock(&r->fs->sched.lock);
		}
		if (r->next == r->n)
			break;
		for (m = r->next + 1; m < n && !keep[m]; m++)
			;
		r->n = m;	/* the stretch up to the next kept chunk */
		err = run_fetch_tries(r);
		r->n = n;
	}
	ferry_hasher_free(&r->h);
	return err;
}

/* A background worker's next run, if the readers leave it one: what small
 * reads left once they have been quiet for LATER_QUIET (a run taken while
 * they go on delays each of them by what it has on the wire), else
 * hydration. sched.lock held. */
static bool
run_back(struct ferryfs *fs, struct run *r)
{
	struct sched *s = &fs->sched;

	if (fg_holds(s))
		return false;
	if (s->later.head && ferry_now() >= s->fg_last + LATER_QUIET &&
	    run_later(fs, r))
		return true;
	return fs->prefetch && run_bg(fs, r);
}

static void *
worker_main(struct ferryfs *fs, bool fg)
{
	struct sched *s = &fs->sched;
	unsigned backoff = 0;

	/* Staging is an optimisation: without the memory, pieces are
	 * written as they come. */
	uint8_t *stage = malloc(STAGE_MAX);

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct run r = { .fs = fs, .fg = fg, .stage = stage };
		bool demand;
		int err;

		while (!fs->stop && !(fg ? run_fg(fs, &r) : run_back(fs, &r))) {
			/* A background worker comes back for what small
			 * reads left once the readers are quiet. */
			double at = 0;

			if (!fg && s->fg_busy == 0) {
				at = s->fg_last + FG_HOLD;
				if (at <= ferry_now() && s->later.head)
					at = s->fg_last + LATER_QUIET;
			}

			if (at > ferry_now())
				timed_wait(&s->work, &s->lock, at);
			else
				pthread_cond_wait(&s->work, &s->lock);
		}
		if (fs->stop)
			break;
		for (size_t i = 0; i < r.n; i++) {
			r.jobs[i]->epoch = r.d->epoch;
			r.jobs[i]->started = true;
		}
		r.lay = layout_get(r.d);
		demand = run_awaited(&r);
		pthread_mutex_unlock(&s->lock);

		err = run_fetch_verified(&r);
		layout_put(r.lay);

		pthread_mutex_lock(&s->lock);
		if (err == 0 && r.next < r.n) {
			ferry_error("%s: a transfer ended before chunk %" PRIu64
				    "'s data", r.d->info.name,
				    r.jobs[r.next]->chunk);
			err = -EIO;
		}
		for (; r.next < r.n; r.next++)
			if (r.jobs[r.next])	/* NULL: handed over */
				job_finish(fs, r.jobs[r.next], err);
		/* Foreground workers never wait: readers may be next. */
		if (err == 0 || err == -EAGAIN || demand || fg) {
			backoff = 0;
			continue;
		}
		/* Hydration that fails (source gone, cache full) must not
		 * spin: wait, longer each time, up to 30 s. */
		backoff = backoff ? FERRY_MIN(backoff * 2, 30u) : 1;
		pthread_mutex_unlock(&s->lock);
		for (unsigned t = 0; t < backoff * 10 && !fs->stop; t++)
			usleep(100000);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	free(stage);
	return NULL;
}

static void *
fg_main(void *arg)
{
	return worker_main(arg, true);
}

static void *
bg_main(void *arg)
{
	return worker_main(arg, false);
}

/* A run of @d that began before its last resync is still on the wire: its
 * chunks are of the generation left, and come back as candidates when it
 * ends. sched.lock held. */
static bool
old_runs(const struct sched *s, const struct fdisk *d)
{
	for (const struct fetch_job *j = s->inflight; j; j = j->inext)
		if (j->d == d && j->started && j->epoch != d->epoch)
			return true;
	return false;
}

bool
fetch_restamp_due(struct ferryfs *fs, struct fdisk *d, char *gen, size_t len)
{
	struct sched *s = &fs->sched;
	bool due;

	pthread_mutex_lock(&s->lock);
	due = d->restamp && d->candidates == 0 && !old_runs(s, d);
	if (due) {
		d->restamp = false;
		pthread_mutex_lock(&d->lock);
		snprintf(gen, len, "%s", d->info.generation);
		pthread_mutex_unlock(&d->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return due;
}

void
fetch_forget(struct ferryfs *fs, struct fdisk *d, uint64_t c)
{
	struct sched *s = &fs->sched;

	pthread_mutex_lock(&s->lock);
	/* A chunk without data was never counted (job_finish). */
	if (ferry_bitmap_take(&d->present, c) && fetch_chunk_has_data(d, c)) {
		d->present_chunks--;
		d->cached -= ferry_chunk_data(disk_map(d), d->chunk, c);
		if (c < d->hydrate_next)
			d->hydrate_next = c;
		pthread_cond_broadcast(&s->work);
	}
	d->dirty = true;
	pthread_mutex_unlock(&s->lock);
}

static bool
range_needs_fetch(const struct fdisk *d, const struct ferry_extents *m,
		  uint64_t c, uint64_t off, uint64_t end)
{
	return !ferry_bitmap_test(&d->present, c) &&
	       ferry_chunk_data_in_range(m, d->chunk, c, off, end - off) > 0;
}

/* Queue readahead for the chunks of [from, to); sched.lock held. */
static void
queue_readahead(struct ferryfs *fs, struct fdisk *d, uint64_t from,
		uint64_t to)
{
	uint64_t first, last;

	if (!ferry_chunk_span(from, to - from, d->info.size, d->chunk, &first,
			      &last))
		return;
	for (uint64_t c = first; c <= last; c++) {
		struct fetch_job *j;

		if (!chunk_wanted(d, c))
			continue;
		j = job_new(&fs->sched, d, c, true);
		if (!j)
			return;
		q_push(&fs->sched.ahead, j);
	}
	pthread_cond_broadcast(&fs->sched.work);
}

/* Queue (or join) a demand job for every chunk of [off, end) that holds
 * data not yet cached, adding it to @jobs; sched.lock held. */
static int
queue_demand(struct ferryfs *fs, struct fdisk *d, uint64_t off, uint64_t end,
	     struct fetch_job **jobs, size_t *n, size_t cap)
{
	struct sched *s = &fs->sched;
	uint64_t first, last;

	if (!ferry_chunk_span(off, end - off, d->info.size, d->chunk, &first,
			      &last))
		return 0;
	for (uint64_t c = first; c <= last; c++) {
		struct fetch_job *j;

		if (!range_needs_fetch(d, disk_map(d), c, off, end))
			continue;
		if (*n == cap)
			break;	/* more than counted: the caller comes back */
		j = ferry_bitmap_test(&d->busy, c) ? job_find(s, d, c) : NULL;
		if (!j) {
			j = job_new(s, d, c, true);
			if (!j)
				return -ENOMEM;
			q_push(&s->demand, j);
		} else if (j->queue == &s->ahead) {
			/* Readahead a reader now needs: to the front. */
			q_remove(j);
			q_push(&s->demand, j);
		} else if (j->queue == &s->later) {
			/* Left by a small read, needed now: demand. */
			q_remove(j);
			j->fg = true;
			s->fg_busy++;
			q_push(&s->demand, j);
		} else if (!j->fg) {
			/* A paused hydration run a reader now needs: wake
			 * it (it never pauses while awaited). */
			pthread_cond_broadcast(&s->fg_idle);
		}	/* else queued as demand already, or on the wire */
		j->waiters++;
		jobs[(*n)++] = j;
	}
	return 0;
}

void
fetch_fg_enter(struct ferryfs *fs)
{
	pthread_mutex_lock(&fs->sched.lock);
	fs->sched.fg_busy++;
	pthread_mutex_unlock(&fs->sched.lock);
}

void
fetch_fg_leave(struct ferryfs *fs)
{
	struct sched *s = &fs->sched;

	pthread_mutex_lock(&s->lock);
	if (--s->fg_busy == 0) {
		s->fg_last = ferry_now();
		pthread_cond_broadcast(&s->fg_idle);
		pthread_cond_broadcast(&s->work);	/* hydration may go */
	}
	pthread_mutex_unlock(&s->lock);
}

void
fetch_later(struct ferryfs *fs, struct fdisk *d, uint64_t off, uint64_t len)
{
	struct sched *s = &fs->sched;
	uint64_t first, last;
	bool any = false;

	if (!ferry_chunk_span(off, len, d->info.size, d->chunk, &first, &last))
		return;
	pthread_mutex_lock(&s->lock);
	for (uint64_t c = first; c <= last; c++) {
		struct fetch_job *j;

		if (!chunk_wanted(d, c) || !(j = job_new(s, d, c, false)))
			continue;
		q_push(&s->later, j);
		any = true;
	}
	if (any)
		pthread_cond_broadcast(&s->work);
	pthread_mutex_unlock(&s->lock);
}

/* The readahead windows of @d's readers (readahead.h). */
static struct ra_limits
ra_limits_of(const struct ferryfs *fs, const struct fdisk *d)
{
	return (struct ra_limits){
		.max = fs->readahead,
		.start = RA_START * d->chunk,
		.size = d->info.size,
		.back = FERRY_MAX(fs->smallread, (uint64_t)128 << 10),
		.ahead = FOLLOW_AHEAD,
	};
}

bool
fetch_ra_follows(struct ferryfs *fs, struct fdisk *d, struct fetch_ra *ra,
		 uint64_t a, uint64_t b)
{
	struct ra_limits lim = ra_limits_of(fs, d);

	return ra_follows(ra, &lim, a, b);
}

int
fetch_ensure_v(struct ferryfs *fs, struct fdisk *d,
	       const struct ferry_extents *map, const struct ferry_extent *rv,
	       size_t nr, struct fetch_ra *ra)
{
	struct sched *s = &fs->sched;
	struct ra_limits lim = ra_limits_of(fs, d);
	struct fetch_job *small[16], **jobs = small;
	uint64_t first, last, need = 0, ra_from = 0, ra_to = 0;
	size_t n = 0;
	bool ahead = false;
	int r = 0, tries = 0;

again:
	need = 0;
	n = 0;
	for (size_t i = 0; i < nr; i++) {
		uint64_t off = rv[i].off, end;

		if (!ferry_chunk_span(off, rv[i].len, d->info.size, d->chunk,
				      &first, &last))
			continue;
		end = FERRY_MIN(off + rv[i].len, d->info.size);
		for (uint64_t c = first; c <= last; c++)
			if (range_needs_fetch(d, map, c, off, end))
				need++;
	}
	if (ra && nr && tries == 0)
		ahead = ra_plan(ra, &lim, rv[0].off,
				rv[nr - 1].off + rv[nr - 1].len, need,
				&ra_from, &ra_to);
	if (need == 0 && !ahead)
		return 0;

	if (need > sizeof small / sizeof small[0]) {
		jobs = calloc(need, sizeof *jobs);
		if (!jobs)
			return -ENOMEM;
	}
	pthread_mutex_lock(&s->lock);
	/* Presence may shrink meanwhile (a chunk forgotten by a re-verify,
	 * or kept for checking by a resync): at most @need jobs are queued
	 * here, and the ranges are looked at again once they are done. */
	for (size_t i = 0; i < nr && r == 0; i++) {
		uint64_t end;

		if (rv[i].off >= d->info.size || rv[i].len == 0)
			continue;
		end = FERRY_MIN(rv[i].off + rv[i].len, d->info.size);
		r = queue_demand(fs, d, rv[i].off, end, jobs, &n, need);
	}
	if (n)
		pthread_cond_broadcast(&s->work);
	if (ahead)
		queue_readahead(fs, d, ra_from, ra_to);
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
	/* A hydration run given up just as this reader joined it (the
	 * chunk is simply not there yet), or presence that shrank while we
	 * counted: look again. */
	if ((r == -EAGAIN || (r == 0 && n > 0)) && ++tries < 16) {
		jobs = small;
		r = 0;
		ahead = false;
		goto again;
	}
	return r == -EAGAIN || (r == 0 && n > 0) ? -EIO : r;
}

int
fetch_ensure(struct ferryfs *fs, struct fdisk *d, uint64_t off, uint64_t len,
	     struct fetch_ra *ra)
{
	struct ferry_extent e = { off, len };
	struct layout *l = layout_get(d);
	int r = fetch_ensure_v(fs, d, &l->map, &e, 1, ra);

	layout_put(l);
	return r;
}

int
fetch_pread(struct ferryfs *fs, struct fdisk *d, void *buf, size_t len,
	    uint64_t off)
{
	int r = fetch_ensure(fs, d, off, len, NULL);

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
	pthread_cond_init(&s->fg_idle, NULL);
	fs->workers = calloc(2 * (size_t)fs->streams, sizeof *fs->workers);
	if (!fs->workers)
		return -ENOMEM;
	for (unsigned i = 0; i < 2 * fs->streams; i++) {
		bool fg = i < fs->streams;

		if (pthread_create(&fs->workers[i], NULL,
				   fg ? fg_main : bg_main, fs)) {
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
	pthread_cond_broadcast(&s->fg_idle);
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
	s->later.head = s->later.tail = NULL;
	free(fs->workers);
	fs->workers = NULL;
	fs->nworkers = 0;
}
