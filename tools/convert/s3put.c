/* ferry-convert — a multipart upload in arrival order (see s3put.h).
 *
 * The main thread watches what has arrived and queues each part whose
 * bytes are all there; upload threads render a queued part into their own
 * buffer and PUT it. Memory: parallel x part size. When nothing arrives by
 * itself (no hydration, or it stalled), the first part not done is queued
 * anyway, which makes the mount fetch it. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "common/log.h"
#include "common/util.h"
#include "tools/convert/s3put.h"

#define POLL_EVERY 0.1
#define WAIT_DIRECT 2.0
#define SAVE_EVERY 0.5

enum { P_TODO, P_QUEUED, P_SENDING, P_DONE };

struct up {
	struct s3 *s;
	const struct s3put_src *src;
	const char *journal;
	char upload_id[512], upload_q[1600];	/* the id, URL-encoded */
	char key_enc[S3_KEY_MAX * 3 + 1];
	uint64_t nparts;
	unsigned char *state;	/* P_* per part */
	char (*etag)[128];
	char (*sha)[65];	/* each part's SHA-256, once rendered */
	char (*old)[65];	/* --update: the earlier upload's, or "" */
	uint64_t copied, copied_bytes;	/* parts copied inside S3 */
	char manifest[PATH_MAX + 8];
	uint64_t *queue;	/* parts to send, FIFO */
	uint64_t qhead, qtail;
	uint64_t done, sent;	/* parts done; bytes sent this run */
	uint64_t rendered;	/* image bytes rendered, with the done ones */
	unsigned busy;		/* threads with a part */
	int err;		/* the first failure, or 0 */
	bool quit;
	pthread_mutex_t lock;
	pthread_cond_t more, changed;
};

static uint64_t
part_len(const struct up *u, uint64_t i)
{
	uint64_t a = i * u->src->part;

	return FERRY_MIN(u->src->part, u->src->size - a);
}

/* Image bytes in parts done. (Under lock, or once the threads ended.) */
static uint64_t
done_bytes(const struct up *u)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < u->nparts; i++)
		if (u->state[i] == P_DONE)
			n += part_len(u, i);
	return n;
}

/* --- the journal --- */

/* @j into @path, atomically (a temporary file, fsync, rename). */
static int
json_save(json_t *j, const char *path, const char *what)
{
	char tmp[PATH_MAX + 16];
	int r = 0, fd;

	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || json_dumpfd(j, fd, JSON_COMPACT) < 0 || fsync(fd) < 0 ||
	    rename(tmp, path) < 0) {
		r = -errno;
		ferry_error("%s: cannot save the %s: %s", path, what,
			    strerror(errno));
		unlink(tmp);
	}
	if (fd >= 0)
		close(fd);
	return r;
}

static int
journal_write(struct up *u)
{
	json_t *tags = json_array(), *shas = json_array(), *j;
	int r;

	for (uint64_t i = 0; i < u->nparts; i++) {
		bool done = u->state[i] == P_DONE;

		json_array_append_new(tags, done ? json_string(u->etag[i]) :
				      json_null());
		json_array_append_new(shas, done ? json_string(u->sha[i]) :
				      json_null());
	}
	j = json_pack("{sisssssssIsIsoso}", "version", 1, "id", u->src->id,
		      "object", u->s->name, "upload_id", u->upload_id,
		      "part_size", (json_int_t)u->src->part,
		      "size", (json_int_t)u->src->size, "etags", tags,
		      "sha256", shas);
	r = json_save(j, u->journal, "journal");
	json_decref(j);
	return r;
}

/* An earlier run's upload, if it is this conversion's: its id and ETags.
 * One of another conversion of the same object is aborted. */
static void
journal_load(struct up *u, CURL *h)
{
	json_error_t e;
	json_t *j = json_load_file(u->journal, 0, &e), *tags;
	const char *id, *obj, *upload;
	json_int_t part = 0, size = 0;
	struct s3_reply r;
	char q[1700];

	if (!j)
		return;
	if (json_unpack(j, "{s:s,s:s,s:s,s:I,s:I,s:o}", "id", &id, "object",
			&obj, "upload_id", &upload, "part_size", &part,
			"size", &size, "etags", &tags) < 0 ||
	    strcmp(obj, u->s->name) != 0) {
		json_decref(j);
		return;
	}
	if (strcmp(id, u->src->id) == 0 && (uint64_t)part == u->src->part &&
	    (uint64_t)size == u->src->size && json_is_array(tags) &&
	    json_array_size(tags) == u->nparts &&
	    strlen(upload) < sizeof u->upload_id) {
		snprintf(u->upload_id, sizeof u->upload_id, "%s", upload);
		for (uint64_t i = 0; i < u->nparts; i++) {
			const char *t = json_string_value(
				json_array_get(tags, i));
			const char *x = json_string_value(json_array_get(
				json_object_get(j, "sha256"), i));

			if (t && strlen(t) < sizeof u->etag[i] && x &&
			    strlen(x) == 64) {
				snprintf(u->etag[i], sizeof u->etag[i], "%s",
					 t);
				memcpy(u->sha[i], x, 65);
				u->state[i] = P_DONE;
				u->done++;
			}
		}
		ferry_info("%s: continuing upload %.16s...: %" PRIu64 " of %"
			   PRIu64 " parts are there already", u->s->name,
			   u->upload_id, u->done, u->nparts);
		json_decref(j);
		return;
	}
	/* Another conversion's upload of this object: abort it. */
	s3_uri_encode(upload, false, q + 9, sizeof q - 9);
	memcpy(q, "uploadId=", 9);
	if (s3_call(u->s, h, "DELETE", q, NULL, NULL, 0, &r) == 0 ||
	    r.status == 404)
		ferry_info("%s: aborted the stale upload of an earlier, "
			   "different conversion", u->s->name);
	else
		s3_say(u->s, "aborting a stale upload", &r);
	s3_reply_free(&r);
	json_decref(j);
}

/* --update: the earlier upload's part hashes, if its manifest still
 * describes the object (same ETag, same parts). */
static void
manifest_load(struct up *u, CURL *h)
{
	json_error_t je;
	json_t *m = json_load_file(u->manifest, 0, &je), *shas;
	const char *obj, *etag;
	json_int_t part = 0, size = 0;
	struct s3_reply r;
	uint64_t n = 0;

	if (!m || json_unpack(m, "{s:s,s:s,s:I,s:I,s:o}", "object", &obj,
			      "etag", &etag, "part_size", &part, "size", &size,
			      "sha256", &shas) < 0 || strcmp(obj, u->s->name)) {
		ferry_info("%s: no manifest of an earlier upload from here "
			   "(%s); uploading it whole", u->s->name, u->manifest);
		json_decref(m);
		return;
	}
	if ((uint64_t)part != u->src->part || (uint64_t)size != u->src->size ||
	    json_array_size(shas) != u->nparts) {
		ferry_info("%s: the image's size or parts changed since the "
			   "earlier upload; uploading it whole", u->s->name);
		json_decref(m);
		return;
	}
	if (s3_call(u->s, h, "HEAD", NULL, NULL, NULL, 0, &r) < 0 ||
	    strcmp(r.etag, etag) != 0) {
		ferry_info("%s: the object is not the one the manifest "
			   "describes (ETag %s, recorded %s); uploading it "
			   "whole", u->s->name, r.etag[0] ? r.etag : "none",
			   etag);
		s3_reply_free(&r);
		json_decref(m);
		return;
	}
	s3_reply_free(&r);
	for (uint64_t i = 0; i < u->nparts; i++) {
		const char *x = json_string_value(json_array_get(shas, i));

		if (x && strlen(x) == 64) {
			memcpy(u->old[i], x, 65);
			n++;
		}
	}
	ferry_info("%s: updating: parts equal to the earlier upload's are "
		   "copied inside S3 (%" PRIu64 " parts recorded)", u->s->name,
		   n);
	json_decref(m);
}

/* --- upload threads --- */

struct worker {
	struct up *u;
	pthread_t tid;
	uint8_t *buf;
	CURL *h;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct up *u = w->u;

	for (;;) {
		uint64_t i;
		size_t n;
		struct s3_reply r = { 0 };
		char q[1800], what[64], sha[65], hdr[S3_KEY_MAX * 3 + 200];
		bool copy = false, drawn = false;
		int e;

		pthread_mutex_lock(&u->lock);
		while (!u->quit && u->qhead == u->qtail)
			pthread_cond_wait(&u->more, &u->lock);
		if (u->quit) {
			pthread_mutex_unlock(&u->lock);
			return NULL;
		}
		i = u->queue[u->qhead++ % u->nparts];
		u->state[i] = P_SENDING;
		u->busy++;
		pthread_mutex_unlock(&u->lock);

		n = (size_t)part_len(u, i);
		e = u->src->render(u->src->arg, i * u->src->part, w->buf, n);
		if (e == 0) {
			unsigned char md[32];

			__atomic_add_fetch(&u->rendered, n, __ATOMIC_RELAXED);
			drawn = true;

			EVP_Digest(w->buf, n, md, NULL, EVP_sha256(), NULL);
			ferry_hex(md, 32, sha);
			copy = u->old[i][0] && strcmp(u->old[i], sha) == 0;
			snprintf(q, sizeof q, "partNumber=%" PRIu64 "&%s",
				 i + 1, u->upload_q);
			if (copy) {
				/* The same bytes as the earlier object's:
				 * copied inside S3, none sent. */
				snprintf(hdr, sizeof hdr, "x-amz-copy-source: "
					 "/%s/%s\nx-amz-copy-source-range: "
					 "bytes=%" PRIu64 "-%" PRIu64,
					 u->s->t.bucket, u->key_enc,
					 i * u->src->part,
					 i * u->src->part + n - 1);
				e = s3_call(u->s, w->h, "PUT", q, hdr, NULL, 0,
					    &r);
				if (e == 0 && r.body)
					s3_xml_get(r.body, r.len, "ETag",
						   r.etag, sizeof r.etag);
			} else {
				e = s3_call_sha(u->s, w->h, "PUT", q, NULL,
						w->buf, n, sha, &r);
			}
			if (e == 0 && !r.etag[0]) {
				snprintf(r.code, sizeof r.code, "no ETag");
				e = -EPROTO;
			}
			if (e < 0) {
				snprintf(what, sizeof what, "part %" PRIu64,
					 i + 1);
				s3_say(u->s, what, &r);
			}
		}
		pthread_mutex_lock(&u->lock);
		u->busy--;
		if (e == 0) {
			snprintf(u->etag[i], sizeof u->etag[i], "%s", r.etag);
			memcpy(u->sha[i], sha, 65);
			u->state[i] = P_DONE;
			u->done++;
			if (copy) {
				u->copied++;
				u->copied_bytes += n;
			} else {
				u->sent += n;
			}
		} else {
			u->state[i] = P_TODO;
			if (drawn)	/* to be rendered again */
				__atomic_sub_fetch(&u->rendered, n,
						   __ATOMIC_RELAXED);
			if (!u->err)
				u->err = e;
		}
		pthread_cond_broadcast(&u->changed);
		pthread_mutex_unlock(&u->lock);
		s3_reply_free(&r);
	}
}

/* Under lock: queue part @i. */
static void
enqueue(struct up *u, uint64_t i)
{
	u->queue[u->qtail++ % u->nparts] = i;
	u->state[i] = P_QUEUED;
	pthread_cond_signal(&u->more);
}

static int
complete(struct up *u, CURL *h)
{
	size_t cap = 64 + u->nparts * 200, k = 0;
	char *xml = malloc(cap);
	struct s3_reply r;
	int e;

	if (!xml)
		return -ENOMEM;
	k += (size_t)snprintf(xml + k, cap - k, "<CompleteMultipartUpload>");
	for (uint64_t i = 0; i < u->nparts; i++)
		k += (size_t)snprintf(xml + k, cap - k, "<Part><PartNumber>%"
				      PRIu64 "</PartNumber><ETag>%s</ETag>"
				      "</Part>", i + 1, u->etag[i]);
	k += (size_t)snprintf(xml + k, cap - k, "</CompleteMultipartUpload>");
	e = s3_call(u->s, h, "POST", u->upload_q, NULL, xml, k, &r);
	free(xml);
	if (e == 0) {
		/* The manifest a later --update compares with. */
		json_t *shas = json_array(), *m;
		char etag[128] = "";
		struct s3_reply hr;

		/* The ETag as HEAD gives it, which is what --update asks
		 * (RGW's reply to the completion leaves it empty). */
		if (s3_call(u->s, h, "HEAD", NULL, NULL, NULL, 0, &hr) == 0)
			snprintf(etag, sizeof etag, "%s", hr.etag);
		s3_reply_free(&hr);
		for (uint64_t i = 0; i < u->nparts; i++)
			json_array_append_new(shas, json_string(u->sha[i]));
		m = json_pack("{sisssssIsIso}", "version", 1, "object",
			      u->s->name, "etag", etag,
			      "part_size", (json_int_t)u->src->part,
			      "size", (json_int_t)u->src->size, "sha256", shas);
		if (!etag[0] || json_save(m, u->manifest, "manifest") < 0)
			ferry_info("%s: no manifest kept; an --update will "
				   "upload it whole", u->s->name);
		json_decref(m);
	}
	if (e < 0) {
		s3_say(u->s, "completing the upload", &r);
		if (strcmp(r.code, "NoSuchUpload") == 0) {
			ferry_error("%s: the upload is gone (aborted, or "
				    "expired); rerun to start over", u->s->name);
			unlink(u->journal);
		}
	}
	s3_reply_free(&r);
	return e;
}

static int
create(struct up *u, CURL *h)
{
	struct s3_reply r;
	int e = s3_call(u->s, h, "POST", "uploads=", NULL, NULL, 0, &r);

	if (e == 0 && s3_xml_get(r.body, r.len, "UploadId", u->upload_id,
				 sizeof u->upload_id) <= 0) {
		snprintf(r.code, sizeof r.code, "no UploadId in the reply");
		e = -EPROTO;
	}
	if (e < 0) {
		s3_say(u->s, "starting a multipart upload", &r);
		if (e == -ENOENT && strcmp(r.code, "NoSuchBucket") == 0)
			ferry_error("%s: no bucket %s at %s", u->s->name,
				    u->s->t.bucket, u->s->endpoint);
	}
	s3_reply_free(&r);
	return e;
}

/* The main thread's loop: queue what is ready; save the journal. */
static int
drive(struct up *u, const volatile sig_atomic_t *stop)
{
	double last_save = ferry_now(), last_progress = ferry_now();
	double last_report = ferry_now();
	uint64_t saved = u->done, seen = u->done;
	int e = 0;

	pthread_mutex_lock(&u->lock);
	while (u->done < u->nparts && !u->err && !*stop) {
		bool queued = false;

		for (uint64_t i = 0; i < u->nparts; i++)
			if (u->state[i] == P_TODO &&
			    u->src->ready(u->src->arg, i * u->src->part,
					  part_len(u, i))) {
				enqueue(u, i);
				queued = true;
			}
		if (u->done != seen) {
			seen = u->done;
			last_progress = ferry_now();
		}
		/* Nothing ready and nothing under way: ask for the next. */
		if (!queued && u->busy == 0 && u->qhead == u->qtail &&
		    (!u->src->arrives(u->src->arg) ||
		     ferry_now() - last_progress > WAIT_DIRECT)) {
			for (uint64_t i = 0; i < u->nparts; i++)
				if (u->state[i] == P_TODO) {
					enqueue(u, i);
					break;
				}
			last_progress = ferry_now();
		}
		if (u->done != saved && ferry_now() - last_save >= SAVE_EVERY) {
			saved = u->done;
			if ((e = journal_write(u)) < 0)
				break;
			last_save = ferry_now();
		}
		if (ferry_now() - last_report >= 1.0) {
			u->src->report(u->src->arg, u->rendered,
				       done_bytes(u), false);
			last_report = ferry_now();
		}
		{
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += (long)(POLL_EVERY * 1e9);
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&u->changed, &u->lock, &ts);
		}
		pthread_mutex_unlock(&u->lock);
		e = u->src->poll(u->src->arg);
		pthread_mutex_lock(&u->lock);
		if (e < 0)
			break;
	}
	if (!e)
		e = u->err;
	if (!e && *stop)
		e = -EINTR;
	u->quit = true;
	pthread_cond_broadcast(&u->more);
	pthread_mutex_unlock(&u->lock);
	return e;
}

int
s3put_run(struct s3 *s, const struct s3put_src *src, unsigned parallel,
	  const char *journal, const volatile sig_atomic_t *stop)
{
	struct up u = { .s = s, .src = src, .journal = journal };
	struct worker *w = NULL;
	unsigned started = 0;
	CURL *h = curl_easy_init();
	int e = -ENOMEM;

	u.nparts = src->size ? (src->size + src->part - 1) / src->part : 1;
	u.state = calloc(u.nparts, 1);
	u.etag = calloc(u.nparts, sizeof *u.etag);
	u.queue = calloc(u.nparts, sizeof *u.queue);
	u.sha = calloc(u.nparts, sizeof *u.sha);
	u.old = calloc(u.nparts, sizeof *u.old);
	snprintf(u.manifest, sizeof u.manifest, "%s.parts", journal);
	s3_uri_encode(s->t.key, true, u.key_enc, sizeof u.key_enc);
	w = calloc(parallel, sizeof *w);
	pthread_mutex_init(&u.lock, NULL);
	pthread_cond_init(&u.more, NULL);
	pthread_cond_init(&u.changed, NULL);
	if (!h || !u.state || !u.etag || !u.queue || !w || !u.sha || !u.old)
		goto out;
	if (src->update)
		manifest_load(&u, h);
	journal_load(&u, h);
	if (!u.upload_id[0]) {
		if ((e = create(&u, h)) < 0)
			goto out;
		if ((e = journal_write(&u)) < 0)
			goto abort;
	}
	u.rendered = done_bytes(&u);
	memcpy(u.upload_q, "uploadId=", 9);
	s3_uri_encode(u.upload_id, false, u.upload_q + 9,
		      sizeof u.upload_q - 9);
	for (; started < parallel; started++) {
		w[started].u = &u;
		w[started].buf = malloc(src->part);
		w[started].h = curl_easy_init();
		if (!w[started].buf || !w[started].h ||
		    pthread_create(&w[started].tid, NULL, worker_main,
				   &w[started]) != 0) {
			free(w[started].buf);
			if (w[started].h)
				curl_easy_cleanup(w[started].h);
			break;
		}
	}
	if (started == 0) {
		e = -ENOMEM;
		goto keep;
	}
	e = drive(&u, stop);
	for (unsigned i = 0; i < started; i++) {
		pthread_join(w[i].tid, NULL);
		free(w[i].buf);
		curl_easy_cleanup(w[i].h);
	}
	if (journal_write(&u) < 0 && !e)
		e = -EIO;
	src->report(src->arg, u.rendered, done_bytes(&u), true);
	if (e)
		goto keep;
	if ((e = complete(&u, h)) < 0)
		goto out;
	unlink(journal);
	if (src->update)
		ferry_info("%s: updated: %" PRIu64 " parts (%" PRIu64 " MiB) "
			   "uploaded, %" PRIu64 " (%" PRIu64 " MiB) copied "
			   "inside S3", s->name, u.nparts - u.copied,
			   u.sent >> 20, u.copied, u.copied_bytes >> 20);
	goto out;
abort:
	{
		struct s3_reply r;

		s3_call(s, h, "DELETE", u.upload_q, NULL, NULL, 0, &r);
		s3_reply_free(&r);
		ferry_error("%s: upload aborted", s->name);
	}
	goto out;
keep:
	if (e == -EINTR)
		ferry_info("%s: interrupted; %" PRIu64 " of %" PRIu64 " parts "
			   "uploaded, kept: the same command continues",
			   s->name, u.done, u.nparts);
	else
		ferry_error("%s: the upload is kept (%" PRIu64 " of %" PRIu64
			    " parts, journal %s): the same command continues "
			    "it", s->name, u.done, u.nparts, journal);
out:
	if (h)
		curl_easy_cleanup(h);
	free(w);
	free(u.state);
	free(u.etag);
	free(u.queue);
	free(u.sha);
	free(u.old);
	pthread_mutex_destroy(&u.lock);
	pthread_cond_destroy(&u.more);
	pthread_cond_destroy(&u.changed);
	return e;
}
