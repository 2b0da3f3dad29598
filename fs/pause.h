/* ferryfs — pause points, for tests that force an interleaving of threads.
 *
 * A race between two threads is tested by holding one of them at a named
 * point until the test has made the other one move, never by sleeping and
 * hoping. FERRYFS_TEST_PAUSE="restamp:FILE", "run:CHUNK:FILE" or
 * "reply:CHUNK:FILE" arms one point: the first thread to reach it creates
 * FILE.held, then waits until FILE exists (or the mount stops), and the
 * point is disarmed. Unset, a point costs one load of a flag.
 *
 * Points:
 *   run      a fetch run, once chunk CHUNK's data is all in the cache file
 *            and before the chunk is marked done (fetch.c)
 *   reply    a read whose first disk range starts in chunk CHUNK, ready to
 *            reply from the cache file, its chunks checked (ops.c)
 *   restamp  the flusher, once it has decided a disk's cache takes the
 *            generation its chunks were checked against, before it writes
 *            it (main.c)
 */
#ifndef FERRYFS_PAUSE_H
#define FERRYFS_PAUSE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/*! pause_init() : arm the point FERRYFS_TEST_PAUSE names, if any (at
 * start-up, before any thread reaches a point). A malformed value is
 * logged and arms nothing. */
void pause_init(void);

/*! pause_at() : hold here if @point is armed and, for "run", chunk
 * [@first, @first + @n) holds its chunk; returns once the test's file
 * exists, or *@stop is set. */
void pause_at(const char *point, uint64_t first, uint64_t n,
	      const atomic_bool *stop);

#endif
