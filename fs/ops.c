/* ferryfs — FUSE low-level operations.
 *
 *   /                 NAME.raw for each disk (read-only, exact size)
 *   /.ferry/          control and state
 *   /.ferry/status.json
 *
 * Reads of NAME.raw wait for the chunks they need (fetch_ensure) and are
 * answered from the cache file with an fd buffer, so the kernel splices the
 * bytes instead of copying them through this process. Disk files never
 * change, so their pages stay in the kernel's cache across opens.
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include <jansson.h>

#include "common/util.h"
#include "fs/ferryfs.h"

enum {
	INO_ROOT = FUSE_ROOT_ID,
	INO_CTL = 2,		/* .ferry */
	INO_STATUS = 3,		/* .ferry/status.json */
	INO_DISK0 = 16,		/* NAME.raw of disk i is INO_DISK0 + i */
};

#define DISK_TIMEOUT 86400.0	/* disk files never change */

static struct ferryfs *
fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct fdisk *
disk_of(struct ferryfs *fs, fuse_ino_t ino)
{
	if (ino < INO_DISK0 || ino - INO_DISK0 >= fs->ndisks)
		return NULL;
	return &fs->disks[ino - INO_DISK0];
}

const char *
disk_state(struct fdisk *d)
{
	bool failing;

	if (d->present_chunks >= d->data_chunks)
		return "complete";
	pthread_mutex_lock(&d->lock);
	failing = d->failing;
	pthread_mutex_unlock(&d->lock);
	return failing ? "error" : "syncing";
}

char *
status_render(struct ferryfs *fs)
{
	json_t *arr = json_array(), *root;
	char *text;

	for (size_t i = 0; arr && i < fs->ndisks; i++) {
		struct fdisk *d = &fs->disks[i];
		const char *state = disk_state(d);
		json_t *err;
		double rate;

		pthread_mutex_lock(&d->lock);
		err = d->error[0] ? json_string(d->error) : json_null();
		rate = d->rate;
		pthread_mutex_unlock(&d->lock);
		json_array_append_new(arr, json_pack(
			"{sssIsIsIsIsssosIsIsIsf}",
			"name", d->info.name,
			"size", (json_int_t)d->info.size,
			"allocated", (json_int_t)d->map.data_bytes,
			"cached", (json_int_t)d->cached,
			"bytes_received", (json_int_t)d->received,
			"state", state,
			"error", err,
			"chunk_size", (json_int_t)d->chunk,
			"chunks", (json_int_t)d->data_chunks,
			"chunks_cached", (json_int_t)d->present_chunks,
			"rate", rate));
	}
	root = json_pack("{sssssbsIso}", "source", fs->src->id,
			 "cache", fs->cache_dir, "prefetch", fs->prefetch,
			 "streams", (json_int_t)fs->streams, "disks", arr);
	text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
	json_decref(root);
	if (text) {
		/* End with a newline, as text files do. */
		size_t n = strlen(text);
		char *t = realloc(text, n + 2);

		if (t) {
			t[n] = '\n';
			t[n + 1] = '\0';
			text = t;
		}
	}
	return text;
}

static int
fill_attr(struct ferryfs *fs, fuse_ino_t ino, struct stat *st)
{
	struct fdisk *d;

	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_atime = st->st_mtime = st->st_ctime = fs->mount_time;
	st->st_blksize = 65536;
	switch (ino) {
	case INO_ROOT:
	case INO_CTL:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	case INO_STATUS: {
		char *text = status_render(fs);

		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = text ? (off_t)strlen(text) : 0;
		free(text);
		return 0;
	}
	}
	d = disk_of(fs, ino);
	if (!d)
		return -ENOENT;
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_size = (off_t)d->info.size;
	/* Allocated size, so du and cp --sparse see the holes. */
	st->st_blocks = (blkcnt_t)((d->map.data_bytes + 511) / 512);
	return 0;
}

static void
ferry_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int r = fill_attr(fs_of(req), ino, &st);

	(void)fi;
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, ino >= INO_DISK0 ? DISK_TIMEOUT : 0);
}

static void
ferry_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ferryfs *fs = fs_of(req);
	struct fuse_entry_param e = { 0 };
	fuse_ino_t ino = 0;

	if (parent == INO_ROOT && strcmp(name, ".ferry") == 0) {
		ino = INO_CTL;
	} else if (parent == INO_CTL && strcmp(name, "status.json") == 0) {
		ino = INO_STATUS;
	} else if (parent == INO_ROOT) {
		size_t n = strlen(name);

		for (size_t i = 0; i < fs->ndisks; i++) {
			size_t k = strlen(fs->disks[i].info.name);

			if (n == k + 4 && strcmp(name + k, ".raw") == 0 &&
			    strncmp(name, fs->disks[i].info.name, k) == 0) {
				ino = INO_DISK0 + i;
				break;
			}
		}
	}
	if (!ino) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	e.ino = ino;
	fill_attr(fs, ino, &e.attr);
	e.attr_timeout = ino >= INO_DISK0 ? DISK_TIMEOUT : 0;
	e.entry_timeout = DISK_TIMEOUT;	/* names never change */
	fuse_reply_entry(req, &e);
}

struct dirbuf {
	char *p;
	size_t size;
};

static void
dirbuf_add(fuse_req_t req, struct dirbuf *b, const char *name, fuse_ino_t ino,
	   mode_t mode)
{
	struct stat st = { .st_ino = ino, .st_mode = mode };
	size_t old = b->size;
	char *p;

	b->size += fuse_add_direntry(req, NULL, 0, name, NULL, 0);
	p = realloc(b->p, b->size);
	if (!p) {
		b->size = old;
		return;
	}
	b->p = p;
	fuse_add_direntry(req, b->p + old, b->size - old, name, &st,
			  (off_t)b->size);
}

static void
ferry_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	      struct fuse_file_info *fi)
{
	struct ferryfs *fs = fs_of(req);
	struct dirbuf b = { 0 };

	(void)fi;
	if (ino != INO_ROOT && ino != INO_CTL) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	dirbuf_add(req, &b, ".", ino, S_IFDIR);
	dirbuf_add(req, &b, "..", INO_ROOT, S_IFDIR);
	if (ino == INO_ROOT) {
		dirbuf_add(req, &b, ".ferry", INO_CTL, S_IFDIR);
		for (size_t i = 0; i < fs->ndisks; i++) {
			char name[FERRY_NAME_MAX + 8];

			snprintf(name, sizeof name, "%s.raw",
				 fs->disks[i].info.name);
			dirbuf_add(req, &b, name, INO_DISK0 + i, S_IFREG);
		}
	} else {
		dirbuf_add(req, &b, "status.json", INO_STATUS, S_IFREG);
	}
	if ((size_t)off < b.size)
		fuse_reply_buf(req, b.p + off,
			       FERRY_MIN(b.size - (size_t)off, size));
	else
		fuse_reply_buf(req, NULL, 0);
	free(b.p);
}

static struct open_file *
of_of(struct fuse_file_info *fi)
{
	return (struct open_file *)(uintptr_t)fi->fh;
}

static void
of_free(struct ferryfs *fs, struct open_file *of)
{
	pthread_mutex_lock(&fs->open_lock);
	if (of->prev)
		of->prev->next = of->next;
	else
		fs->open_files = of->next;
	if (of->next)
		of->next->prev = of->prev;
	pthread_mutex_unlock(&fs->open_lock);
	free(of->text);
	free(of);
}

void
ops_free_open_files(struct ferryfs *fs)
{
	while (fs->open_files)
		of_free(fs, fs->open_files);
}

static void
ferry_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ferryfs *fs = fs_of(req);
	struct open_file *of;

	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);	/* nothing is ever written */
		return;
	}
	if (ino != INO_STATUS && !disk_of(fs, ino)) {
		fuse_reply_err(req, ino == INO_ROOT || ino == INO_CTL ?
			       EISDIR : ENOENT);
		return;
	}
	of = calloc(1, sizeof *of);
	/* status.json: a snapshot per open, consistent while it is read. */
	if (of && ino == INO_STATUS && !(of->text = status_render(fs))) {
		free(of);
		of = NULL;
	}
	if (!of) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	of->next_off = UINT64_MAX;
	pthread_mutex_lock(&fs->open_lock);
	of->next = fs->open_files;
	if (of->next)
		of->next->prev = of;
	fs->open_files = of;
	pthread_mutex_unlock(&fs->open_lock);
	fi->fh = (uint64_t)(uintptr_t)of;
	if (ino == INO_STATUS)
		fi->direct_io = 1;
	else
		fi->keep_cache = 1;	/* disk files never change */
	fuse_reply_open(req, fi);
}

static void
ferry_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	of_free(fs_of(req), of_of(fi));
	fuse_reply_err(req, 0);
}

static void
ferry_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	   struct fuse_file_info *fi)
{
	struct ferryfs *fs = fs_of(req);
	struct fdisk *d;
	int r;

	if (ino == INO_STATUS) {
		const char *text = of_of(fi)->text;
		size_t n = strlen(text), len;
		char *copy;

		if ((size_t)off >= n) {
			fuse_reply_buf(req, NULL, 0);
			return;
		}
		/* Reply from our own copy: once the kernel has the reply,
		 * the reader may close and RELEASE may free the snapshot on
		 * another thread while this one is still returning from
		 * writev (ASan checks the buffer after the call). */
		len = FERRY_MIN(n - (size_t)off, size);
		copy = malloc(len);
		if (!copy) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		memcpy(copy, text + off, len);
		fuse_reply_buf(req, copy, len);
		free(copy);
		return;
	}
	d = disk_of(fs, ino);
	if (!d) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (off < 0 || (uint64_t)off >= d->info.size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	size = (size_t)FERRY_MIN((uint64_t)size, d->info.size - (uint64_t)off);
	/* Racy between threads of one open file, and harmless: it only
	 * decides whether to read ahead. */
	bool seq = __atomic_exchange_n(&of_of(fi)->next_off,
				       (uint64_t)off + size,
				       __ATOMIC_RELAXED) == (uint64_t)off;

	r = fetch_ensure(fs, d, (uint64_t)off, size, seq);
	if (r < 0) {
		fuse_reply_err(req, r == -ECANCELED || r == -ENOMEM ? -r : EIO);
		return;
	}
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);

	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = d->data_fd;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, 0);
}

static void
ferry_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct ferryfs *fs = fs_of(req);
	struct statvfs sv = { .f_bsize = 4096, .f_frsize = 4096,
			      .f_namemax = 255 };

	(void)ino;
	for (size_t i = 0; i < fs->ndisks; i++)
		sv.f_blocks += (fs->disks[i].map.data_bytes + 4095) / 4096;
	sv.f_files = fs->ndisks + 3;
	fuse_reply_statfs(req, &sv);
}

static void
ferry_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Let cached reads be spliced from the cache file. */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	conn->max_readahead = conn->max_readahead ? conn->max_readahead :
			      1u << 20;
}

const struct fuse_lowlevel_ops ferryfs_ops = {
	.init = ferry_init,
	.lookup = ferry_lookup,
	.getattr = ferry_getattr,
	.readdir = ferry_readdir,
	.open = ferry_open,
	.release = ferry_release,
	.read = ferry_read,
	.statfs = ferry_statfs,
};
