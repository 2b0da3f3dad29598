/* ferry — the kernel's map of a mounted filesystem (FS_IOC_GETFSMAP).
 *
 * On-disk bitmaps of a mounted filesystem lag what the kernel has
 * allocated, so where a volume of the exported disk is mounted, its map
 * comes from the kernel, through the mount point. A mounted device is a
 * volume of the export when both resolve to the same thing underneath:
 * a partition is its parent disk plus its start (sysfs), a loop device is
 * its backing file plus its offset (sysfs loop/), a file is its device and
 * inode. So a partition of the exported device, a loop device over the
 * exported file, or a loop device at an offset into the same file as an
 * exported loop device all match.
 *
 * Everything the kernel does not report free (FMR_OWN_FREE) counts as used:
 * ext4 leaves file data out of its records, XFS without rmapbt calls it
 * "unknown". A mounted filesystem the kernel cannot map (vfat, ntfs-3g,
 * btrfs) is all data: its on-disk structures cannot be trusted while it is
 * mounted. Logical volumes are found by device-mapper name.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/fsmap.h>

#include "backends/fsmap/mounted.h"
#include "common/util.h"

#define FSMAP_RECS 512
#define RESOLVE_DEPTH 8

static int
read_sysfs(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -EIO;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static int
sysfs_u64(dev_t d, const char *attr, uint64_t *out)
{
	char path[128], buf[64], *end;

	snprintf(path, sizeof path, "/sys/dev/block/%u:%u/%s", major(d),
		 minor(d), attr);
	if (read_sysfs(path, buf, sizeof buf) < 0)
		return -ENOENT;
	*out = strtoull(buf, &end, 10);
	return end != buf ? 0 : -EINVAL;
}

/* What @d is at bottom: a file or a plain block device, and where @d
 * starts in it. */
static int
resolve_dev(dev_t d, struct mounted_base *b, unsigned depth)
{
	char path[160], buf[4200];
	uint64_t v;

	if (depth > RESOLVE_DEPTH)
		return -ELOOP;
	/* A partition: its parent disk, plus its start. */
	if (sysfs_u64(d, "partition", &v) == 0) {
		unsigned ma, mi;

		snprintf(path, sizeof path, "/sys/dev/block/%u:%u/../dev",
			 major(d), minor(d));
		if (read_sysfs(path, buf, sizeof buf) < 0 ||
		    sscanf(buf, "%u:%u", &ma, &mi) != 2 ||
		    sysfs_u64(d, "start", &v) < 0)
			return -ENOENT;
		if (resolve_dev(makedev(ma, mi), b, depth + 1) < 0)
			return -ENOENT;
		b->off += v * 512;
		return 0;
	}
	/* A loop device: its backing file, plus its offset. */
	snprintf(path, sizeof path, "/sys/dev/block/%u:%u/loop/backing_file",
		 major(d), minor(d));
	if (read_sysfs(path, buf, sizeof buf) == 0) {
		struct stat st;
		size_t n = strlen(buf);

		if (n > 10 && strcmp(buf + n - 10, " (deleted)") == 0)
			buf[n - 10] = '\0';
		if (stat(buf, &st) < 0)
			return -ENOENT;
		if (S_ISBLK(st.st_mode)) {
			if (resolve_dev(st.st_rdev, b, depth + 1) < 0)
				return -ENOENT;
		} else {
			b->file = true;
			b->dev = st.st_dev;
			b->ino = st.st_ino;
			b->off = 0;
		}
		if (sysfs_u64(d, "loop/offset", &v) < 0)
			return -ENOENT;
		b->off += v;
		return 0;
	}
	b->file = false;
	b->dev = d;
	b->ino = 0;
	b->off = 0;
	return 0;
}

int
mounted_resolve_path(const char *path, struct mounted_base *b)
{
	struct stat st;

	memset(b, 0, sizeof *b);
	if (stat(path, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode))
		return resolve_dev(st.st_rdev, b, 0);
	b->file = true;
	b->dev = st.st_dev;
	b->ino = st.st_ino;
	return 0;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void
unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] && s[3]) {
			*o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 |
				      (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* The next mounted block device of mountinfo @f: its number, mount point
 * and type. A filesystem mounted from a path (fuseblk: ntfs-3g) shows an
 * anonymous device number: its source is looked at instead.
 * @return 1, or 0 at the end. */
static int
next_mount(FILE *f, char **line, size_t *cap, dev_t *d, char *mnt,
	   size_t len, char *fstype, size_t typelen)
{
	while (getline(line, cap, f) > 0) {
		unsigned ma, mi;
		char point[4096], type[64], source[4096], *sep;
		struct stat st;

		if (sscanf(*line, "%*u %*u %u:%u %*s %4095s", &ma, &mi,
			   point) != 3)
			continue;
		sep = strstr(*line, " - ");
		if (!sep || sscanf(sep + 3, "%63s %4095s", type, source) != 2)
			continue;
		*d = makedev(ma, mi);
		if (ma == 0) {
			unescape(source);
			if (source[0] != '/' || stat(source, &st) < 0 ||
			    !S_ISBLK(st.st_mode))
				continue;
			*d = st.st_rdev;
		}
		unescape(point);
		snprintf(mnt, len, "%s", point);
		snprintf(fstype, typelen, "%s", type);
		return 1;
	}
	return 0;
}

/* The free ranges of the filesystem mounted at @mnt from device @d. */
static int
getfsmap(const char *mnt, dev_t d, struct ferry_extents *fr, char *why,
	 size_t whylen)
{
	struct fsmap_head *h = calloc(1, fsmap_sizeof(FSMAP_RECS));
	uint32_t kdev = (uint32_t)(minor(d) & 0xff) | major(d) << 8 |
			(uint32_t)(minor(d) & ~0xffu) << 12;
	struct stat st;
	int fd, r = 0;
	bool last = false;

	if (!h)
		return -ENOMEM;
	fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_dev != d) {
		/* Another filesystem mounted over it, or gone. */
		r = fsmap_fail(why, whylen, -EBUSY, "mounted at %s, which "
			       "cannot be opened as its root", mnt);
		goto out;
	}
	h->fmh_count = FSMAP_RECS;
	h->fmh_keys[1].fmr_device = UINT32_MAX;
	h->fmh_keys[1].fmr_flags = UINT32_MAX;
	h->fmh_keys[1].fmr_physical = UINT64_MAX;
	h->fmh_keys[1].fmr_owner = UINT64_MAX;
	h->fmh_keys[1].fmr_offset = UINT64_MAX;
	while (!last) {
		if (ioctl(fd, FS_IOC_GETFSMAP, h) < 0) {
			r = fsmap_fail(why, whylen, -errno, "mounted at %s; "
				       "the kernel gives no map (GETFSMAP: "
				       "%s)", mnt, strerror(errno));
			goto out;
		}
		if (h->fmh_entries == 0)
			break;
		for (unsigned i = 0; i < h->fmh_entries; i++) {
			const struct fsmap *m = &h->fmh_recs[i];

			if (m->fmr_flags & FMR_OF_LAST)
				last = true;
			if (m->fmr_device != kdev ||
			    !(m->fmr_flags & FMR_OF_SPECIAL_OWNER) ||
			    m->fmr_owner != FMR_OWN_FREE)
				continue;
			r = fsmap_add_free(fr, m->fmr_physical, m->fmr_length);
			if (r < 0) {
				fsmap_fail(why, whylen, r, "mounted at %s; the "
					   "kernel's map is out of order", mnt);
				goto out;
			}
		}
		fsmap_advance(h);
	}
out:
	if (fd >= 0)
		close(fd);
	free(h);
	return r;
}

/* Call @fn for each mounted block device of mountinfo until it returns
 * non-zero; @return that, or 0. */
static int
each_mount(int (*fn)(void *arg, dev_t d, const char *mnt), void *arg)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, mnt[4096], type[64];
	size_t cap = 0;
	dev_t d;
	int r = 0;

	if (!f)
		return 0;
	while (r == 0 && next_mount(f, &line, &cap, &d, mnt, sizeof mnt, type,
				    sizeof type) == 1)
		r = fn(arg, d, mnt);
	free(line);
	fclose(f);
	return r;
}

struct place_search {
	const struct mounted_ctx *c;
	const struct fsmap_place *pl;
	dev_t found;
	char mnt[4096];
};

/* 1 if device @d, mounted at @mnt, is the volume at the place asked;
 * -EBUSY if it covers part of it at another offset; 0 if neither. */
static int
place_match(void *arg, dev_t d, const char *mnt)
{
	struct place_search *s = arg;
	struct mounted_base b;
	uint64_t sectors;

	if (resolve_dev(d, &b, 0) < 0 || b.file != s->c->base.file ||
	    b.dev != s->c->base.dev || b.ino != s->c->base.ino ||
	    b.off < s->c->base.off || sysfs_u64(d, "size", &sectors) < 0)
		return 0;
	b.off -= s->c->base.off;
	if (b.off == s->pl->off && sectors * 512 <= s->pl->len) {
		s->found = d;
		snprintf(s->mnt, sizeof s->mnt, "%s", mnt);
		return 1;
	}
	if (b.off < s->pl->off + s->pl->len &&
	    b.off + sectors * 512 > s->pl->off)
		return -EBUSY;
	return 0;
}

/* 1 if the device looked for (s->found) is the one mounted at @mnt. */
static int
dev_match(void *arg, dev_t d, const char *mnt)
{
	struct place_search *s = arg;

	if (d != s->found)
		return 0;
	snprintf(s->mnt, sizeof s->mnt, "%s", mnt);
	return 1;
}

static int
lookup_dm(const char *name, dev_t *found)
{
	DIR *dir = opendir("/sys/block");
	struct dirent *de;
	int r = 0;

	if (!dir)
		return 0;
	while (r == 0 && (de = readdir(dir))) {
		char path[300], buf[300];
		unsigned ma, mi;

		if (strncmp(de->d_name, "dm-", 3) != 0)
			continue;
		snprintf(path, sizeof path, "/sys/block/%s/dm/name", de->d_name);
		if (read_sysfs(path, buf, sizeof buf) < 0 || strcmp(buf, name))
			continue;
		snprintf(path, sizeof path, "/sys/block/%s/dev", de->d_name);
		if (read_sysfs(path, buf, sizeof buf) == 0 &&
		    sscanf(buf, "%u:%u", &ma, &mi) == 2) {
			*found = makedev(ma, mi);
			r = 1;
		}
	}
	closedir(dir);
	return r;
}

static int
mounted_lookup(void *ctx, const struct fsmap_place *pl,
	       struct ferry_extents *fr, char *why, size_t whylen)
{
	struct place_search s = { .c = ctx, .pl = pl };
	int r;

	if (pl->dm_name)
		r = lookup_dm(pl->dm_name, &s.found) == 1 &&
		    each_mount(dev_match, &s) == 1;
	else
		r = each_mount(place_match, &s);
	if (r == -EBUSY)
		return fsmap_fail(why, whylen, r, "a mounted device covers "
				  "part of it at another offset");
	if (r <= 0)
		return 0;
	r = getfsmap(s.mnt, s.found, fr, why, whylen);
	return r < 0 ? r : 1;
}

int
mounted_init(struct mounted_ctx *c, const char *path, struct fsmap_kernel *k)
{
	int r = mounted_resolve_path(path, &c->base);

	if (r < 0)
		return r;
	k->lookup = mounted_lookup;
	k->ctx = c;
	return 0;
}
