/* ferry-convert — build a raw, qcow2 or VHD image of a disk while its data
 * is still arriving in a ferry mount, in the order it arrives.
 *
 * The output's layout is ferry's own view code (fs/views), the same that
 * presents NAME.qcow2 in a mount: metadata first, then each piece's data
 * ranges as soon as the mount has cached them (.ferry/map.json, polled),
 * never reading a hole. Pieces written are recorded in a journal after the
 * output is flushed, so an interrupted run continues where it stopped.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/log.h"
#include "common/util.h"
#include "fs/views/view.h"
#include "tools/convert/convert.h"
#include "tools/convert/s3put.h"

#define IO_MAX (4u << 20)
#define FLUSH_EVERY 1.0		/* s between journal saves and reports */
#define FLUSH_BYTES (32ull << 20)	/* data bytes between journal saves */
#define POLL_EVERY 0.1		/* s between map reads while waiting */
#define WAIT_DIRECT 2.0		/* s without arrivals before reading */
#define S3_PART_DEFAULT (8ull << 20)	/* bench/s3.sh: the fastest of 8-64M */
#define S3_PARALLEL_DEFAULT 4

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* A run of the output that holds content bytes. */
struct dseg {
	uint64_t voff, coff, len;
};

struct out {
	const char *path;
	int fd;
	bool device;
	struct view view;
	struct dseg *segs;	/* sorted by content offset */
	size_t nsegs;
	struct s3 *s3;		/* s3://: read back by ranged GETs */
	CURL *h;
};

struct progress {
	int mode;		/* 0 none, 1 a terminal line, 2 JSON lines */
	double t0, last;
	uint64_t conv_last, xfer_last, up_last;
	double conv_rate, xfer_rate, up_rate;
};

struct job {
	struct source src;
	struct out out;
	struct journal j;
	struct progress prog;
	bool verify, zero;
	bool update;		/* --update: write only what differs */
	uint64_t written;	/* data bytes written to DST */
	uint8_t *buf2;		/* --update: DST's bytes, to compare */
	EVP_MD_CTX *sha;	/* --verify: content hashed in order */
	uint64_t hashed;	/* pieces hashed so far */
	uint64_t converted;	/* data bytes of done pieces */
	uint8_t *buf;
	pthread_t flusher;	/* flush_start()'s */
	bool flushing;		/* flusher is to be joined */
	atomic_bool flush_over;	/* it has returned */
	int flush_err;		/* what it returned */
	uint64_t flush_mark;	/* converted when the last one started */
};

static const uint8_t zeros[1 << 16];

static void
usage(FILE *f)
{
	fprintf(f,
"usage: ferry-convert [-O raw|qcow2|vhd|fixedvhd] [-p] [--progress=json]\n"
"                     [--verify] [--zero] [--update] [--journal PATH]\n"
"                     SRC DST\n"
"       ferry-convert [-O FORMAT] [-p] [--parallel N] [--part-size SIZE]\n"
"                     [--s3-endpoint URL] [--s3-region R] [--s3-ca FILE]\n"
"                     SRC s3://BUCKET/KEY\n"
"\n"
"Writes the disk that SRC shows into DST as an image of the -O format\n"
"(default raw). SRC is a file of a ferry mount (any view: the disk behind\n"
"it is converted, its data in the order it arrives) or any file or block\n"
"device (copied in order, holes skipped). DST is a file (created sparse)\n"
"or a block device (only data is written; --zero writes the rest too).\n"
"\n"
"  -O FORMAT         raw, qcow2, vhd (dynamic) or fixedvhd\n"
"  -p                a progress line on stderr\n"
"  --progress=json   one JSON object a second on stderr\n"
"  --verify          print the SHA-256 of the disk's content (as sha256sum\n"
"                    of the source disk) and check DST against it\n"
"  --zero            on a block device, also write the zeros (with\n"
"                    --update: zero what became free since)\n"
"  --update          DST is an earlier conversion of this disk: compare\n"
"                    and write only what differs (after a resync); a raw\n"
"                    file or device follows a grown or shrunk map in\n"
"                    place, a qcow2 or VHD whose layout changed is\n"
"                    written whole\n"
"  --journal PATH    where progress is kept for a rerun (default\n"
"                    DST.ferry-convert; for a device or s3://, under\n"
"                    /var/tmp)\n"
"\n"
"DST s3://BUCKET/KEY: the image goes straight into S3-compatible storage\n"
"as a multipart upload, each part as soon as the mount holds its bytes.\n"
"Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN)\n"
"or ~/.aws/credentials (profile AWS_PROFILE, default \"default\").\n"
"  --s3-endpoint URL  the S3 server (default AWS_ENDPOINT_URL, else AWS's\n"
"                    https://s3.REGION.amazonaws.com); path-style\n"
"  --s3-region R     signing region (default AWS_REGION,\n"
"                    AWS_DEFAULT_REGION, ~/.aws/config, us-east-1)\n"
"  --s3-ca FILE      CA certificates for a private CA (TLS is verified)\n"
"  --parallel N      parts uploaded at once (default 4; memory: N x part)\n"
"  --part-size SIZE  5M-5G (default 8M; raised to stay within 10000\n"
"                    parts)\n"
"With s3://, --verify reads the object back by ranged GETs and hashes its\n"
"content; --update makes a new upload in which parts equal to the earlier\n"
"upload's (per its manifest JOURNAL.parts, kept while the object's ETag\n"
"is unchanged) are copied inside S3, and only the others are sent.\n"
"  -h, --help        this help\n"
"\n"
"Interrupted (Ctrl-C, kill, reboot), the same command continues where it\n"
"stopped. Exit status: 0 done, 1 error, 2 usage, 3 --verify mismatch,\n"
"130 interrupted.\n");
}

static const struct view_ops *
format_ops(const char *name)
{
	static const struct view_ops *all[] = {
		&view_raw_ops, &view_qcow2_ops, &view_vhd_ops,
		&view_fixedvhd_ops,
	};

	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		if (strcmp(all[i]->format, name) == 0)
			return all[i];
	return NULL;
}

static int
seg_cmp(const void *a, const void *b)
{
	const struct dseg *x = a, *y = b;

	return x->coff < y->coff ? -1 : x->coff > y->coff;
}

static int out_write(struct out *o, uint64_t c, const uint8_t *buf,
		     size_t n);

/* --zero on a device: the content's holes written as zeros (again on a
 * rerun: it is cheap next to the data, and the journal does not track it). */
static int
zero_holes(struct job *jb)
{
	const struct ferry_extents *m = &jb->src.map;
	uint64_t at = 0;
	int r = 0;

	memset(jb->buf, 0, IO_MAX);
	for (size_t i = 0; r == 0 && i <= m->n; i++) {
		uint64_t end = i < m->n ? m->v[i].off : jb->src.size;

		while (r == 0 && at < end) {
			size_t n = (size_t)FERRY_MIN(end - at, IO_MAX);

			r = out_write(&jb->out, at, jb->buf, n);
			at += n;
		}
		if (i < m->n)
			at = m->v[i].off + m->v[i].len;
	}
	return r;
}

/* Do the metadata @o would write equal what DST holds? (--update: the
 * same layout, so only data can differ.) */
static bool
meta_same(struct job *jb)
{
	struct out *o = &jb->out;

	for (uint64_t off = 0; off < o->view.size;) {
		struct view_seg seg;

		view_map(&o->view, off, o->view.size - off, &seg);
		for (uint64_t k = 0; seg.kind == VIEW_META && k < seg.len;) {
			size_t n = (size_t)FERRY_MIN(seg.len - k, IO_MAX);

			o->view.ops->meta(&o->view, off + k, jb->buf, n);
			if (pread(o->fd, jb->buf2, n, (off_t)(off + k)) !=
			    (ssize_t)n || memcmp(jb->buf, jb->buf2, n) != 0)
				return false;
			k += n;
		}
		off += seg.len;
	}
	return true;
}

/* The output's layout; with @fresh, its size set (a file emptied first, so
 * that its holes are zeros) and its metadata written. */
/* The output's layout: the view of the source in format @ops, and its
 * runs of content sorted by content offset. */
static int
out_layout(struct job *jb, const struct view_ops *ops)
{
	struct out *o = &jb->out;
	struct source *s = &jb->src;
	struct view_params p = {
		.size = s->size,
		.map = &s->map,
		.qcow2_cluster_bits = 16,
	};
	unsigned char md[32];
	size_t cap = 0;
	int r;

	/* VHD unique id: the same disk always gives the same one, across
	 * generations, so that an update keeps it. */
	EVP_Digest(s->stable, strlen(s->stable), md, NULL, EVP_sha256(), NULL);
	memcpy(p.uuid, md, 16);
	p.uuid[6] = (uint8_t)((p.uuid[6] & 0x0f) | 0x40);
	p.uuid[8] = (uint8_t)((p.uuid[8] & 0x3f) | 0x80);
	r = view_open(&o->view, ops, &p);
	if (r < 0) {
		ferry_error("%s: cannot lay out a %s image of %" PRIu64
			    " bytes: %s", o->path, ops->format, s->size,
			    strerror(-r));
		return r;
	}
	for (uint64_t off = 0; off < o->view.size;) {
		struct view_seg seg;

		view_map(&o->view, off, o->view.size - off, &seg);
		if (seg.kind == VIEW_DISK) {
			if (o->nsegs == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct dseg *n = realloc(o->segs,
							 nc * sizeof *n);

				if (!n)
					return -ENOMEM;
				o->segs = n;
				cap = nc;
			}
			o->segs[o->nsegs++] = (struct dseg){ off, seg.disk_off,
							     seg.len };
		}
		off += seg.len;
	}
	qsort(o->segs, o->nsegs, sizeof *o->segs, seg_cmp);
	return 0;
}

static int
out_setup(struct job *jb, const struct view_ops *ops, bool fresh)
{
	struct out *o = &jb->out;
	struct stat st;
	int r = out_layout(jb, ops);

	if (r < 0)
		return r;
	if (jb->update && fresh) {
		/* An update writes only what differs, into the same layout;
		 * another layout (the allocation changed) means all of it. */
		if (fstat(o->fd, &st) == 0 && !o->device &&
		    (uint64_t)st.st_size != o->view.size) {
			ferry_info("%s: another size than the %s image of this "
				   "disk now; writing it whole", o->path,
				   ops->format);
			jb->update = false;
		} else if (!meta_same(jb)) {
			ferry_info("%s: the disk's allocation changed, so does "
				   "the %s layout; writing it whole", o->path,
				   ops->format);
			jb->update = false;
		} else {
			return 0;
		}
	}
	if (o->device) {
		uint64_t dev = 0;

		if (ioctl(o->fd, BLKGETSIZE64, &dev) < 0 ||
		    dev < o->view.size) {
			ferry_error("%s: the device (%" PRIu64 " bytes) is "
				    "smaller than the %s image (%" PRIu64 ")",
				    o->path, dev, ops->format, o->view.size);
			return -ENOSPC;
		}
	} else if ((fresh && ftruncate(o->fd, 0) < 0) ||
		   ftruncate(o->fd, (off_t)o->view.size) < 0) {
		ferry_error("%s: cannot size it: %s", o->path,
			    strerror(errno));
		return -errno;
	}
	for (uint64_t off = 0; off < o->view.size;) {
		struct view_seg seg;

		view_map(&o->view, off, o->view.size - off, &seg);
		if (seg.kind == VIEW_META ||
		    (seg.kind == VIEW_ZERO && jb->zero && o->device)) {
			for (uint64_t k = 0; k < seg.len;) {
				size_t n = (size_t)FERRY_MIN(seg.len - k,
							     IO_MAX);

				if (seg.kind == VIEW_META)
					o->view.ops->meta(&o->view, off + k,
							  jb->buf, n);
				else
					memset(jb->buf, 0, n);
				r = ferry_pwrite_all(o->fd, jb->buf, n,
						     off + k);
				if (r < 0) {
					ferry_error("%s: write at %" PRIu64
						    ": %s", o->path, off + k,
						    strerror(-r));
					return r;
				}
				k += n;
			}
		}
		off += seg.len;
	}
	return jb->zero && o->device ? zero_holes(jb) : 0;
}

/* The first output run that ends after content offset @c. */
static size_t
seg_find(const struct out *o, uint64_t c)
{
	size_t lo = 0, hi = o->nsegs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (o->segs[mid].coff + o->segs[mid].len <= c)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Content bytes [c, c+n) written from @buf to where the output keeps
 * them, or (@back) read back from there into @buf, zeros where it keeps
 * none. */
static int
out_io(struct out *o, uint64_t c, uint8_t *buf, size_t n, bool back)
{
	if (back)
		memset(buf, 0, n);
	for (size_t i = seg_find(o, c); i < o->nsegs; i++) {
		const struct dseg *g = &o->segs[i];
		uint64_t a = FERRY_MAX(c, g->coff);
		uint64_t b = FERRY_MIN(c + n, g->coff + g->len);
		uint64_t at = g->voff + (a - g->coff);
		int r;

		if (a >= c + n)
			break;
		if (a >= b)
			continue;
		if (back && o->s3) {
			r = s3_get(o->s3, o->h, at, buf + (a - c),
				   (size_t)(b - a));
			if (r < 0)
				return r;	/* logged */
		} else if (back) {
			ssize_t k = pread(o->fd, buf + (a - c),
					  (size_t)(b - a), (off_t)at);

			r = k == (ssize_t)(b - a) ? 0 : k < 0 ? -errno : -EIO;
		} else {
			r = ferry_pwrite_all(o->fd, buf + (a - c),
					     (size_t)(b - a), at);
			/* Start writing it back now, so that the next flush
			 * (and the last, after the last piece) has little
			 * left to wait for. A hint: fdatasync decides. */
			if (r == 0)
				sync_file_range(o->fd, (off64_t)at,
						(off64_t)(b - a),
						SYNC_FILE_RANGE_WRITE);
		}
		if (r < 0) {
			ferry_error("%s: %s at %" PRIu64 ": %s", o->path,
				    back ? "reading back" : "write", at,
				    r == -EIO && back ? "short read" :
				    strerror(-r));
			return back ? -EIO : r;
		}
	}
	return 0;
}

static int
out_write(struct out *o, uint64_t c, const uint8_t *buf, size_t n)
{
	return out_io(o, c, (uint8_t *)buf, n, false);
}

static int
out_read(struct out *o, uint64_t c, uint8_t *buf, size_t n)
{
	return out_io(o, c, buf, n, true);
}

/* Content bytes [c, c+n) from the source (a read the mount may have to
 * fetch). */
static int
src_read(struct source *s, uint64_t c, uint8_t *buf, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t k = pread(s->fd, buf + done, n - done,
				  (off_t)(s->base + c + done));

		if (k < 0 && errno == EINTR && !stop)
			continue;
		if (k <= 0) {
			int e = k < 0 ? errno : EIO;

			ferry_error("%s: read at %" PRIu64 ": %s", s->path,
				    s->base + c + done, k < 0 ? strerror(e) :
				    "unexpected end of file");
			return -e;
		}
		done += (size_t)k;
	}
	return 0;
}

/* Call @fn on each data range of piece @k, in pieces of at most IO_MAX. */
static int
piece_data(struct job *jb, uint64_t k,
	   int (*fn)(struct job *jb, uint64_t c, size_t n))
{
	struct source *s = &jb->src;
	uint64_t a = piece_off(s, k), b = a + piece_len(s, k);

	for (size_t i = ferry_extents_find(&s->map, a); i < s->map.n; i++) {
		uint64_t x = FERRY_MAX(a, s->map.v[i].off);
		uint64_t y = FERRY_MIN(b, s->map.v[i].off + s->map.v[i].len);

		if (x >= b)
			break;
		for (; x < y;) {
			size_t n = (size_t)FERRY_MIN(y - x, IO_MAX);
			int r = fn(jb, x, n);

			if (r < 0)
				return r;
			x += n;
		}
	}
	return 0;
}

static int
copy_range(struct job *jb, uint64_t c, size_t n)
{
	int r = src_read(&jb->src, c, jb->buf, n);

	if (r == 0)
		jb->written += n;
	return r < 0 ? r : out_write(&jb->out, c, jb->buf, n);
}

/* Hash content [a, b) as zeros. */
static void
hash_zeros(EVP_MD_CTX *h, uint64_t n)
{
	while (n > 0) {
		size_t k = (size_t)FERRY_MIN(n, sizeof zeros);

		EVP_DigestUpdate(h, zeros, k);
		n -= k;
	}
}

/* Hash piece @k's content, reading its data with @rd. */
static int
hash_piece(struct job *jb, EVP_MD_CTX *h, uint64_t k, bool from_output)
{
	struct source *s = &jb->src;
	uint64_t a = piece_off(s, k), b = a + piece_len(s, k), at = a;

	for (size_t i = ferry_extents_find(&s->map, a); i < s->map.n; i++) {
		uint64_t x = FERRY_MAX(a, s->map.v[i].off);
		uint64_t y = FERRY_MIN(b, s->map.v[i].off + s->map.v[i].len);

		if (x >= b)
			break;
		hash_zeros(h, x - at);
		for (; x < y;) {
			size_t n = (size_t)FERRY_MIN(y - x, IO_MAX);
			int r = from_output ? out_read(&jb->out, x, jb->buf, n)
					    : src_read(s, x, jb->buf, n);

			if (r < 0)
				return r;
			EVP_DigestUpdate(h, jb->buf, n);
			x += n;
		}
		at = y;
	}
	hash_zeros(h, b - at);
	return 0;
}

static uint64_t
piece_data_bytes(const struct source *s, uint64_t k)
{
	return ferry_extents_data_in(&s->map, piece_off(s, k),
				     piece_len(s, k));
}

static void
report(struct job *jb, const char *state, bool last)
{
	struct progress *p = &jb->prog;
	struct source *s = &jb->src;
	double now = ferry_now(), dt = now - p->last;
	uint64_t xfer = 0, total = s->data_bytes;
	double conv_eta, xfer_eta;

	if (!p->mode)
		return;
	for (uint64_t k = 0; k < s->npieces; k++)
		if (ferry_bitmap_test(&jb->j.done, k) || source_ready(s, k))
			xfer += piece_data_bytes(s, k);
	if (dt > 0.2) {
		p->conv_rate = (double)(jb->converted - p->conv_last) / dt;
		p->xfer_rate = (double)(xfer - p->xfer_last) / dt;
		p->conv_last = jb->converted;
		p->xfer_last = xfer;
		p->last = now;
	}
	conv_eta = p->conv_rate > 0 ?
		   (double)(total - jb->converted) / p->conv_rate : -1;
	xfer_eta = p->xfer_rate > 0 ? (double)(total - xfer) / p->xfer_rate
				    : -1;
	if (jb->converted == total)
		conv_eta = 0;
	if (xfer == total)
		xfer_eta = 0;
	if (p->mode == 2) {
		fprintf(stderr, "{\"time\":%.1f,\"state\":\"%s\",\"transfer\":"
			"{\"done\":%" PRIu64 ",\"total\":%" PRIu64 ",\"rate\":"
			"%.0f,\"eta\":%.0f},\"convert\":{\"done\":%" PRIu64
			",\"total\":%" PRIu64 ",\"rate\":%.0f,\"eta\":%.0f}}\n",
			now - p->t0, state, xfer, total, p->xfer_rate,
			xfer_eta, jb->converted, total, p->conv_rate,
			conv_eta);
		return;
	}
	fprintf(stderr, "%s%5.1f%%  %" PRIu64 "/%" PRIu64 " MiB  %s  "
		"transfer %.0f MB/s ETA %s%.0fs  convert %.0f MB/s ETA %s%.0fs"
		"%s", isatty(2) ? "\r" : "",
		total ? 100.0 * (double)jb->converted / (double)total : 100.0,
		jb->converted >> 20, total >> 20, state, p->xfer_rate / 1e6,
		xfer_eta < 0 ? "?" : "", xfer_eta < 0 ? 0 : xfer_eta,
		p->conv_rate / 1e6, conv_eta < 0 ? "?" : "",
		conv_eta < 0 ? 0 : conv_eta,
		isatty(2) ? (last ? "\033[K\n" : "\033[K") : "\n");
}

/* Make the pieces written so far durable, then record them. The pieces
 * are those marked before the flush starts: one marked while it runs
 * (by the conversion, beside an asynchronous flush) waits for the next. */
static int
flush(struct job *jb)
{
	uint8_t *bits = journal_snapshot(&jb->j.done);
	int r = 0;

	if (!bits)
		return -ENOMEM;
	if (fdatasync(jb->out.fd) < 0 && errno != EINVAL) {
		r = -errno;
		ferry_error("%s: flush: %s", jb->out.path, strerror(-r));
	}
	if (r == 0)
		r = journal_save_bits(&jb->j, bits);
	free(bits);
	return r;
}

static void *
flush_main(void *arg)
{
	struct job *jb = arg;

	jb->flush_err = flush(jb);
	atomic_store(&jb->flush_over, true);
	return NULL;
}

/* The flush that ends a flush_start(): its result. */
static int
flush_wait(struct job *jb)
{
	if (!jb->flushing)
		return 0;
	pthread_join(jb->flusher, NULL);
	jb->flushing = false;
	return jb->flush_err;
}

/* A periodic flush, beside the conversion: the disk makes the pieces
 * written so far durable while the next ones are written. Waiting for it
 * stopped the conversion for as long as the disk took, 0.3-0.5 s a flush
 * while the mount's cache was being written too (bench/link.sh). One at
 * a time: while the last still runs, this one is left out. */
static int
flush_start(struct job *jb)
{
	sigset_t all, was;
	int r;

	if (jb->flushing && !atomic_load(&jb->flush_over))
		return 0;
	if ((r = flush_wait(jb)) < 0)
		return r;
	atomic_store(&jb->flush_over, false);
	jb->flush_mark = jb->converted;
	/* Signals (Ctrl-C) are the main thread's. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &was);
	r = pthread_create(&jb->flusher, NULL, flush_main, jb);
	pthread_sigmask(SIG_SETMASK, &was, NULL);
	if (r != 0)
		return flush(jb);
	jb->flushing = true;
	return 0;
}

/* --verify: hash the pieces done in order from the cursor on. */
static int
hash_advance(struct job *jb)
{
	while (jb->sha && jb->hashed < jb->src.npieces &&
	       ferry_bitmap_test(&jb->j.done, jb->hashed)) {
		int r = hash_piece(jb, jb->sha, jb->hashed, false);

		if (r < 0)
			return r;
		jb->hashed++;
	}
	return 0;
}

/* Content [c, c+n) of the source into @buf: its data read, holes zeros. */
static int
content_read(struct job *jb, uint64_t c, uint8_t *buf, size_t n)
{
	const struct ferry_extents *m = &jb->src.map;

	memset(buf, 0, n);
	for (size_t i = ferry_extents_find(m, c); i < m->n; i++) {
		uint64_t x = FERRY_MAX(c, m->v[i].off);
		uint64_t y = FERRY_MIN(c + n, m->v[i].off + m->v[i].len);
		int r;

		if (x >= c + n)
			break;
		if (y > x && (r = src_read(&jb->src, x, buf + (x - c),
					   (size_t)(y - x))) < 0)
			return r;
	}
	return 0;
}

#define UPDATE_BLOCK 4096	/* --update compares and writes in these */

/* A device is written only where the disk has data, unless --zero: what
 * became free since is left as it is, as a first conversion leaves what
 * was never data (--verify reads the data ranges alone). */
static bool
data_only(const struct job *jb)
{
	return jb->out.device && !jb->zero;
}

/* --update of [c, c+n): DST's bytes compared with the content (holes as
 * zeros), and the content written where they differ; in a raw file, a
 * range that is all hole now is punched instead. */
static int
update_range(struct job *jb, uint64_t c, size_t n)
{
	struct out *o = &jb->out;
	int r;

	if ((r = content_read(jb, c, jb->buf, n)) < 0 ||
	    (r = out_read(o, c, jb->buf2, n)) < 0)
		return r;
	if (memcmp(jb->buf, jb->buf2, n) == 0)
		return 0;
	if (!o->device && o->view.ops == &view_raw_ops &&
	    ferry_extents_data_in(&jb->src.map, c, n) == 0 &&
	    fallocate(o->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)c, (off_t)n) == 0)
		return 0;	/* free now: a hole again, nothing written */
	/* Only the runs of UPDATE_BLOCKs that differ: a server's changes
	 * are mostly small writes here and there. */
	for (size_t a = 0; a < n;) {
		size_t b;

		while (a < n && !memcmp(jb->buf + a, jb->buf2 + a,
					FERRY_MIN(UPDATE_BLOCK, n - a)))
			a += FERRY_MIN(UPDATE_BLOCK, n - a);
		for (b = a; b < n && memcmp(jb->buf + b, jb->buf2 + b,
					    FERRY_MIN(UPDATE_BLOCK, n - b));)
			b += FERRY_MIN(UPDATE_BLOCK, n - b);
		if (b > a) {
			r = out_write(o, c + a, jb->buf + a, b - a);
			if (r < 0)
				return r;
			jb->written += b - a;
		}
		a = b;
	}
	return 0;
}

/* --update: piece @k's content compared with what DST holds, slice by
 * slice, and only slices that differ written: newly used and changed
 * ranges, and (but on a device without --zero) zeros where DST holds old
 * data in what is a hole now. */
static int
update_piece(struct job *jb, uint64_t k)
{
	struct source *s = &jb->src;
	uint64_t a = piece_off(s, k), end = a + piece_len(s, k);

	if (data_only(jb))
		return piece_data(jb, k, update_range);
	for (uint64_t c = a; c < end;) {
		size_t n = (size_t)FERRY_MIN(end - c, IO_MAX);
		int r = update_range(jb, c, n);

		if (r < 0)
			return r;
		c += n;
	}
	return 0;
}

static int
do_piece(struct job *jb, uint64_t k)
{
	int r = jb->update ? update_piece(jb, k) :
		piece_data(jb, k, copy_range);

	if (r < 0)
		return r;
	ferry_bitmap_set(&jb->j.done, k);
	jb->converted += piece_data_bytes(&jb->src, k);
	return 0;
}

/* The conversion proper: pieces as they become readable, in disk order
 * among those; when nothing arrives (no hydration, or it stalled), the
 * next piece is read anyway, which makes the mount fetch it. */
static int
convert_pieces(struct job *jb)
{
	struct source *s = &jb->src;
	double last_flush = ferry_now(), last_arrival = ferry_now();
	uint64_t left = 0;
	int r;

	for (uint64_t k = 0; k < s->npieces; k++) {
		if (ferry_bitmap_test(&jb->j.done, k))
			jb->converted += piece_data_bytes(s, k);
		else if (piece_data_bytes(s, k) == 0 &&
			 (!jb->update || data_only(jb)))
			ferry_bitmap_set(&jb->j.done, k);	/* holes */
		else
			left++;
	}
	jb->flush_mark = jb->converted;	/* a resumed run's are flushed */
	while (left > 0 && !stop) {
		bool progressed = false;

		for (uint64_t k = 0; k < s->npieces && !stop; k++) {
			if (ferry_bitmap_test(&jb->j.done, k) ||
			    !source_ready(s, k))
				continue;
			r = do_piece(jb, k);
			if (r < 0)
				return r;
			left--;
			progressed = true;
			if (jb->converted - jb->flush_mark >= FLUSH_BYTES &&
			    (r = flush_start(jb)) < 0)
				return r;
			if (ferry_now() - last_flush >= FLUSH_EVERY) {
				if ((r = flush_start(jb)) < 0 ||
				    (r = hash_advance(jb)) < 0 ||
				    (r = source_poll(s)) < 0)
					return r;
				report(jb, "converting", false);
				last_flush = ferry_now();
			}
		}
		if (progressed)
			last_arrival = ferry_now();
		if (left == 0 || stop)
			break;
		if (!progressed && (!s->mm.prefetch ||
				    ferry_now() - last_arrival > WAIT_DIRECT)) {
			/* Nothing arrives by itself: ask for the next. */
			for (uint64_t k = 0; k < s->npieces; k++) {
				if (ferry_bitmap_test(&jb->j.done, k))
					continue;
				r = do_piece(jb, k);
				if (r < 0)
					return r;
				left--;
				break;
			}
		} else if (!progressed) {
			usleep((useconds_t)(POLL_EVERY * 1e6));
		}
		if ((r = source_poll(s)) < 0)
			return r;
		if (ferry_now() - last_flush >= FLUSH_EVERY) {
			if ((r = flush_start(jb)) < 0 ||
			    (r = hash_advance(jb)) < 0)
				return r;
			report(jb, progressed ? "converting" : "waiting",
			       false);
			last_flush = ferry_now();
		}
	}
	return 0;
}

static int
run(struct job *jb)
{
	int r = convert_pieces(jb);
	int w = flush_wait(jb);

	if (r == 0)
		r = w;
	if (r == 0)
		r = flush(jb);
	if (r < 0)
		return r;
	return stop ? -EINTR : hash_advance(jb);
}

/* --verify: the output read back, content in order, against the hash of
 * the source. */
static int
verify(struct job *jb, char hex[65])
{
	unsigned char a[32], b[32];
	EVP_MD_CTX *h = EVP_MD_CTX_new();
	int r = 0;

	if (!h)
		return -ENOMEM;
	EVP_DigestFinal_ex(jb->sha, a, NULL);
	ferry_hex(a, 32, hex);
	/* Read the written bytes, not the page cache's copy of them. */
	posix_fadvise(jb->out.fd, 0, 0, POSIX_FADV_DONTNEED);
	EVP_DigestInit_ex(h, EVP_sha256(), NULL);
	for (uint64_t k = 0; r == 0 && k < jb->src.npieces; k++)
		r = hash_piece(jb, h, k, true);
	EVP_DigestFinal_ex(h, b, NULL);
	EVP_MD_CTX_free(h);
	if (r < 0)
		return r;
	return memcmp(a, b, 32) == 0 ? 0 : -EBADMSG;
}

static int
default_journal(const char *dst, bool device, char *out, size_t len)
{
	if (!device) {
		if ((size_t)snprintf(out, len, "%s.ferry-convert", dst) >= len)
			return -ENAMETOOLONG;
		return 0;
	}
	/* A device: its path, made a file name, under /var/tmp. */
	if ((size_t)snprintf(out, len, "/var/tmp/ferry-convert.%s", dst) >=
	    len)
		return -ENAMETOOLONG;
	for (char *c = out + strlen("/var/tmp/"); *c; c++)
		if (*c == '/')
			*c = '_';
	return 0;
}

/* --- s3://: the image uploaded as it is made (s3put.c) --- */

/* The piece that holds content offset @c. */
static uint64_t
piece_at(const struct source *s, uint64_t c)
{
	return (c + s->disk_off % s->piece) / s->piece;
}

static bool
s3_ready(void *arg, uint64_t off, uint64_t len)
{
	struct job *jb = arg;
	struct source *s = &jb->src;

	for (uint64_t end = off + len; off < end;) {
		struct view_seg seg;

		view_map(&jb->out.view, off, end - off, &seg);
		if (seg.kind == VIEW_DISK && seg.len > 0) {
			uint64_t k1 = piece_at(s, seg.disk_off + seg.len - 1);

			for (uint64_t k = piece_at(s, seg.disk_off); k <= k1;
			     k++)
				if (!source_ready(s, k) &&
				    piece_data_bytes(s, k) > 0)
					return false;
		}
		off += seg.len;
	}
	return true;
}

/* Image bytes [off, off+len): metadata, zeros and the disk's content
 * (read from the mount: called from the upload threads, which share
 * only the source's fd and its map, both read-only here). */
static int
s3_render(void *arg, uint64_t off, uint8_t *buf, size_t len)
{
	struct job *jb = arg;

	for (size_t at = 0; at < len;) {
		struct view_seg seg;
		int r = 0;

		view_map(&jb->out.view, off + at, len - at, &seg);
		if (seg.kind == VIEW_META)
			jb->out.view.ops->meta(&jb->out.view, off + at,
					       buf + at, (size_t)seg.len);
		else if (seg.kind == VIEW_DISK)
			r = content_read(jb, seg.disk_off, buf + at,
					 (size_t)seg.len);
		else
			memset(buf + at, 0, (size_t)seg.len);
		if (r < 0)
			return r;
		at += (size_t)seg.len;
	}
	return 0;
}

static int
s3_poll(void *arg)
{
	struct job *jb = arg;

	return source_poll(&jb->src);
}

static bool
s3_arrives(void *arg)
{
	struct job *jb = arg;

	return !jb->src.mount || jb->src.mm.prefetch;
}

/* Progress: what has arrived (transfer), what is rendered into parts
 * (convert) and what is uploaded, each with its rate. */
static void
s3_report(void *arg, uint64_t converted, uint64_t uploaded, bool last)
{
	struct job *jb = arg;
	struct progress *p = &jb->prog;
	struct source *s = &jb->src;
	uint64_t xfer = 0, size = jb->out.view.size;
	double now = ferry_now(), dt = now - p->last;

	if (!p->mode)
		return;
	for (uint64_t k = 0; k < s->npieces; k++)
		if (source_ready(s, k))
			xfer += piece_data_bytes(s, k);
	if (dt > 0.2) {
		p->conv_rate = (double)(converted - p->conv_last) / dt;
		p->xfer_rate = (double)(xfer - p->xfer_last) / dt;
		p->up_rate = (double)(uploaded - p->up_last) / dt;
		p->conv_last = converted;
		p->xfer_last = xfer;
		p->up_last = uploaded;
		p->last = now;
	}
	if (p->mode == 2) {
		fprintf(stderr, "{\"time\":%.1f,\"state\":\"%s\",\"transfer\":"
			"{\"done\":%" PRIu64 ",\"total\":%" PRIu64 ",\"rate\":"
			"%.0f},\"convert\":{\"done\":%" PRIu64 ",\"total\":%"
			PRIu64 ",\"rate\":%.0f},\"upload\":{\"done\":%" PRIu64
			",\"total\":%" PRIu64 ",\"rate\":%.0f}}\n",
			now - p->t0, last ? (uploaded == size ? "done" :
					     "stopped") : "uploading",
			xfer, s->data_bytes, p->xfer_rate, converted, size,
			p->conv_rate, uploaded, size, p->up_rate);
		return;
	}
	fprintf(stderr, "%s%5.1f%%  %" PRIu64 "/%" PRIu64 " MiB uploaded  "
		"transfer %.0f MB/s  convert %.0f MB/s  upload %.0f MB/s%s",
		isatty(2) ? "\r" : "",
		size ? 100.0 * (double)uploaded / (double)size : 100.0,
		uploaded >> 20, size >> 20, p->xfer_rate / 1e6,
		p->conv_rate / 1e6, p->up_rate / 1e6,
		isatty(2) ? (last ? "\033[K\n" : "\033[K") : "\n");
}

/* --verify: the disk's SHA-256 from the mount, then the object read back
 * by ranged GETs, its content hashed the same way. */
static int
s3_verify(struct job *jb, struct s3 *s3)
{
	char hex[65];
	int r = 0;

	jb->sha = EVP_MD_CTX_new();
	jb->out.h = curl_easy_init();
	if (!jb->sha || !jb->out.h)
		return 1;
	EVP_DigestInit_ex(jb->sha, EVP_sha256(), NULL);
	for (uint64_t k = 0; r == 0 && k < jb->src.npieces; k++)
		r = hash_piece(jb, jb->sha, k, false);
	if (r < 0)
		return 1;
	jb->out.s3 = s3;
	r = verify(jb, hex);
	curl_easy_cleanup(jb->out.h);
	jb->out.h = NULL;
	jb->out.s3 = NULL;
	if (r == -EBADMSG) {
		ferry_error("%s: the object differs from the source (SHA-256 of "
			    "the source %s)", s3->name, hex);
		return 3;
	}
	if (r < 0)
		return 1;
	printf("%s  %s\n", hex, jb->src.path);
	return 0;
}

struct s3_opts {
	const char *endpoint, *region, *ca;
	uint64_t part;
	unsigned parallel;
};

static int
s3_main(struct job *jb, const struct view_ops *ops, const char *dst,
	const struct s3_opts *so, const char *journal)
{
	struct s3 s3;
	struct s3put_src src = {
		.arg = jb, .ready = s3_ready, .render = s3_render,
		.poll = s3_poll, .arrives = s3_arrives, .report = s3_report,
	};
	char id[sizeof jb->src.id + 200], jpath[PATH_MAX];
	uint64_t part = so->part, need;
	int r;

	if (s3_open(&s3, dst, so->endpoint, so->region, so->ca) < 0)
		return 1;
	if (out_layout(jb, ops) < 0)
		return 1;
	/* At most 10000 parts: larger ones for a large image. */
	need = (jb->out.view.size + S3_PARTS_MAX - 1) / S3_PARTS_MAX;
	if (part < need)
		part = (need + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
	if (!journal) {
		if (default_journal(dst, true, jpath, sizeof jpath) < 0) {
			ferry_error("%s: path too long", dst);
			return 1;
		}
		journal = jpath;
	}
	snprintf(id, sizeof id, "%s; %s; piece %" PRIu64 "; data %" PRIu64
		 " in %zu ranges", jb->src.id, ops->format, jb->src.piece,
		 jb->src.data_bytes, jb->src.map.n);
	src.id = id;
	src.update = jb->update;
	src.size = jb->out.view.size;
	src.part = part;
	jb->prog.t0 = jb->prog.last = ferry_now();
	r = s3put_run(&s3, &src, so->parallel, journal, &stop);
	if (r == -EINTR)
		return 130;
	if (r < 0)
		return 1;
	ferry_info("%s: complete, %" PRIu64 " bytes (%s image of %s)", s3.name,
		   src.size, ops->format, jb->src.path);
	return jb->verify ? s3_verify(jb, &s3) : 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "progress", required_argument, NULL, 'P' },
		{ "verify", no_argument, NULL, 'V' },
		{ "zero", no_argument, NULL, 'Z' },
		{ "journal", required_argument, NULL, 'J' },
		{ "update", no_argument, NULL, 'U' },
		{ "s3-endpoint", required_argument, NULL, 'E' },
		{ "s3-region", required_argument, NULL, 'R' },
		{ "s3-ca", required_argument, NULL, 'C' },
		{ "parallel", required_argument, NULL, 'N' },
		{ "part-size", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct s3_opts so = { .part = S3_PART_DEFAULT,
			      .parallel = S3_PARALLEL_DEFAULT };
	char *end;
	const struct view_ops *ops = &view_raw_ops;
	struct job jb = { .out.fd = -1, .j.fd = -1, .src.fd = -1 };
	const char *journal = NULL;
	char why[400], jpath[PATH_MAX], hex[65];
	struct sigaction sa = { .sa_handler = on_signal };
	struct stat st;
	bool resumed;
	int c, r, rc = 1;

	ferry_log_init("ferry-convert");
	while ((c = getopt_long(argc, argv, "O:ph", opts, NULL)) != -1) {
		switch (c) {
		case 'O':
			ops = format_ops(optarg);
			if (!ops) {
				fprintf(stderr, "ferry-convert: unknown format "
					"'%s' (raw, qcow2, vhd, fixedvhd)\n",
					optarg);
				return 2;
			}
			break;
		case 'p':
			jb.prog.mode = 1;
			break;
		case 'P':
			if (strcmp(optarg, "json") != 0) {
				fprintf(stderr, "ferry-convert: --progress "
					"takes json\n");
				return 2;
			}
			jb.prog.mode = 2;
			break;
		case 'V':
			jb.verify = true;
			break;
		case 'Z':
			jb.zero = true;
			break;
		case 'J':
			journal = optarg;
			break;
		case 'U':
			jb.update = true;
			break;
		case 'E':
			so.endpoint = optarg;
			break;
		case 'R':
			so.region = optarg;
			break;
		case 'C':
			so.ca = optarg;
			break;
		case 'N':
			so.parallel = (unsigned)strtoul(optarg, &end, 10);
			if (*end || so.parallel < 1 || so.parallel > 64) {
				fprintf(stderr, "ferry-convert: --parallel "
					"takes 1-64\n");
				return 2;
			}
			break;
		case 'S':
			if (ferry_parse_size(optarg, &so.part) < 0 ||
			    so.part < S3_PART_MIN || so.part > (5ull << 30)) {
				fprintf(stderr, "ferry-convert: --part-size "
					"takes 5M to 5G\n");
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	jb.buf = malloc(IO_MAX);
	jb.buf2 = malloc(IO_MAX);
	if (!jb.buf || !jb.buf2)
		return 1;
	r = source_open(&jb.src, argv[optind], why, sizeof why);
	if (r < 0) {
		ferry_error("%s", why);
		goto out;
	}
	jb.out.path = argv[optind + 1];
	if (strncmp(jb.out.path, "s3://", 5) == 0) {
		if (jb.zero) {
			ferry_error("%s: --zero is for block devices",
				    jb.out.path);
			rc = 2;
			goto out;
		}
		rc = s3_main(&jb, ops, jb.out.path, &so, journal);
		goto out;
	}
	jb.out.fd = open(jb.out.path, O_RDWR | O_CLOEXEC |
			 (jb.update ? 0 : O_CREAT), 0644);
	if (jb.out.fd < 0 && errno == ENOENT && jb.update) {
		ferry_error("%s: no image to update; convert without --update "
			    "first", jb.out.path);
		goto out;
	}
	if (jb.out.fd < 0 || fstat(jb.out.fd, &st) < 0) {
		ferry_error("%s: %s", jb.out.path, strerror(errno));
		goto out;
	}
	jb.out.device = S_ISBLK(st.st_mode);
	if (!jb.out.device && !S_ISREG(st.st_mode)) {
		ferry_error("%s: not a file or block device", jb.out.path);
		goto out;
	}
	if (!journal) {
		if (default_journal(jb.out.path, jb.out.device, jpath,
				    sizeof jpath) < 0) {
			ferry_error("%s: path too long", jb.out.path);
			goto out;
		}
		journal = jpath;
	}
	{
		char id[sizeof jb.src.id + 200];

		snprintf(id, sizeof id, "%s; %s; piece %" PRIu64 "; data %"
			 PRIu64 " in %zu ranges%s", jb.src.id, ops->format,
			 jb.src.piece, jb.src.data_bytes, jb.src.map.n,
			 jb.update ? "; update" : "");
		r = journal_open(&jb.j, journal, id, jb.src.npieces, &resumed,
				 why, sizeof why);
	}
	if (r < 0) {
		ferry_error("%s", why);
		goto out;
	}
	if (resumed)
		ferry_info("%s: continuing an interrupted conversion (%" PRIu64
			   " of %" PRIu64 " pieces done)", jb.out.path,
			   ferry_bitmap_count(&jb.j.done), jb.src.npieces);
	if (out_setup(&jb, ops, !resumed) < 0)
		goto out;
	if (jb.verify) {
		jb.sha = EVP_MD_CTX_new();
		if (!jb.sha)
			goto out;
		EVP_DigestInit_ex(jb.sha, EVP_sha256(), NULL);
	}
	jb.prog.t0 = jb.prog.last = ferry_now();
	r = run(&jb);
	if (r == -EINTR) {
		report(&jb, "interrupted", true);
		ferry_error("%s: interrupted; %" PRIu64 " of %" PRIu64 " MiB "
			    "written and kept; the same command continues",
			    jb.out.path, jb.converted >> 20,
			    jb.src.data_bytes >> 20);
		rc = 130;
		goto out;
	}
	if (r < 0)
		goto out;
	report(&jb, "done", true);
	if (jb.update)
		ferry_info("%s: updated: %" PRIu64 " MiB written where it "
			   "differed from the source's %" PRIu64 " MiB of data",
			   jb.out.path, jb.written >> 20,
			   jb.src.data_bytes >> 20);
	if (jb.verify) {
		r = verify(&jb, hex);
		if (r == -EBADMSG) {
			ferry_error("%s: the output differs from the source "
				    "(SHA-256 of the source %s)", jb.out.path,
				    hex);
			rc = 3;
			goto out;
		}
		if (r < 0)
			goto out;
		printf("%s  %s\n", hex, jb.src.path);
	}
	journal_remove(&jb.j);
	rc = 0;
out:
	if (jb.sha)
		EVP_MD_CTX_free(jb.sha);
	journal_close(&jb.j);
	view_close(&jb.out.view);
	free(jb.out.segs);
	if (jb.out.fd >= 0)
		close(jb.out.fd);
	source_close(&jb.src);
	free(jb.buf);
	free(jb.buf2);
	return rc;
}
