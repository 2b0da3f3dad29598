/* ferryfs — the readahead window of one open file (readahead.h). */
#include "common/util.h"
#include "fs/readahead.h"

void
ra_init(struct fetch_ra *ra)
{
	pthread_mutex_init(&ra->lock, NULL);
	ra->next = UINT64_MAX;
	ra->queued = ra->mark = ra->window = 0;
	ra->going = false;
}

void
ra_destroy(struct fetch_ra *ra)
{
	/* The kernel sends RELEASE only after the replies to every read of
	 * the file, and each reader was done with @ra before it replied: a
	 * lock taken once more makes that order one a race detector sees
	 * too (ThreadSanitizer cannot see the kernel's). */
	pthread_mutex_lock(&ra->lock);
	pthread_mutex_unlock(&ra->lock);
	pthread_mutex_destroy(&ra->lock);
}

/* A new reader, or a jump: start small again, from @b. ra->lock held. */
static void
restart(struct fetch_ra *ra, const struct ra_limits *lim, uint64_t b)
{
	ra->window = FERRY_MIN(lim->start, lim->max);
	ra->queued = ra->mark = ra->next = b;
}

/* Like the kernel's: when a sequential reader reaches the start of the
 * window queued last (the mark), the next window, twice as large up to the
 * maximum, is queued after it. A reader past all it had queued that finds
 * its bytes cached gets nothing queued: it follows data that came without
 * it (behind hydration, or ferry-convert reading what arrived), and
 * readahead there would only take the link from hydration for the chunks
 * it is about to bring anyway (bench/link.sh, compress=0 at 1 Gbit/s). Its
 * first read that has to wait starts the windows again. */
bool
ra_plan(struct fetch_ra *ra, const struct ra_limits *lim, uint64_t a,
	uint64_t b, uint64_t need, uint64_t *from, uint64_t *to)
{
	bool go = false;

	pthread_mutex_lock(&ra->lock);
	ra->going = true;
	if (lim->max == 0) {
		ra->next = b;	/* still followed, for ra_follows() */
		pthread_mutex_unlock(&ra->lock);
		return false;
	}
	/* Reads of one sequential reader may arrive a little out of order
	 * (the kernel's readahead runs on several FUSE threads). */
	if (ra->next != UINT64_MAX && a + ra->window >= ra->next &&
	    a <= ra->next + ra->window) {
		if (b >= ra->mark && (need > 0 || ra->queued > b)) {
			*from = FERRY_MAX(ra->queued, b);
			*to = FERRY_MIN(*from + ra->window, lim->size);
			ra->mark = *from;
			ra->queued = FERRY_MAX(*to, *from);
			ra->window = FERRY_MIN(ra->window * 2, lim->max);
			go = *to > *from;
		}
		ra->next = FERRY_MAX(ra->next, b);
	} else {
		restart(ra, lim, b);
	}
	pthread_mutex_unlock(&ra->lock);
	return go;
}

bool
ra_follows(struct fetch_ra *ra, const struct ra_limits *lim, uint64_t a,
	   uint64_t b)
{
	bool seq;

	pthread_mutex_lock(&ra->lock);
	/* The kernel's readahead sends a sequential reader's reads ahead
	 * of it, on several threads, up to its window (1 MiB here): a read
	 * that far on goes on as much as the next one does. */
	seq = ra->next != UINT64_MAX && a + lim->back >= ra->next &&
	      a <= ra->next + lim->ahead;
	if (seq && !ra->going) {
		/* On from a random read: a reader starting, or chance (a
		 * random read of a 1 GiB disk lands there one time in 450,
		 * twice in fio's 1000; the chunk path it then took, with its
		 * readahead, held a 200 Mbit/s link for 44 ms and the 30
		 * reads after it 5-13 ms each). A small read still; the next
		 * read that goes on is sequential. */
		ra->going = true;
		ra->next = FERRY_MAX(ra->next, b);
		seq = false;
	} else if (!seq) {	/* as ra_plan() takes a jump */
		ra->going = false;
		restart(ra, lim, b);
	}
	pthread_mutex_unlock(&ra->lock);
	return seq;
}

void
ra_note(struct fetch_ra *ra, uint64_t end)
{
	pthread_mutex_lock(&ra->lock);
	if (ra->next != UINT64_MAX) {	/* (a first read: ra_plan starts it) */
		ra->next = end;
		ra->going = true;
	}
	pthread_mutex_unlock(&ra->lock);
}

bool
ra_first(struct fetch_ra *ra)
{
	bool first;

	pthread_mutex_lock(&ra->lock);
	first = ra->next == UINT64_MAX;
	pthread_mutex_unlock(&ra->lock);
	return first;
}
