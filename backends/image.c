/* ferry — disk images as sources: the virtual disk inside a qcow2/qcow
 * (libqcow), VHD/VHDX (libvhdi) or VMDK (libvmdk) file, read through
 * libyal's libraries from Debian's packages.
 *
 * The format is found from the file's content (each library's signature
 * check), or forced; anything else is a raw file (file.c). Backing and
 * parent images are opened from the names the image gives, relative to its
 * directory, and chained (a qcow2 over another qcow2, a differencing VHD
 * over its parent, a VMDK over its parent VMDK); libqcow cannot take a raw
 * backing file, so such an image is refused with the reason. Encrypted
 * qcow images are refused; compressed clusters are read by libqcow.
 *
 * Allocation: libyal exposes no map of allocated clusters, so the tables
 * are read here: qcow2's L1/L2 tables (qcow2map.c: clusters no image of
 * the chain stores, and clusters marked as zeros, are holes) and dynamic
 * or differencing VHD's block allocation table (vhdmap.c: blocks no image
 * stores); a fixed VHD's file by SEEK_DATA. For VHDX and VMDK (and an
 * image the parsers do not read) the whole virtual disk counts as data, and ferry-export's zero
 * detection (while serving, or --scan-zeros) keeps blocks of zeros off
 * the wire.
 *
 * Reads: through the library, except where ferry already knows where the
 * bytes are and the library is slow: a dynamic VHD without a parent is read
 * from its blocks by their bitmaps (vhdmap_pread), a fixed VHD from the
 * start of its file and a VMDK of one flat extent from that file (the
 * libraries read them at about 90, 335 and 300 MB/s); their maps come from
 * the block table, or SEEK_DATA on the flat file. libyal
 * handles keep a read position and caches, so reads of one image are
 * serialised by a mutex.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libqcow.h>
#include <libvhdi.h>
#include <libvmdk.h>

#include "backends/backend.h"
#include "backends/qcow2map.h"
#include "backends/vhdmap.h"
#include "common/log.h"
#include "common/util.h"

#define CHAIN_MAX 16	/* backing images followed, at most */

/* One library behind a uniform face. Handles and errors are intptr_t
 * typedefs in all three. */
struct lib {
	const char *format;
	int (*check)(const char *path, intptr_t **err);
	int (*init)(intptr_t **h, intptr_t **err);
	int (*open)(intptr_t *h, const char *path, intptr_t **err);
	ssize_t (*read)(intptr_t *h, void *buf, size_t len, off64_t off,
			intptr_t **err);
	int (*size)(intptr_t *h, size64_t *size, intptr_t **err);
	/* The parent's name ("" if none) into @buf. */
	int (*parent)(intptr_t *h, char *buf, size_t len, intptr_t **err);
	int (*set_parent)(intptr_t *h, intptr_t *parent, intptr_t **err);
	int (*close)(intptr_t *h, intptr_t **err);
	int (*free)(intptr_t **h, intptr_t **err);
	int (*err_text)(intptr_t *err, char *buf, size_t len);
	int (*err_free)(intptr_t **err);
};

/* --- libqcow --- */
static int q_check(const char *p, intptr_t **e) { return libqcow_check_file_signature(p, e); }
static int q_init(intptr_t **h, intptr_t **e) { return libqcow_file_initialize(h, e); }
static int
q_open(intptr_t *h, const char *p, intptr_t **e)
{
	uint32_t method = 0;

	if (libqcow_file_open(h, p, LIBQCOW_OPEN_READ, e) != 1)
		return -1;
	if (libqcow_file_get_encryption_method(h, &method, e) == 1 &&
	    method != LIBQCOW_ENCRYPTION_METHOD_NONE) {
		ferry_error("%s: the qcow image is encrypted (method %" PRIu32
			    "); not supported", p, method);
		libqcow_file_close(h, NULL);
		return -2;
	}
	return 1;
}
static ssize_t q_read(intptr_t *h, void *b, size_t n, off64_t o, intptr_t **e) { return libqcow_file_read_buffer_at_offset(h, b, n, o, e); }
static int q_size(intptr_t *h, size64_t *s, intptr_t **e) { return libqcow_file_get_media_size(h, s, e); }
static int
q_parent(intptr_t *h, char *buf, size_t len, intptr_t **e)
{
	size_t n = 0;

	buf[0] = '\0';
	if (libqcow_file_get_utf8_backing_filename_size(h, &n, e) != 1 ||
	    n == 0)
		return 1;	/* no backing file */
	if (n > len)
		return -1;
	return libqcow_file_get_utf8_backing_filename(h, (uint8_t *)buf, len,
						      e);
}
static int q_set_parent(intptr_t *h, intptr_t *p, intptr_t **e) { return libqcow_file_set_parent_file(h, p, e); }
static int q_close(intptr_t *h, intptr_t **e) { return libqcow_file_close(h, e); }
static int q_free(intptr_t **h, intptr_t **e) { return libqcow_file_free(h, e); }
static int q_err_text(intptr_t *e, char *b, size_t n) { return libqcow_error_backtrace_sprint(e, b, n); }
static int q_err_free(intptr_t **e) { libqcow_error_free(e); return 1; }

/* --- libvhdi --- */
static int h_check(const char *p, intptr_t **e) { return libvhdi_check_file_signature(p, e); }
static int h_init(intptr_t **h, intptr_t **e) { return libvhdi_file_initialize(h, e); }
static int h_open(intptr_t *h, const char *p, intptr_t **e) { return libvhdi_file_open(h, p, LIBVHDI_OPEN_READ, e); }
static ssize_t h_read(intptr_t *h, void *b, size_t n, off64_t o, intptr_t **e) { return libvhdi_file_read_buffer_at_offset(h, b, n, o, e); }
static int h_size(intptr_t *h, size64_t *s, intptr_t **e) { return libvhdi_file_get_media_size(h, s, e); }
static int
h_parent(intptr_t *h, char *buf, size_t len, intptr_t **e)
{
	size_t n = 0;
	int r;

	buf[0] = '\0';
	r = libvhdi_file_get_utf8_parent_filename_size(h, &n, e);
	if (r != 1 || n == 0)
		return r == -1 ? -1 : 1;
	if (n > len)
		return -1;
	return libvhdi_file_get_utf8_parent_filename(h, (uint8_t *)buf, len,
						     e);
}
static int h_set_parent(intptr_t *h, intptr_t *p, intptr_t **e) { return libvhdi_file_set_parent_file(h, p, e); }
static int h_close(intptr_t *h, intptr_t **e) { return libvhdi_file_close(h, e); }
static int h_free(intptr_t **h, intptr_t **e) { return libvhdi_file_free(h, e); }
static int h_err_text(intptr_t *e, char *b, size_t n) { return libvhdi_error_backtrace_sprint(e, b, n); }
static int h_err_free(intptr_t **e) { libvhdi_error_free(e); return 1; }

/* --- libvmdk --- */
static int k_check(const char *p, intptr_t **e) { return libvmdk_check_file_signature(p, e); }
static int k_init(intptr_t **h, intptr_t **e) { return libvmdk_handle_initialize(h, e); }
static int
k_open(intptr_t *h, const char *p, intptr_t **e)
{
	char buf[PATH_MAX];
	const char *dir;

	snprintf(buf, sizeof buf, "%s", p);
	dir = dirname(buf);	/* (a static "." for a bare name) */
	if (libvmdk_handle_open(h, p, LIBVMDK_OPEN_READ, e) != 1)
		return -1;
	/* The extents (the -flat file, or the sparse file itself) sit next
	 * to the descriptor. */
	if (libvmdk_handle_set_extent_data_files_path(h, dir, strlen(dir),
						      e) != 1 ||
	    libvmdk_handle_open_extent_data_files(h, e) != 1) {
		libvmdk_handle_close(h, NULL);
		return -1;
	}
	return 1;
}
static ssize_t k_read(intptr_t *h, void *b, size_t n, off64_t o, intptr_t **e) { return libvmdk_handle_read_buffer_at_offset(h, b, n, o, e); }
static int k_size(intptr_t *h, size64_t *s, intptr_t **e) { return libvmdk_handle_get_media_size(h, s, e); }
static int
k_parent(intptr_t *h, char *buf, size_t len, intptr_t **e)
{
	size_t n = 0;
	int r;

	buf[0] = '\0';
	r = libvmdk_handle_get_utf8_parent_filename_size(h, &n, e);
	if (r != 1 || n == 0)
		return r == -1 ? -1 : 1;
	if (n > len)
		return -1;
	return libvmdk_handle_get_utf8_parent_filename(h, (uint8_t *)buf, len,
						       e);
}
static int k_set_parent(intptr_t *h, intptr_t *p, intptr_t **e) { return libvmdk_handle_set_parent_handle(h, p, e); }
static int k_close(intptr_t *h, intptr_t **e) { return libvmdk_handle_close(h, e); }
static int k_free(intptr_t **h, intptr_t **e) { return libvmdk_handle_free(h, e); }
static int k_err_text(intptr_t *e, char *b, size_t n) { return libvmdk_error_backtrace_sprint(e, b, n); }
static int k_err_free(intptr_t **e) { libvmdk_error_free(e); return 1; }

static const struct lib libs[] = {
	{ "qcow2", q_check, q_init, q_open, q_read, q_size, q_parent,
	  q_set_parent, q_close, q_free, q_err_text, q_err_free },
	{ "vhd", h_check, h_init, h_open, h_read, h_size, h_parent,
	  h_set_parent, h_close, h_free, h_err_text, h_err_free },
	{ "vmdk", k_check, k_init, k_open, k_read, k_size, k_parent,
	  k_set_parent, k_close, k_free, k_err_text, k_err_free },
};

struct image_priv {
	const struct lib *lib;
	intptr_t *chain[CHAIN_MAX];	/* [0] the image, then its parents */
	char *paths[CHAIN_MAX];		/* their files */
	size_t n;
	/* qcow2: the chain's map from its tables. Reads of its holes are
	 * zeros without asking libqcow, which gives a backing image's bytes
	 * where the top image marks a cluster as zeros. */
	struct ferry_extents map;
	bool mapped;
	/* A qcow2 chain is read in pieces that never cross a cluster
	 * boundary of any of its images (0: in one call): libqcow gives a
	 * backing image's bytes for the whole rest of a read that starts in
	 * a cluster the top image does not store, its own clusters after it
	 * included (test-images' over.qcow2, read from 1 MiB - 4 KiB). */
	uint32_t piece;
	/* A dynamic VHD without a parent is read straight from its blocks
	 * (vhdmap_pread): libvhdi reads at a few tens of MB/s. */
	struct vhdmap vhd;
	bool vhd_direct;
	/* The disk is bytes [flat_off, flat_off + size) of flat_fd: a fixed
	 * VHD (its own file), a VMDK of one flat extent (the -flat file);
	 * read from there (the libraries read these at a few hundred MB/s).
	 * -1 if not. */
	int flat_fd;
	uint64_t flat_off;
	pthread_mutex_t lock;
	int fd;				/* the image file, for fstat */
	char path[PATH_MAX];
	char gen[128];
};

/* The library's error as one line (its last message), then freed. */
static const char *
lib_error(const struct lib *l, intptr_t **err, char *buf, size_t len)
{
	char *nl;

	buf[0] = '\0';
	if (err && *err) {
		l->err_text(*err, buf, len);
		l->err_free(err);
	}
	/* The backtrace has a line per frame, the innermost first: it names
	 * the cause ("unable to read file header data at offset: 0"). */
	if ((nl = strchr(buf, '\n')))
		*nl = '\0';
	return buf[0] ? buf : "unknown error";
}

static void
chain_free(struct image_priv *p)
{
	for (size_t i = p->n; i-- > 0;) {
		p->lib->close(p->chain[i], NULL);
		p->lib->free(&p->chain[i], NULL);
		free(p->paths[i]);
		p->paths[i] = NULL;
	}
	p->n = 0;
}

/* Open @path and its chain of parents into @p. @return 0 or -errno. */
static int
chain_open(struct image_priv *p, const char *path)
{
	char cur[PATH_MAX], parent[PATH_MAX], msg[512];

	snprintf(cur, sizeof cur, "%s", path);
	for (;;) {
		intptr_t *h = NULL, *err = NULL;
		int r;

		if (p->n == CHAIN_MAX) {
			ferry_error("%s: more than %d backing images", path,
				    CHAIN_MAX);
			return -ELOOP;
		}
		if (p->lib->init(&h, &err) != 1) {
			ferry_error("%s: %s", cur, lib_error(p->lib, &err, msg,
							   sizeof msg));
			return -ENOMEM;
		}
		r = p->lib->open(h, cur, &err);
		if (r != 1) {
			if (r == -1)
				ferry_error("%s: not a readable %s image: %s",
					    cur, p->lib->format,
					    lib_error(p->lib, &err, msg,
						      sizeof msg));
			p->lib->free(&h, NULL);
			return r == -2 ? -ENOTSUP : -EINVAL;
		}
		p->paths[p->n] = strdup(cur);
		p->chain[p->n++] = h;
		if (!p->paths[p->n - 1])
			return -ENOMEM;
		if (p->n > 1 && p->lib->set_parent(p->chain[p->n - 2], h,
						   &err) != 1) {
			ferry_error("%s: cannot use %s as its parent: %s",
				    path, cur, lib_error(p->lib, &err, msg,
							 sizeof msg));
			return -EINVAL;
		}
		if (p->lib->parent(h, parent, sizeof parent, &err) != 1) {
			ferry_error("%s: its parent's name: %s", cur,
				    lib_error(p->lib, &err, msg, sizeof msg));
			return -EINVAL;
		}
		if (!parent[0])
			return 0;
		/* A relative name is relative to the image that gives it. */
		if (parent[0] != '/') {
			char dir[PATH_MAX];

			snprintf(dir, sizeof dir, "%s", cur);
			if ((size_t)snprintf(cur, sizeof cur, "%s/%s",
					     dirname(dir), parent) >=
			    sizeof cur)
				return -ENAMETOOLONG;
		} else {
			snprintf(cur, sizeof cur, "%s", parent);
		}
		err = NULL;
		if (p->lib->check(cur, &err) != 1) {
			if (err)
				p->lib->err_free(&err);
			ferry_error("%s: its parent %s is not a %s image (the "
				    "library reads a %s only over a %s parent)",
				    path, cur, p->lib->format, p->lib->format,
				    p->lib->format);
			return access(cur, R_OK) == 0 ? -ENOTSUP : -ENOENT;
		}
	}
}

static int
identity(struct image_priv *p, char *gen, size_t len)
{
	struct stat st;

	if (fstat(p->fd, &st) < 0)
		return -errno;
	snprintf(gen, len, "%s-%llx-%llx-%lld-%lld.%09ld", p->lib->format,
		 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
		 (long long)st.st_size, (long long)st.st_mtim.tv_sec,
		 st.st_mtim.tv_nsec);
	return 0;
}

static void
image_close(struct ferry_source *src)
{
	struct image_priv *p = src->priv;

	if (p) {
		chain_free(p);
		ferry_extents_free(&p->map);
		if (p->vhd_direct)
			vhdmap_free(&p->vhd);
		if (p->flat_fd >= 0 && p->flat_fd != p->fd)
			close(p->flat_fd);
		if (p->fd >= 0)
			close(p->fd);
		pthread_mutex_destroy(&p->lock);
		free(p);
	}
	pthread_mutex_destroy(&src->health.lock);
	free(src->disks);
	free(src);
}

static int
fd_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	ssize_t n = pread(*(int *)ctx, buf, len, (off_t)off);

	return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
}

/* The qcow2 chain's map from its tables into @map; -ENOTSUP and the like
 * when some image of it cannot be read that way. */
static int
qcow2_extents(struct image_priv *p, struct ferry_extents *map)
{
	struct qcow2map maps[CHAIN_MAX];
	struct ferry_extents out;
	size_t n = 0;
	int r = 0;

	/* The smallest cluster of the chain; 512, the least qcow2 allows,
	 * for an image whose header says none. */
	p->piece = p->n > 1 ? UINT32_MAX : 0;
	for (; r == 0 && n < p->n; n++) {
		char why[160];
		struct stat st;
		int fd = open(p->paths[n], O_RDONLY | O_CLOEXEC);

		if (fd < 0 || fstat(fd, &st) < 0) {
			r = -errno;
			ferry_error("%s: %m", p->paths[n]);
		} else {
			r = qcow2map_read((uint64_t)st.st_size, fd_read, &fd,
					  &maps[n], why, sizeof why);
			if (p->piece)
				p->piece = FERRY_MIN(p->piece, maps[n].cluster ?
						     maps[n].cluster : 512u);
			if (r < 0)
				ferry_info("%s: no allocation map (%s); every "
					   "block counts as data", p->paths[n],
					   why);
		}
		if (fd >= 0)
			close(fd);
		if (r < 0)
			break;
	}
	/* Images after one that failed are not looked at: the least. */
	if (r < 0 && p->piece)
		p->piece = 512;
	if (r == 0) {
		ferry_extents_init(&out, map->size);
		r = qcow2map_chain(maps, n, map->size, &out);
		for (size_t i = 0; r == 0 && i < out.n; i++)
			r = ferry_extents_add(map, out.v[i].off,
					      out.v[i].len);
		ferry_extents_free(&out);
	}
	for (size_t i = 0; i < n; i++)
		qcow2map_free(&maps[i]);
	return r;
}

/* The map of a disk stored flat in flat_fd: the data of its range as
 * SEEK_DATA/SEEK_HOLE find it (a sparse file's holes read as zeros). */
static int
flat_extents(struct image_priv *p, struct ferry_extents *map)
{
	off_t pos = (off_t)p->flat_off;
	uint64_t end = p->flat_off + map->size;

	while ((uint64_t)pos < end) {
		off_t data = lseek(p->flat_fd, pos, SEEK_DATA), hole;
		int r;

		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0)
			return -ENOTSUP;	/* no SEEK_DATA: all data */
		if ((uint64_t)data >= end)
			break;
		hole = lseek(p->flat_fd, data, SEEK_HOLE);
		if (hole < 0)
			return -ENOTSUP;
		r = ferry_extents_add(map, (uint64_t)data - p->flat_off,
				      FERRY_MIN((uint64_t)hole, end) -
				      (uint64_t)data);
		if (r < 0)
			return r;
		pos = hole;
	}
	return 0;
}

/* A VMDK of one flat extent: its file opened as flat_fd. */
static int
vmdk_flat(struct image_priv *p, uint64_t size)
{
	libvmdk_extent_descriptor_t *e = NULL;
	char name[PATH_MAX], dir[PATH_MAX], path[2 * PATH_MAX];
	off64_t off = 0;
	size64_t len = 0;
	int n = 0, type = 0, r = -ENOTSUP;

	if (p->n != 1 ||
	    libvmdk_handle_get_number_of_extents(p->chain[0], &n, NULL) != 1 ||
	    n != 1 ||
	    libvmdk_handle_get_extent_descriptor(p->chain[0], 0, &e, NULL) != 1)
		return -ENOTSUP;
	if (libvmdk_extent_descriptor_get_type(e, &type, NULL) == 1 &&
	    (type == LIBVMDK_EXTENT_TYPE_FLAT ||
	     type == LIBVMDK_EXTENT_TYPE_VMFS_FLAT) &&
	    libvmdk_extent_descriptor_get_range(e, &off, &len, NULL) == 1 &&
	    off >= 0 && len >= size &&
	    libvmdk_extent_descriptor_get_utf8_filename(e, (uint8_t *)name,
							sizeof name, NULL) == 1) {
		struct stat st;

		snprintf(dir, sizeof dir, "%s", p->path);
		snprintf(path, sizeof path, "%s/%s", dirname(dir), name);
		p->flat_fd = strchr(name, '/') ? -1 :
			     open(path, O_RDONLY | O_CLOEXEC);
		if (p->flat_fd >= 0 && fstat(p->flat_fd, &st) == 0 &&
		    (uint64_t)st.st_size >= (uint64_t)off + size) {
			p->flat_off = (uint64_t)off;
			r = 0;
		} else if (p->flat_fd >= 0) {
			close(p->flat_fd);
			p->flat_fd = -1;
		}
	}
	libvmdk_extent_descriptor_free(&e, NULL);
	return r;
}

/* The VHD chain's map from its block tables: each image's blocks, and
 * below a differencing image its parent's. */
static int
vhd_extents(struct image_priv *p, struct ferry_extents *map)
{
	struct ferry_extents acc, next;
	int r = 0;

	ferry_extents_init(&acc, map->size);
	for (size_t i = 0; r == 0 && i < p->n; i++) {
		struct vhdmap m;
		struct stat st;
		char why[160];
		int fd = open(p->paths[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0 || fstat(fd, &st) < 0) {
			r = -errno;
		} else {
			r = vhdmap_read((uint64_t)st.st_size, fd_read, &fd, &m,
					why, sizeof why);
			/* A fixed VHD is the disk then a footer: read as
			 * such (libvhdi reads it at a few hundred MB/s). */
			if (r == -ENOTSUP && i == 0 && p->n == 1 &&
			    strstr(why, "fixed") &&
			    map->size <= (uint64_t)st.st_size - 512) {
				p->flat_fd = p->fd;
				p->flat_off = 0;
			}
			if (r < 0 && r != -ENOTSUP)
				ferry_info("%s: no allocation map (%s); every "
					   "block counts as data", p->paths[i],
					   why);
		}
		if (fd >= 0)
			close(fd);
		if (r < 0)
			break;
		ferry_extents_init(&next, map->size);
		r = ferry_extents_unite(&acc, &m.data, &next);
		ferry_extents_free(&acc);
		acc = next;
		if (r == 0 && i == 0 && !m.differencing &&
		    m.bitmap <= 4096) {
			p->vhd = m;	/* kept: read from directly */
			p->vhd_direct = true;
			break;
		}
		vhdmap_free(&m);
		if (!m.differencing)
			break;	/* nothing below it is read */
	}
	for (size_t i = 0; r == 0 && i < acc.n; i++)
		r = ferry_extents_add(map, acc.v[i].off, acc.v[i].len);
	ferry_extents_free(&acc);
	if (r == -ENOTSUP && p->flat_fd >= 0)
		r = flat_extents(p, map);
	return r;
}

/* The chain's map into p->map (p->lock held): qcow2 and VHD from their
 * tables, else (or if they cannot be read) all data. */
static int
map_load(struct image_priv *p, uint64_t size)
{
	int r = -ENOTSUP;

	ferry_extents_free(&p->map);
	ferry_extents_init(&p->map, size);
	p->mapped = false;
	if (p->vhd_direct)
		vhdmap_free(&p->vhd);
	p->vhd_direct = false;
	if (p->flat_fd >= 0 && p->flat_fd != p->fd)
		close(p->flat_fd);
	p->flat_fd = -1;
	if (strcmp(p->lib->format, "qcow2") == 0)
		r = qcow2_extents(p, &p->map);
	else if (strcmp(p->lib->format, "vhd") == 0)
		r = vhd_extents(p, &p->map);
	else if (strcmp(p->lib->format, "vmdk") == 0 &&
		 vmdk_flat(p, size) == 0)
		r = flat_extents(p, &p->map);
	if (r == -ENOMEM)
		return r;
	p->mapped = r == 0;
	if (r < 0) {
		ferry_extents_free(&p->map);
		ferry_extents_init(&p->map, size);
		return ferry_extents_all_data(&p->map);
	}
	return 0;
}

static int
image_extents(struct ferry_source *src, unsigned disk,
	      struct ferry_extents *map)
{
	struct image_priv *p = src->priv;
	int r = 0;

	(void)disk;
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; r == 0 && i < p->map.n; i++)
		r = ferry_extents_add(map, p->map.v[i].off, p->map.v[i].len);
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* [off, off+len) through the library. p->lock held. */
static int
lib_read(struct image_priv *p, uint8_t *buf, size_t len, uint64_t off)
{
	char msg[512];
	intptr_t *err = NULL;
	ssize_t n = 0;
	size_t k = 0;

	while (len > 0) {
		k = len;
		if (p->piece)	/* (see image_priv.piece) */
			k = (size_t)FERRY_MIN((uint64_t)len,
					      p->piece - off % p->piece);
		n = p->n ? p->lib->read(p->chain[0], buf, k, (off64_t)off,
					&err) : -1;
		if (n != (ssize_t)k)
			break;
		buf += k;
		off += k;
		len -= k;
	}
	if (len == 0)
		return 0;
	ferry_error("%s: read of %zu bytes at %" PRIu64 ": %s", p->path, k,
		    off, n < 0 ? lib_error(p->lib, &err, msg, sizeof msg) :
				 "short read");
	if (err)
		p->lib->err_free(&err);
	return -EIO;
}

static int
image_pread(struct ferry_source *src, unsigned disk, void *buf, size_t len,
	    uint64_t off)
{
	struct image_priv *p = src->priv;
	uint8_t *b = buf;
	int r = 0;

	(void)disk;
	pthread_mutex_lock(&p->lock);
	if (p->vhd_direct) {
		struct stat st;

		r = fstat(p->fd, &st) < 0 ? -errno :
		    vhdmap_pread(&p->vhd, (uint64_t)st.st_size, fd_read,
				 &p->fd, b, len, off);
		if (r < 0)
			ferry_error("%s: read of %zu bytes at %" PRIu64 ": %s",
				    p->path, len, off, r == -EINVAL ?
				    "a block outside the file" : strerror(-r));
	} else if (p->flat_fd >= 0) {
		r = fd_read(&p->flat_fd, p->flat_off + off, b, len);
		if (r < 0)
			ferry_error("%s: read of %zu bytes at %" PRIu64 ": %s",
				    p->path, len, off, strerror(-r));
	} else if (!p->mapped) {
		r = lib_read(p, b, len, off);
	} else {
		/* Data ranges from the library, holes as zeros. */
		uint64_t at = off, end = off + len;

		for (size_t i = ferry_extents_find(&p->map, off);
		     r == 0 && i < p->map.n && p->map.v[i].off < end; i++) {
			uint64_t a = FERRY_MAX(p->map.v[i].off, off);
			uint64_t e = FERRY_MIN(p->map.v[i].off +
					       p->map.v[i].len, end);

			memset(b + (at - off), 0, (size_t)(a - at));
			r = lib_read(p, b + (a - off), (size_t)(e - a), a);
			at = e;
		}
		if (r == 0)
			memset(b + (at - off), 0, (size_t)(end - at));
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* The image file written since: a new generation, and the library's
 * handles opened again (they cache tables). */
static int
image_refresh(struct ferry_source *src, unsigned disk)
{
	struct image_priv *p = src->priv;
	struct ferry_disk_info *d = &src->disks[disk];
	char gen[128];
	size64_t size = 0;
	intptr_t *err = NULL;
	int r = identity(p, gen, sizeof gen);

	if (r < 0 || strcmp(gen, p->gen) == 0)
		return r;
	pthread_mutex_lock(&p->lock);
	chain_free(p);
	r = chain_open(p, p->path);
	if (r == 0 && p->lib->size(p->chain[0], &size, &err) != 1)
		r = -EIO;
	if (r == 0)
		r = map_load(p, size);
	pthread_mutex_unlock(&p->lock);
	if (err)
		p->lib->err_free(&err);
	if (r < 0)
		return r;
	snprintf(p->gen, sizeof p->gen, "%s", gen);
	snprintf(d->generation, sizeof d->generation, "%s", gen);
	d->size = size;
	d->allocated = p->map.data_bytes;
	return 1;
}

static const struct ferry_backend image_backend = {
	.name = "image",
	.close = image_close,
	.extents = image_extents,
	.pread = image_pread,
	.refresh = image_refresh,
};

const char *
ferry_image_format(const char *path)
{
	for (size_t i = 0; i < sizeof libs / sizeof *libs; i++) {
		intptr_t *err = NULL;
		int r = libs[i].check(path, &err);

		if (err)
			libs[i].err_free(&err);
		if (r == 1)
			return libs[i].format;
	}
	return "raw";
}

int
ferry_image_open(const char *name, const char *path, const char *format,
		 struct ferry_source **out)
{
	struct ferry_source *src;
	struct image_priv *p;
	const struct lib *lib = NULL;
	size64_t size = 0;
	intptr_t *err = NULL;
	char msg[512];
	int r;

	if (!format || strcmp(format, "auto") == 0)
		format = ferry_image_format(path);
	if (strcmp(format, "raw") == 0)
		return ferry_file_open(name, path, out);
	for (size_t i = 0; i < sizeof libs / sizeof *libs; i++)
		if (strcmp(libs[i].format, format) == 0)
			lib = &libs[i];
	if (!lib) {
		ferry_error("%s: unknown format '%s' (auto, raw, qcow2, vhd, "
			    "vmdk)", path, format);
		return -EINVAL;
	}
	src = calloc(1, sizeof *src);
	p = calloc(1, sizeof *p);
	if (!src || !p || !(src->disks = calloc(1, sizeof *src->disks))) {
		free(p);
		if (src)
			free(src->disks);
		free(src);
		return -ENOMEM;
	}
	pthread_mutex_init(&src->health.lock, NULL);
	pthread_mutex_init(&p->lock, NULL);
	p->lib = lib;
	p->fd = -1;
	p->flat_fd = -1;
	src->ops = &image_backend;
	src->priv = p;
	src->ndisks = 1;
	snprintf(p->path, sizeof p->path, "%s", path);
	p->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (p->fd < 0) {
		r = -errno;
		ferry_error("%s: open: %m", path);
		goto fail;
	}
	r = chain_open(p, path);
	if (r < 0)
		goto fail;
	if (lib->size(p->chain[0], &size, &err) != 1) {
		ferry_error("%s: its virtual size: %s", path,
			    lib_error(lib, &err, msg, sizeof msg));
		r = -EINVAL;
		goto fail;
	}
	r = identity(p, p->gen, sizeof p->gen);
	if (r < 0)
		goto fail;
	snprintf(src->disks[0].name, sizeof src->disks[0].name, "%s", name);
	snprintf(src->disks[0].generation, sizeof src->disks[0].generation,
		 "%s", p->gen);
	src->disks[0].size = size;
	src->disks[0].sector_size = 512;
	r = map_load(p, size);
	if (r < 0)
		goto fail;
	src->disks[0].allocated = p->map.data_bytes;
	snprintf(src->id, sizeof src->id, "%s:%s", lib->format, path);
	ferry_info("%s: %s image, virtual disk of %" PRIu64 " bytes%s", path,
		   lib->format, (uint64_t)size, p->n > 1 ? " (with backing "
		   "images)" : "");
	*out = src;
	return 0;
fail:
	image_close(src);
	return r;
}
