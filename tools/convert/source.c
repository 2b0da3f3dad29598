/* ferry-convert — the source: a file of a ferry mount, or a plain file or
 * block device. See convert.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "tools/convert/convert.h"

#define PLAIN_PIECE (1u << 20)
#define MAP_MAX (256u << 20)

/* The whole of file @path into a malloc'd buffer. */
static int
slurp(const char *path, char **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0 || !buf) {
		r = fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t k;

		if (n == cap) {
			char *nb = cap < MAP_MAX ? realloc(buf, cap * 2) : NULL;

			if (!nb) {
				r = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
		k = read(fd, buf + n, cap - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			goto out;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
out:
	if (fd >= 0)
		close(fd);
	if (r < 0) {
		free(buf);
		return r;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* The content map: the disk's data ranges inside the file's range,
 * shifted to content offsets. */
static int
content_map(struct source *s)
{
	const struct ferry_extents *m = &s->mm.data;
	uint64_t a = s->disk_off, b = s->disk_off + s->size;

	ferry_extents_free(&s->map);
	ferry_extents_init(&s->map, s->size);
	for (size_t i = ferry_extents_find(m, a); i < m->n; i++) {
		uint64_t x = FERRY_MAX(m->v[i].off, a);
		uint64_t y = FERRY_MIN(m->v[i].off + m->v[i].len, b);

		if (x >= b)
			break;
		if (y > x && ferry_extents_add(&s->map, x - a, y - x) < 0)
			return -ENOMEM;
	}
	s->data_bytes = s->map.data_bytes;
	return 0;
}

static int
read_map(struct source *s, struct mount_map *mm, char *why, size_t whylen)
{
	char *text;
	size_t len;
	int r = slurp(s->map_path, &text, &len);

	if (r < 0) {
		snprintf(why, whylen, "%s: %s", s->map_path, strerror(-r));
		return r;
	}
	r = mount_map_parse(text, len, s->name, mm, why, whylen);
	free(text);
	return r;
}

static int
open_mount(struct source *s, char *why, size_t whylen)
{
	char dir[PATH_MAX], rawpath[PATH_MAX + 200];
	char why2[200];
	int r;

	snprintf(dir, sizeof dir, "%s", s->path);
	snprintf(s->name, sizeof s->name, "%s", basename(s->path));
	snprintf(s->map_path, sizeof s->map_path, "%s/.ferry/map.json",
		 dirname(dir));
	r = read_map(s, &s->mm, why2, sizeof why2);
	if (r < 0) {
		snprintf(why, whylen, "%s", why2);
		return r;
	}
	s->disk_off = s->mm.offset;
	s->size = s->mm.length;
	s->piece = s->mm.chunk;
	if (strcmp(s->mm.format, "raw") == 0) {
		s->base = 0;	/* the file is the range itself */
	} else if (s->mm.raw_file[0]) {
		/* An image view: its content is the disk, read from the
		 * disk's raw file. */
		snprintf(dir, sizeof dir, "%s", s->path);
		snprintf(rawpath, sizeof rawpath, "%s/%s", dirname(dir),
			 s->mm.raw_file);
		close(s->fd);
		s->fd = open(rawpath, O_RDONLY | O_CLOEXEC);
		if (s->fd < 0) {
			snprintf(why, whylen, "%s: %s", rawpath,
				 strerror(errno));
			return -errno;
		}
		s->base = s->disk_off;
	} else {
		snprintf(why, whylen, "%s is a %s view and the mount has no raw "
			 "view of disk %s to read from; mount with views= "
			 "including raw", s->path, s->mm.format, s->mm.disk);
		return -ENOTSUP;
	}
	/* No kernel readahead on the mount: it would ask past the cached
	 * bytes read here, and each such read makes the mount fetch that
	 * chunk, and read ahead from it, out of hydration's order, taking
	 * the link from it (bench/link.sh, compress=0 at 1 Gbit/s). What is
	 * read here is what has arrived, in the order chosen here. */
	(void)posix_fadvise(s->fd, 0, 0, POSIX_FADV_RANDOM);
	snprintf(s->id, sizeof s->id, "ferry disk %s generation %s range "
		 "%" PRIu64 "+%" PRIu64, s->mm.disk, s->mm.generation,
		 s->disk_off, s->size);
	snprintf(s->stable, sizeof s->stable, "ferry disk %s range %" PRIu64
		 "+%" PRIu64, s->mm.disk, s->disk_off, s->size);
	return content_map(s);
}

/* A plain file: its data ranges by SEEK_DATA/SEEK_HOLE; a device: all. */
static int
open_plain(struct source *s, const struct stat *st, char *why, size_t whylen)
{
	uint64_t size = 0;

	if (S_ISBLK(st->st_mode)) {
		if (ioctl(s->fd, BLKGETSIZE64, &size) < 0) {
			snprintf(why, whylen, "%s: cannot get its size: %s",
				 s->path, strerror(errno));
			return -errno;
		}
	} else if (S_ISREG(st->st_mode)) {
		size = (uint64_t)st->st_size;
	} else {
		snprintf(why, whylen, "%s is not a file or block device",
			 s->path);
		return -EINVAL;
	}
	s->size = size;
	s->piece = PLAIN_PIECE;
	ferry_extents_init(&s->map, size);
	if (S_ISREG(st->st_mode)) {
		off_t off = 0;

		while ((uint64_t)off < size) {
			off_t d = lseek(s->fd, off, SEEK_DATA), h;

			if (d < 0 && errno == ENXIO)
				break;
			if (d < 0) {	/* no SEEK_DATA here: all data */
				ferry_extents_free(&s->map);
				ferry_extents_init(&s->map, size);
				if (ferry_extents_all_data(&s->map) < 0)
					return -ENOMEM;
				break;
			}
			h = lseek(s->fd, d, SEEK_HOLE);
			if (h < 0)
				h = (off_t)size;
			if (ferry_extents_add(&s->map, (uint64_t)d,
					      (uint64_t)(h - d)) < 0)
				return -ENOMEM;
			off = h;
		}
	} else if (ferry_extents_all_data(&s->map) < 0) {
		return -ENOMEM;
	}
	s->data_bytes = s->map.data_bytes;
	s->complete = true;
	snprintf(s->id, sizeof s->id, "file %ju:%ju size %" PRIu64 " mtime "
		 "%lld.%09ld", (uintmax_t)st->st_dev, (uintmax_t)st->st_ino,
		 size, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
	snprintf(s->stable, sizeof s->stable, "file %ju:%ju",
		 (uintmax_t)st->st_dev, (uintmax_t)st->st_ino);
	return 0;
}

int
source_open(struct source *s, const char *path, char *why, size_t whylen)
{
	char dir[PATH_MAX], map[PATH_MAX + 20];
	struct stat st;
	int r;

	memset(s, 0, sizeof *s);
	s->fd = -1;
	if (strlen(path) >= sizeof s->path) {
		snprintf(why, whylen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	snprintf(s->path, sizeof s->path, "%s", path);
	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0 || fstat(s->fd, &st) < 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	snprintf(dir, sizeof dir, "%s", path);
	snprintf(map, sizeof map, "%s/.ferry/map.json", dirname(dir));
	s->mount = S_ISREG(st.st_mode) && access(map, R_OK) == 0;
	r = s->mount ? open_mount(s, why, whylen) :
		       open_plain(s, &st, why, whylen);
	if (r < 0)
		return r;
	s->npieces = (s->disk_off % s->piece + s->size + s->piece - 1) /
		     s->piece;
	if (s->mount)
		s->complete = s->mm.complete;
	return 0;
}

void
source_close(struct source *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	ferry_extents_free(&s->map);
	mount_map_free(&s->mm);
}

int
source_poll(struct source *s)
{
	struct mount_map mm;
	char why[300];
	int r;

	if (!s->mount || s->complete)
		return 0;
	r = read_map(s, &mm, why, sizeof why);
	if (r < 0) {
		ferry_error("%s", why);
		return r;
	}
	if (strcmp(mm.generation, s->mm.generation) != 0 ||
	    mm.layout != s->mm.layout ||
	    mm.offset != s->mm.offset || mm.length != s->mm.length) {
		ferry_error("%s: the disk changed under the conversion (another "
			    "generation, or a resync's new map); run it again (with "
			    "--update: only what differs is written)", s->path);
		mount_map_free(&mm);
		return -ESTALE;
	}
	/* The data map is the one the output's layout was made from; only
	 * the cached chunks are taken from the new read. */
	ferry_bitmap_free(&s->mm.present);
	s->mm.present = mm.present;
	mm.present.bytes = NULL;
	s->mm.complete = mm.complete;
	s->complete = mm.complete;
	mount_map_free(&mm);
	return 0;
}

bool
source_ready(const struct source *s, uint64_t k)
{
	if (!s->mount || s->complete)
		return true;
	return mount_map_ready(&s->mm, s->disk_off + piece_off(s, k),
			       piece_len(s, k));
}
