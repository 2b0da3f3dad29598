/* ferry — allocation maps ("extent maps").
 *
 * A map lists the DATA ranges of a disk of a given size, sorted, merged and
 * non-overlapping; everything else is a hole (reads as zeros and is never
 * transferred). On the wire (doc/protocol.md) a map is
 *   {"size": N, "extents": [[offset, length, "data"|"zero"], ...]}
 * covering [0, size) contiguously.
 */
#ifndef FERRY_EXTENTS_H
#define FERRY_EXTENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ferry_extent {
	uint64_t off;
	uint64_t len;
};

struct ferry_extents {
	uint64_t size;		/* disk size in bytes */
	uint64_t data_bytes;	/* sum of len over v[] */
	struct ferry_extent *v;	/* data extents, sorted, merged */
	size_t n, cap;
};

/*! ferry_extents_init() : empty map (all hole) for a disk of @size. */
void ferry_extents_init(struct ferry_extents *m, uint64_t size);
void ferry_extents_free(struct ferry_extents *m);

/*! ferry_extents_add() :
 * Append a data extent. Extents must come in increasing order; one touching
 * the previous is merged into it. Zero-length extents are ignored.
 * @return 0, -EINVAL (out of order or past size) or -ENOMEM. */
int ferry_extents_add(struct ferry_extents *m, uint64_t off, uint64_t len);

/*! ferry_extents_all_data() : replace the map with one extent covering all. */
int ferry_extents_all_data(struct ferry_extents *m);

/*! ferry_extents_zero_holes() : zero the bytes of @buf, which holds
 * [@off, @off + @len) of a disk, that lie in none of @m's data ranges:
 * what is not used reads as zeros. */
void ferry_extents_zero_holes(const struct ferry_extents *m, void *buf,
			      uint64_t off, size_t len);

/*! ferry_extents_minus_blocks() :
 * @out (initialised, empty) = the data of @m less the blocks of @gran
 * bytes whose bit is set in @blocks (block i is [i*gran, (i+1)*gran),
 * the last one cut at the disk size): how ferry-export leaves known-zero
 * blocks out of a map. @return 0 or -ENOMEM. */
struct ferry_bitmap;
int ferry_extents_minus_blocks(const struct ferry_extents *m,
			       const struct ferry_bitmap *blocks,
			       uint64_t gran, struct ferry_extents *out);

/*! ferry_extents_subtract() : @out (initialised, empty) = the data of @a
 * less that of @b, clipped to out->size. @return 0 or -ENOMEM. */
int ferry_extents_subtract(const struct ferry_extents *a,
			   const struct ferry_extents *b,
			   struct ferry_extents *out);

/*! ferry_extents_unite() : @out (initialised, empty) = the data of @a and
 * of @b, clipped to out->size. @return 0 or -ENOMEM. */
int ferry_extents_unite(const struct ferry_extents *a,
			const struct ferry_extents *b,
			struct ferry_extents *out);

/*! ferry_extents_find() :
 * @return the index of the first extent that ends after @off (n if none). */
size_t ferry_extents_find(const struct ferry_extents *m, uint64_t off);

/*! ferry_extents_data_in() : bytes of data in [off, off+len). */
uint64_t ferry_extents_data_in(const struct ferry_extents *m, uint64_t off,
			       uint64_t len);

/*! ferry_extents_to_json() :
 * @return a malloc'd JSON text of the map (wire form), or NULL on ENOMEM. */
char *ferry_extents_to_json(const struct ferry_extents *m);

/*! ferry_extents_from_json() :
 * Parse the wire form. The map must cover [0, size) exactly, with positive
 * lengths and known types; @expect_size, if not UINT64_MAX, must equal size.
 * On error, logs nothing and writes a reason into @why.
 * @return 0, or -EINVAL (malformed) / -ENOMEM. */
int ferry_extents_from_json(const char *text, size_t len, uint64_t expect_size,
			    struct ferry_extents *m, char *why, size_t whylen);

#endif
