/* ferryfs — the readahead window of one open file: pure bookkeeping, in
 * disk offsets. fetch.c queues the chunks it names; ra_follows() tells
 * direct.c whether a read goes on from the last (sequential) or not.
 */
#ifndef FERRYFS_READAHEAD_H
#define FERRYFS_READAHEAD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct fetch_ra {
	pthread_mutex_t lock;
	uint64_t next;		/* where a sequential read goes on */
	uint64_t queued;	/* readahead queued up to here */
	uint64_t mark;		/* reaching it queues the next window */
	uint64_t window;	/* bytes; doubles while the reader keeps on */
	/* The last read went on from the one before it, or took the chunk
	 * path: a read that goes on from this one is sequential. */
	bool going;
};

/* What a disk and the mount's options allow. */
struct ra_limits {
	uint64_t max;		/* the largest window (-o readahead=; 0: none) */
	uint64_t start;		/* the first window */
	uint64_t size;		/* the disk's: no window goes past it */
	uint64_t back;		/* ra_follows(): a read this far before where
				 * the last ended still goes on from it ... */
	uint64_t ahead;		/* ... and this far after it */
};

/*! ra_init() : a reader that has read nothing yet. */
void ra_init(struct fetch_ra *ra);

/*! ra_destroy() : after the reader's last read. */
void ra_destroy(struct fetch_ra *ra);

/*! ra_plan() : readahead for a read of disk bytes [@a, @b) that needs
 * @need chunks fetched. @return true with the range to queue in [*@from,
 * *@to), or false for none. Updates @ra. */
bool ra_plan(struct fetch_ra *ra, const struct ra_limits *lim, uint64_t a,
	     uint64_t b, uint64_t need, uint64_t *from, uint64_t *to);

/*! ra_follows() : does a read of disk bytes [@a, @b) go on from where
 * @ra's reader's last read ended (lim->back before it to lim->ahead after,
 * the read before it having gone on too)? If not, @ra takes it as a jump,
 * as ra_plan() would. */
bool ra_follows(struct fetch_ra *ra, const struct ra_limits *lim, uint64_t a,
		uint64_t b);

/*! ra_note() : @ra's reader read up to disk offset @end without needing
 * any data there (holes): it goes on from there. */
void ra_note(struct fetch_ra *ra, uint64_t end);

/*! ra_first() : has @ra's reader read nothing yet? */
bool ra_first(struct fetch_ra *ra);

#endif
