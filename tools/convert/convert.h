/* ferry-convert — build a disk image from a ferry mount in the order its
 * data arrives, or from any file or block device in order.
 *
 *   main.c      options, the copy loop, progress, --verify
 *   source.c    what is read: a file of a ferry mount (its disk range,
 *               data map and cached chunks, polled from .ferry/map.json)
 *               or a plain file or device
 *   journal.c   the pieces already written, so that a rerun continues
 *   mountmap.c  .ferry/map.json parsed
 */
#ifndef FERRY_CONVERT_H
#define FERRY_CONVERT_H

#include <stdbool.h>
#include <stdint.h>
#include <limits.h>

#include "common/bitmap.h"
#include "common/extents.h"
#include "tools/convert/mountmap.h"

/* The content to convert: @size bytes, read from @fd at @base + offset.
 * Pieces are the units of work: piece k is content range
 * [piece_off(k), piece_off(k) + piece_len(k)), aligned to the mount's
 * chunks so that "cached" is a property of a piece. */
struct source {
	char path[PATH_MAX];
	int fd;
	uint64_t base;		/* content offset 0 is at this offset of fd */
	uint64_t size;
	uint64_t disk_off;	/* mount: content offset 0 in disk bytes */
	uint64_t piece;		/* piece size */
	uint64_t npieces;
	struct ferry_extents map;	/* content data ranges */
	uint64_t data_bytes;
	char id[512];		/* identity, for the journal */
	char stable[400];	/* the same across generations: image ids */

	bool mount;		/* a file of a ferry mount */
	char map_path[PATH_MAX];	/* its .ferry/map.json */
	char name[256];		/* its name in the mount */
	struct mount_map mm;	/* the last map read */
	bool complete;		/* every piece is readable without waiting */
};

/*! source_open() : @path as a source, with @why on error.
 * @return 0 or -errno. */
int source_open(struct source *s, const char *path, char *why,
		size_t whylen);
void source_close(struct source *s);

/*! source_poll() : read the mount's map again (no-op for plain files).
 * @return 0 or -errno (the mount went away). */
int source_poll(struct source *s);

/*! source_ready() : can piece @k be read without waiting for the
 * network? (Always, for plain files.) */
bool source_ready(const struct source *s, uint64_t k);

static inline uint64_t
piece_off(const struct source *s, uint64_t k)
{
	uint64_t start = k * s->piece;

	/* Pieces are aligned in disk bytes: the first may be short. */
	start = start > s->disk_off % s->piece ?
		start - s->disk_off % s->piece : 0;
	return start;
}

static inline uint64_t
piece_len(const struct source *s, uint64_t k)
{
	uint64_t a = piece_off(s, k), b = piece_off(s, k + 1);

	if (k + 1 >= s->npieces || b > s->size)
		b = s->size;
	return b - a;
}

struct journal {
	char path[PATH_MAX];
	int fd;
	struct ferry_bitmap done;	/* pieces written and flushed */
};

/*! journal_open() : open or create the journal at @path for a conversion
 * identified by @id with @npieces pieces. *resumed tells whether an
 * earlier run's pieces were found (else all are to do).
 * @return 0 or -errno, with @why. */
int journal_open(struct journal *j, const char *path, const char *id,
		 uint64_t npieces, bool *resumed, char *why, size_t whylen);

/*! journal_save() : persist @done (the output must be flushed first).
 * @return 0 or -errno. */
int journal_save(struct journal *j, const struct ferry_bitmap *done);

/*! journal_snapshot() : a copy of @done's bytes, to save once the output
 * is flushed while pieces go on being marked (free() it), or NULL. */
uint8_t *journal_snapshot(const struct ferry_bitmap *done);

/*! journal_save_bits() : persist a snapshot of @j's bitmap.
 * @return 0 or -errno. */
int journal_save_bits(struct journal *j, const uint8_t *bits);

/*! journal_remove() : the conversion is finished. */
void journal_remove(struct journal *j);
void journal_close(struct journal *j);

#endif
