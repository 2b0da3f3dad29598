/* ferry — a source with its filesystems' free space zeroed (usedmap.c). */
#ifndef FERRY_USEDMAP_H
#define FERRY_USEDMAP_H

#include <jansson.h>

#include "backends/backend.h"

/* How long a computed map serves before it is computed again, seconds
 * (at least: 20 times what computing it took, if that is longer): a live
 * filesystem allocates all the time, and every read consults it. */
#define FERRY_USEDMAP_TTL 1.0

/*! ferry_usedmap_wrap() :
 * Serve the one disk of *@src (opened from @path) as the source with the
 * free space of its filesystems zeroed: its extent map is the inner map
 * less what no filesystem uses, and reads return zeros there, so data,
 * digests and compressed bodies agree. On success *@src is the wrapper,
 * which owns the inner source. @return 0 or -errno (then *@src is as it
 * was). */
int ferry_usedmap_wrap(struct ferry_source **src, const char *path);

/*! ferry_usedmap_volumes() :
 * The volumes of @src's disk as a JSON array of {where, offset, length,
 * type, used, map, reason?}, or NULL if @src is not a wrapper. */
json_t *ferry_usedmap_volumes(struct ferry_source *src);

/*! ferry_usedmap_since() : from now on, serve maps computed at @t
 * (ferry_now()) or later: the next read or extent map of @src computes
 * one if need be (a client's resync, after the source was quiesced). No-op
 * if @src is not a wrapper. */
void ferry_usedmap_since(struct ferry_source *src, double t);

/*! ferry_usedmap_used() : bytes @src serves as data now (its map), or
 * the inner allocation if @src is not a wrapper. */
uint64_t ferry_usedmap_used(struct ferry_source *src);

#endif
