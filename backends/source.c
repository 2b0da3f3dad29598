/* ferry — backend-independent helpers. See backend.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "common/util.h"

#define READ_PIECE (1024 * 1024)

bool
ferry_valid_disk_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > FERRY_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return false;
	}
	return true;
}

int
ferry_source_read(struct ferry_source *src, unsigned disk, uint64_t off,
		  uint64_t len, const struct ferry_sink *sink)
{
	char *buf;
	int r = 0;

	if (src->ops->fetch)
		return src->ops->fetch(src, disk, off, len, sink);

	buf = malloc(FERRY_MIN(len, (uint64_t)READ_PIECE));
	if (!buf)
		return -ENOMEM;
	while (len > 0 && r == 0) {
		size_t n = (size_t)FERRY_MIN(len, (uint64_t)READ_PIECE);

		if (src->cancel && *src->cancel) {
			r = -ECANCELED;
			break;
		}
		r = src->ops->pread(src, disk, buf, n, off);
		if (r == 0 && sink->wire)
			r = sink->wire(sink->arg, n);
		if (r == 0)
			r = sink->data(sink->arg, off, buf, n);
		off += n;
		len -= n;
	}
	free(buf);
	return r;
}

int
ferry_source_digests(struct ferry_source *src, unsigned disk, uint64_t chunk,
		     uint64_t first, size_t count, struct ferry_digest *out)
{
	uint64_t size = src->disks[disk].size;
	struct ferry_hasher h;
	char *buf;
	int r = 0;

	if (chunk == 0 || count == 0 || first >= (size + chunk - 1) / chunk ||
	    count > (size + chunk - 1) / chunk - first)
		return -EINVAL;
	if (src->ops->digests)
		return src->ops->digests(src, disk, chunk, first, count, out);
	buf = malloc(READ_PIECE);
	if (!buf)
		return -ENOMEM;
	if (ferry_hasher_init(&h) < 0) {
		free(buf);
		return -ENOMEM;
	}
	for (size_t i = 0; i < count && r == 0; i++) {
		uint64_t off = (first + i) * chunk;
		uint64_t end = FERRY_MIN(off + chunk, size);

		ferry_hasher_reset(&h);
		while (off < end && r == 0) {
			size_t n = (size_t)FERRY_MIN(end - off,
						     (uint64_t)READ_PIECE);

			r = src->ops->pread(src, disk, buf, n, off);
			ferry_hasher_update(&h, buf, n);
			off += n;
		}
		ferry_hasher_final(&h, &out[i]);
	}
	ferry_hasher_free(&h);
	free(buf);
	return r;
}

void
ferry_health_failed(struct ferry_source *src, const char *why)
{
	struct ferry_health *h = &src->health;

	h->failures++;
	pthread_mutex_lock(&h->lock);
	snprintf(h->last_error, sizeof h->last_error, "%s", why);
	pthread_mutex_unlock(&h->lock);
}

void
ferry_health_error(struct ferry_source *src, char *buf, size_t len)
{
	struct ferry_health *h = &src->health;

	pthread_mutex_lock(&h->lock);
	snprintf(buf, len, "%s", h->last_error);
	pthread_mutex_unlock(&h->lock);
}

void
ferry_source_close(struct ferry_source *src)
{
	if (!src)
		return;
	src->ops->close(src);
}
