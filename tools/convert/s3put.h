/* ferry-convert — an image straight into S3 as a multipart upload, its
 * parts sent as soon as their bytes are in the mount (s3put.c).
 *
 * The image is cut into parts of a fixed size; the caller says which can
 * be rendered now (ready) and renders them (render, called from the
 * upload threads). A journal (JSON) keeps the upload id and each part's
 * ETag and SHA-256, saved as parts are done, so that a rerun sends no
 * saved part again. A completed upload leaves a manifest, JOURNAL.parts:
 * the object's ETag and each part's SHA-256, which --update compares. */
#ifndef FERRY_CONVERT_S3PUT_H
#define FERRY_CONVERT_S3PUT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "tools/convert/s3.h"

#define S3_PART_MIN (5ull << 20)
#define S3_PARTS_MAX 10000

struct s3put_src {
	void *arg;
	const char *id;		/* the conversion's identity */
	uint64_t size;		/* image bytes */
	uint64_t part;		/* part size */
	/* main thread: can image bytes [off, off+len) be rendered now? */
	bool (*ready)(void *arg, uint64_t off, uint64_t len);
	/* any thread: render them into @buf. @return 0 or -errno. */
	int (*render)(void *arg, uint64_t off, uint8_t *buf, size_t len);
	/* main thread: look again at what has arrived. @return 0, -errno */
	int (*poll)(void *arg);
	/* does data arrive by itself (hydration), or must it be asked? */
	bool (*arrives)(void *arg);
	/* --update: parts whose bytes equal the earlier upload's (by the
	 * SHA-256 recorded in its manifest, JOURNAL.parts, while the object's
	 * ETag is still the one recorded) are copied inside S3 */
	bool update;
	/* progress, about once a second: image bytes rendered (converted)
	 * and uploaded so far, and whether it is the last call */
	void (*report)(void *arg, uint64_t converted, uint64_t uploaded,
		       bool last);
};

/*! s3put_run() : upload @src to @s with @parallel threads, keeping
 * progress in @journal. @return 0 when the object is complete; -EINTR
 * when *@stop was set (resumable); other -errno after logging, saying
 * whether the upload was kept for a rerun or aborted. */
int s3put_run(struct s3 *s, const struct s3put_src *src, unsigned parallel,
	      const char *journal, const volatile sig_atomic_t *stop);

#endif
