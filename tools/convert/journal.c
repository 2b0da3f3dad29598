/* ferry-convert — the journal of a conversion: which pieces of the output
 * are written and flushed, so that a rerun after an interruption (SIGINT,
 * kill -9, a reboot) continues instead of starting over.
 *
 * Layout: a 4 KiB header, "ferry-convert journal 1\n" and one line naming
 * the conversion (source identity, output format and layout), then the
 * bitmap of done pieces. The bitmap is saved only after the output is
 * flushed (fdatasync), and itself flushed, so a piece marked done is on the
 * disk whatever happens next; a piece written but not yet marked is simply
 * written again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "tools/convert/convert.h"

#define HEADER 4096
#define MAGIC "ferry-convert journal 1\n"

static int
fill_header(char *h, const char *id)
{
	memset(h, 0, HEADER);
	if (strlen(MAGIC) + strlen(id) + 2 > HEADER)
		return -ENAMETOOLONG;
	snprintf(h, HEADER, MAGIC "%s\n", id);
	return 0;
}

int
journal_open(struct journal *j, const char *path, const char *id,
	     uint64_t npieces, bool *resumed, char *why, size_t whylen)
{
	char want[HEADER], got[HEADER];
	size_t nbytes = ferry_bitmap_bytes(npieces);
	uint8_t *bits = NULL;
	ssize_t n;
	int r;

	memset(j, 0, sizeof *j);
	j->fd = -1;
	*resumed = false;
	snprintf(j->path, sizeof j->path, "%s", path);
	r = fill_header(want, id);
	if (r < 0 || ferry_bitmap_init(&j->done, npieces) < 0) {
		snprintf(why, whylen, "cannot set up the journal");
		return r < 0 ? r : -ENOMEM;
	}
	j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->fd < 0) {
		snprintf(why, whylen, "journal %s: %s", path, strerror(errno));
		return -errno;
	}
	n = pread(j->fd, got, HEADER, 0);
	bits = malloc(nbytes ? nbytes : 1);
	if (!bits) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	if (n == HEADER && memcmp(got, want, HEADER) == 0 &&
	    pread(j->fd, bits, nbytes, HEADER) == (ssize_t)nbytes) {
		ferry_bitmap_load(&j->done, bits);
		*resumed = true;
	} else {
		/* New, or another conversion's: start over. */
		if (ftruncate(j->fd, 0) < 0 ||
		    ferry_pwrite_all(j->fd, want, HEADER, 0) < 0) {
			snprintf(why, whylen, "journal %s: %s", path,
				 strerror(errno));
			free(bits);
			return -errno;
		}
		r = journal_save(j, &j->done);
		if (r < 0) {
			snprintf(why, whylen, "journal %s: %s", path,
				 strerror(-r));
			free(bits);
			return r;
		}
	}
	free(bits);
	return 0;
}

int
journal_save(struct journal *j, const struct ferry_bitmap *done)
{
	uint8_t *bits = journal_snapshot(done);
	int r;

	if (!bits)
		return -ENOMEM;
	r = journal_save_bits(j, bits);
	free(bits);
	return r;
}

uint8_t *
journal_snapshot(const struct ferry_bitmap *done)
{
	size_t nbytes = ferry_bitmap_bytes(done->nbits);
	uint8_t *bits = malloc(nbytes ? nbytes : 1);

	if (bits)
		ferry_bitmap_snapshot(done, bits);
	return bits;
}

int
journal_save_bits(struct journal *j, const uint8_t *bits)
{
	int r = ferry_pwrite_all(j->fd, bits,
				 ferry_bitmap_bytes(j->done.nbits), HEADER);

	if (r == 0 && fdatasync(j->fd) < 0)
		r = -errno;
	return r;
}

void
journal_remove(struct journal *j)
{
	unlink(j->path);
}

void
journal_close(struct journal *j)
{
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
	ferry_bitmap_free(&j->done);
}
