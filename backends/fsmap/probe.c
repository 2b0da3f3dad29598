/* ferry — what a volume holds, by libblkid.
 *
 * libblkid is the probe every Linux tool trusts (mount, lsblk, udev); we
 * do not hand-roll magic numbers. It reads a file descriptor, while our
 * volumes are read callbacks (a partition of an exported disk, the virtual
 * disk of an image, a logical volume scattered over a PV). So the probe
 * copies the volume's first and last PROBE_WINDOW bytes into a sparse
 * memory file of the volume's size and lets libblkid read that: every
 * superblock libblkid looks for lies in those windows (the farthest in,
 * ZFS's labels, at 512 KiB from either end). A signature it finds but
 * cannot confirm from those bytes is at worst not found: all data.
 *
 * A volume that is also a descriptor (a partition of an exported block
 * device or file) is probed through it instead, so that libblkid reads
 * only the few KiB it needs. On a block device the windows are first
 * dropped from the page cache, which may hold what a mounted partition has
 * since rewritten; a regular file has one page cache, always current, and
 * dropping it would only send the exporter's next reads of those bytes to
 * the disk.
 *
 * Only superblocks are probed, and two signatures that disagree are
 * nothing: libblkid's safe probe refuses ambivalent results.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <blkid/blkid.h>

#include "backends/fsmap/fsmap.h"
#include "common/util.h"

#define PROBE_WINDOW (1u << 20)

static int
copy(int fd, const struct fsmap_vol *v, uint64_t off, size_t len, void *buf)
{
	int r = v->read(v->ctx, off, buf, len);

	if (r < 0)
		return r;
	return ferry_pwrite_all(fd, buf, len, off);
}

static int
blkid_type(void *ctx, const struct fsmap_vol *v, char *type, size_t typelen)
{
	size_t head = (size_t)FERRY_MIN(v->size, (uint64_t)PROBE_WINDOW);
	uint64_t tail = v->size > 2 * (uint64_t)PROBE_WINDOW ?
			v->size - PROBE_WINDOW : head;
	void *buf = malloc(PROBE_WINDOW);
	blkid_probe pr = NULL;
	const char *val = NULL;
	int fd, r;

	(void)ctx;
	type[0] = '\0';
	if (v->has_fd) {
		struct stat st;

		if (fstat(v->fd, &st) == 0 && S_ISBLK(st.st_mode)) {
			posix_fadvise(v->fd, (off_t)v->fd_off, (off_t)head,
				      POSIX_FADV_DONTNEED);
			posix_fadvise(v->fd, (off_t)(v->fd_off + tail),
				      (off_t)(v->size - tail),
				      POSIX_FADV_DONTNEED);
		}
		fd = -1;
		pr = blkid_new_probe();
		if (!pr || blkid_probe_set_device(pr, v->fd,
						  (blkid_loff_t)v->fd_off,
						  (blkid_loff_t)v->size)) {
			r = -ENOMEM;
			goto out;
		}
		goto probe;
	}
	fd = memfd_create("ferry-probe", MFD_CLOEXEC);
	if (fd < 0 || !buf) {
		r = fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	if (ftruncate(fd, (off_t)v->size) < 0) {
		r = -errno;
		goto out;
	}
	r = copy(fd, v, 0, head, buf);
	if (r == 0 && tail < v->size)
		r = copy(fd, v, tail, (size_t)(v->size - tail), buf);
	if (r < 0)
		goto out;
	pr = blkid_new_probe();
	if (!pr || blkid_probe_set_device(pr, fd, 0, (blkid_loff_t)v->size)) {
		r = -ENOMEM;
		goto out;
	}
probe:
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE);
	blkid_probe_enable_partitions(pr, 0);
	if (blkid_do_safeprobe(pr) == 0 &&
	    blkid_probe_lookup_value(pr, "TYPE", &val, NULL) == 0 && val)
		snprintf(type, typelen, "%s", val);
	r = 0;
out:
	if (pr)
		blkid_free_probe(pr);
	if (fd >= 0)
		close(fd);
	free(buf);
	return r;
}

const struct fsmap_probe fsmap_probe_blkid = { .probe = blkid_type };
