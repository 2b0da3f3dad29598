/* ferry — chunk arithmetic: which fixed-size chunks a byte range touches,
 * and which of them hold data by an allocation map. Pure functions. */
#ifndef FERRY_CHUNK_H
#define FERRY_CHUNK_H

#include <stdbool.h>
#include <stdint.h>

#include "common/extents.h"

/*! ferry_chunk_count() : chunks of @chunk bytes covering @size bytes. */
static inline uint64_t
ferry_chunk_count(uint64_t size, uint64_t chunk)
{
	return size / chunk + (size % chunk != 0);
}

/*! ferry_chunk_span() :
 * The chunks that [off, off+len) touches inside a disk of @size bytes.
 * @return false if the range is empty or starts past the end. */
static inline bool
ferry_chunk_span(uint64_t off, uint64_t len, uint64_t size, uint64_t chunk,
		 uint64_t *first, uint64_t *last)
{
	uint64_t end;

	if (len == 0 || off >= size)
		return false;
	end = len > size - off ? size : off + len;
	*first = off / chunk;
	*last = (end - 1) / chunk;
	return true;
}

/*! ferry_chunk_data_in_range() :
 * Bytes of data that chunk @c holds inside [off, off+len) (clipped to the
 * chunk and the disk), by map @m. 0 means the read needs nothing fetched
 * from that chunk. */
static inline uint64_t
ferry_chunk_data_in_range(const struct ferry_extents *m, uint64_t chunk,
			  uint64_t c, uint64_t off, uint64_t len)
{
	uint64_t cs = c * chunk, ce = cs + chunk;
	uint64_t a = off > cs ? off : cs;
	uint64_t b = off + len < ce ? off + len : ce;

	return b > a ? ferry_extents_data_in(m, a, b - a) : 0;
}

/*! ferry_chunk_data() : data bytes in chunk @c (0: the chunk is a hole). */
static inline uint64_t
ferry_chunk_data(const struct ferry_extents *m, uint64_t chunk, uint64_t c)
{
	return ferry_extents_data_in(m, c * chunk, chunk);
}

#endif
