/* ferry-export — the threads that read the sources.
 *
 * The event loops parse requests and move bytes; everything that reads or
 * maps a source (a range and its digests, an extent map, the digests of
 * chunks, the partition tables of /v1/info) runs on one of these threads,
 * as nbdkit's plugins run off its connection threads, so that one slow
 * disk stalls only the requests that wait for it, never every client of a
 * loop. A job's completion runs on the loop that submitted it.
 */
#ifndef FERRY_EXPORT_POOL_H
#define FERRY_EXPORT_POOL_H

#include <pthread.h>
#include <stdbool.h>

struct event;
struct event_base;

struct pool_job {
	/* On a pool thread: the source I/O, its answer kept in the job. */
	void (*work)(struct pool_job *j);
	/* Then on the submitting loop: send the answer; may free @j. */
	void (*done)(struct pool_job *j);
	struct event *ev;		/* the loop's event for done */
	struct pool_job *next;
};

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pool_job *head, *tail;
	bool stop;
	unsigned n;
	pthread_t tid[64];
};

/*! pool_start() : @n threads (1 to 64). @return 0 or -errno (logged). */
int pool_start(struct pool *p, unsigned n);

/*! pool_submit() : run @j->work on a pool thread, then @j->done on
 * @base's loop (the caller's). @return 0, or -ENOMEM/-ESHUTDOWN with
 * nothing started. */
int pool_submit(struct pool *p, struct event_base *base, struct pool_job *j);

/*! pool_stop() : let the jobs running end, drop the ones queued, and join
 * the threads (before the loops stop: a job's completion goes to its
 * loop). */
void pool_stop(struct pool *p);

#endif
