/* ferry — file backend: a raw image file or a block device, read-only.
 *
 * Size comes from fstat (files) or BLKGETSIZE64 (block devices). The
 * allocation map of a file comes from SEEK_DATA/SEEK_HOLE, so holes in a
 * sparse image never cross the wire; a block device reports all data.
 * Nothing here ever writes: the descriptor is opened O_RDONLY.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "common/log.h"
#include "common/util.h"

struct file_priv {
	int fd;
	/* A block device's reads, O_DIRECT, or -1 (file_pread). */
	int dfd;
	bool blockdev;
	char path[4096];
	char gen[128];		/* the generation the file itself gives */
};

/* Size and generation of the open file or device, as fstat says now. */
static int
file_identity(struct file_priv *p, uint64_t *size, char *gen, size_t len)
{
	struct stat st;

	if (fstat(p->fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(p->fd, BLKGETSIZE64, size) < 0)
			return -errno;
		snprintf(gen, len, "blk-%llx-%" PRIu64,
			 (unsigned long long)st.st_rdev, *size);
	} else {
		*size = (uint64_t)st.st_size;
		snprintf(gen, len, "file-%llx-%llx-%" PRIu64 "-%lld.%09ld",
			 (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino, *size,
			 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	}
	return 0;
}

/* A file written since it was opened has another mtime (and maybe size):
 * another generation. (Writes within one tick of the file system's clock
 * after a look may share its mtime; a replaced file is not followed: the
 * open one is what is served.) */
static int
file_refresh(struct ferry_source *src, unsigned disk)
{
	struct file_priv *p = src->priv;
	struct ferry_disk_info *d = &src->disks[disk];
	char gen[128];
	uint64_t size;
	int r = file_identity(p, &size, gen, sizeof gen);

	if (r < 0) {
		errno = -r;
		ferry_error("%s: stat: %m", p->path);
		return r;
	}
	if (strcmp(gen, p->gen) == 0)
		return 0;
	snprintf(p->gen, sizeof p->gen, "%s", gen);
	snprintf(d->generation, sizeof d->generation, "%s", gen);
	d->size = size;
	return 1;
}

static void
file_close(struct ferry_source *src)
{
	struct file_priv *p = src->priv;

	if (p->fd >= 0)
		close(p->fd);
	if (p->dfd >= 0)
		close(p->dfd);
	free(p);
	free(src->disks);
	free(src);
}

static int
file_extents(struct ferry_source *src, unsigned disk,
	     struct ferry_extents *map)
{
	struct file_priv *p = src->priv;
	uint64_t size = src->disks[disk].size;
	off_t pos = 0;
	int r;

	if (p->blockdev)
		return ferry_extents_all_data(map);

	while ((uint64_t)pos < size) {
		off_t data = lseek(p->fd, pos, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;		/* only a hole up to the end */
		if (data < 0 && errno == EINVAL)
			return ferry_extents_all_data(map); /* no support */
		if (data < 0)
			goto fail;
		hole = lseek(p->fd, data, SEEK_HOLE);
		if (hole < 0)
			goto fail;
		if ((uint64_t)hole > size)
			hole = (off_t)size;	/* file grew meanwhile */
		if ((uint64_t)data >= size)
			break;
		r = ferry_extents_add(map, (uint64_t)data,
				      (uint64_t)(hole - data));
		if (r < 0) {
			ferry_error("%s: extent map: %s", p->path,
				    strerror(-r));
			return r;
		}
		pos = hole;
	}
	return 0;
fail:
	r = -errno;
	ferry_error("%s: lseek at %lld: %m", p->path, (long long)pos);
	return r;
}

/* Direct reads go through an aligned buffer of this much per thread. */
#define DIRECT_ALIGN 4096u
#define DIRECT_MAX (1u << 20)

static pthread_key_t direct_key;
static pthread_once_t direct_once = PTHREAD_ONCE_INIT;

static void
direct_key_make(void)
{
	pthread_key_create(&direct_key, free);
}

/* [off, off+len) of a block device, read past its page cache. @return 0,
 * 1 (no buffer: the caller reads as it otherwise would) or -errno. */
static int
direct_pread(struct file_priv *p, char *b, size_t len, uint64_t off)
{
	uint8_t *bounce;

	pthread_once(&direct_once, direct_key_make);
	bounce = pthread_getspecific(direct_key);
	if (!bounce) {
		void *m = NULL;

		if (posix_memalign(&m, DIRECT_ALIGN, DIRECT_MAX) != 0)
			return 1;
		bounce = m;
		pthread_setspecific(direct_key, bounce);
	}
	while (len > 0) {
		uint64_t a = off / DIRECT_ALIGN * DIRECT_ALIGN;
		size_t skip = (size_t)(off - a);
		size_t n = FERRY_MIN(len, (size_t)DIRECT_MAX - skip);
		size_t want = (skip + n + DIRECT_ALIGN - 1) / DIRECT_ALIGN *
			      DIRECT_ALIGN;
		ssize_t k = pread(p->dfd, bounce, want, (off_t)a);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int r = -errno;

			ferry_error("%s: read at %" PRIu64 ": %m", p->path, off);
			return r;
		}
		if ((size_t)k < skip + n) {	/* the device's end */
			ferry_error("%s: read at %" PRIu64 ": unexpected end "
				    "of device", p->path, off);
			return -EIO;
		}
		memcpy(b, bounce + skip, n);
		b += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int
file_pread(struct ferry_source *src, unsigned disk, void *buf, size_t len,
	   uint64_t off)
{
	struct file_priv *p = src->priv;
	char *b = buf;

	(void)disk;
	/* A block device has a page cache of its own, apart from that of a
	 * partition or loop device over the same blocks: what a mounted
	 * filesystem wrote there since we last read is not in ours. Its
	 * reads go to the device (O_DIRECT). Dropping the range before a
	 * buffered read (what is left, where O_DIRECT is refused) does not
	 * always do: a page another thread is reading at that moment is not
	 * dropped, and two overlapping reads each kept the other's stale
	 * page (test-live-allblocks, under ASan: a copy whose journal
	 * superblock was older than its superblock). */
	if (p->dfd >= 0) {
		int r = direct_pread(p, b, len, off);

		if (r <= 0)
			return r;
	}
	if (p->blockdev)
		posix_fadvise(p->fd, (off_t)off, (off_t)len,
			      POSIX_FADV_DONTNEED);
	while (len > 0) {
		ssize_t n = pread(p->fd, b, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int r = -errno;

			ferry_error("%s: read at %" PRIu64 ": %m", p->path, off);
			return r;
		}
		if (n == 0) {
			ferry_error("%s: read at %" PRIu64 ": unexpected end "
				    "of file (did the source shrink?)",
				    p->path, off);
			return -EIO;
		}
		b += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int
file_fd(struct ferry_source *src, unsigned disk)
{
	struct file_priv *p = src->priv;

	(void)disk;
	return p->fd;
}

static const struct ferry_backend file_backend = {
	.name = "file",
	.fd = file_fd,
	.close = file_close,
	.extents = file_extents,
	.pread = file_pread,
	.refresh = file_refresh,
};

int
ferry_file_open(const char *name, const char *path, struct ferry_source **out)
{
	struct ferry_source *src = NULL;
	struct file_priv *p = NULL;
	struct ferry_disk_info *d;
	struct stat st;
	int r;

	src = calloc(1, sizeof *src);
	if (src)
		pthread_mutex_init(&src->health.lock, NULL);
	p = calloc(1, sizeof *p);
	d = calloc(1, sizeof *d);
	if (!src || !p || !d) {
		free(src);
		free(p);
		free(d);
		return -ENOMEM;
	}
	p->fd = p->dfd = -1;
	src->ops = &file_backend;
	src->priv = p;
	src->disks = d;
	src->ndisks = 1;
	snprintf(p->path, sizeof p->path, "%s", path);
	snprintf(d->name, sizeof d->name, "%s", name);
	d->sector_size = 512;

	/* O_NOATIME keeps even the access time of the source untouched,
	 * where we own the file; otherwise fall back. */
	p->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME);
	if (p->fd < 0 && errno == EPERM)
		p->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (p->fd < 0) {
		r = -errno;
		ferry_error("%s: open: %m", path);
		goto fail;
	}
	if (fstat(p->fd, &st) < 0) {
		r = -errno;
		ferry_error("%s: stat: %m", path);
		goto fail;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t bytes;
		int ssz;

		if (ioctl(p->fd, BLKGETSIZE64, &bytes) < 0) {
			r = -errno;
			ferry_error("%s: BLKGETSIZE64: %m", path);
			goto fail;
		}
		if (ioctl(p->fd, BLKSSZGET, &ssz) == 0 && ssz > 0)
			d->sector_size = (uint32_t)ssz;
		p->blockdev = true;
		d->live = true;		/* its writes are not seen here */
		p->dfd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
		(void)bytes;
	} else if (!S_ISREG(st.st_mode)) {
		ferry_error("%s: not a regular file or block device", path);
		r = -EINVAL;
		goto fail;
	}
	r = file_identity(p, &d->size, p->gen, sizeof p->gen);
	if (r < 0) {
		errno = -r;
		ferry_error("%s: stat: %m", path);
		goto fail;
	}
	snprintf(d->generation, sizeof d->generation, "%s", p->gen);
	snprintf(src->id, sizeof src->id, "file:%s", path);
	{
		struct ferry_extents m;

		ferry_extents_init(&m, d->size);
		r = file_extents(src, 0, &m);
		d->allocated = m.data_bytes;
		ferry_extents_free(&m);
		if (r < 0)
			goto fail;
	}
	*out = src;
	return 0;
fail:
	file_close(src);
	return r;
}
