/* ferryfs — .ferry/metrics: the mount in Prometheus's text exposition
 * format (version 0.0.4), for node_exporter's textfile collector or a
 * scrape through any file server. Counters end in _total, sizes are in
 * bytes; every family has its # HELP and # TYPE. doc/mount.md lists them. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/ferryfs.h"

/* A growing text. */
struct text {
	char *p;
	size_t len, cap;
	bool failed;
};

static void __attribute__((format(printf, 2, 3)))
put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if (t->len + (size_t)n < t->cap)
			break;
		{
			size_t nc = (t->cap + (size_t)n) * 2;
			char *np = realloc(t->p, nc);

			if (!np) {
				t->failed = true;
				return;
			}
			t->p = np;
			t->cap = nc;
		}
	}
	t->len += (size_t)n;
}

/* A label value, escaped as the format asks (\\, \", \n). */
static void
label(const char *in, char *out, size_t len)
{
	size_t k = 0;

	for (; *in && k + 3 < len; in++) {
		if (*in == '\\' || *in == '"') {
			out[k++] = '\\';
			out[k++] = *in;
		} else if (*in == '\n') {
			out[k++] = '\\';
			out[k++] = 'n';
		} else {
			out[k++] = *in;
		}
	}
	out[k] = '\0';
}

struct family {
	const char *name, *type, *help;
};

static const struct family fams[] = {
	{ "ferry_disk_size_bytes", "gauge", "Size of the disk." },
	{ "ferry_disk_used_bytes", "gauge",
	  "Bytes of the disk that its filesystems use: what is transferred." },
	{ "ferry_disk_cached_bytes", "gauge", "Bytes of the disk in the cache." },
	{ "ferry_disk_bytes_received_total", "counter",
	  "Data bytes received from the source (decoded)." },
	{ "ferry_disk_wire_bytes_total", "counter",
	  "Bytes received on the wire (compressed, with headers)." },
	{ "ferry_disk_chunks", "gauge", "Chunks of the disk that hold data." },
	{ "ferry_disk_chunks_cached", "gauge", "Chunks of data in the cache." },
	{ "ferry_disk_rate_bytes_per_second", "gauge",
	  "Data rate of the disk's transfers now." },
	{ "ferry_disk_digest_mismatches_total", "counter",
	  "Chunks whose data did not match the source's digest." },
	{ "ferry_disk_complete", "gauge",
	  "1 when every used chunk of the disk is cached." },
	{ "ferry_link_up", "gauge",
	  "1 when the last request to the source went through." },
	{ "ferry_link_failures_total", "counter",
	  "Requests to the source that failed (each retry counts)." },
	{ "ferry_link_retrying", "gauge", "Reads being retried now." },
	{ "ferry_resync_running", "gauge", "1 while a resync runs." },
	{ "ferry_resync_total", "counter",
	  "Resyncs that took a new map, summed over the disks." },
};

char *
metrics_render(struct ferryfs *fs)
{
	struct text t = { 0 };
	char src[600], name[300];
	uint64_t resyncs = 0;
	const char *rs;

	label(fs->src->id, src, sizeof src);
	for (size_t f = 0; f < sizeof fams / sizeof *fams; f++) {
		const struct family *m = &fams[f];

		put(&t, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help,
		    m->name, m->type);
		if (strncmp(m->name, "ferry_disk_", 11) != 0)
			goto mount;
		for (size_t i = 0; i < fs->ndisks; i++) {
			struct fdisk *d = &fs->disks[i];
			struct layout *l = layout_get(d);
			uint64_t used = l->map.data_bytes;
			double rate;
			const char *state = disk_state(fs, d);
			const char *n = m->name + 11;

			layout_put(l);
			pthread_mutex_lock(&d->lock);
			rate = d->rate;
			pthread_mutex_unlock(&d->lock);
			if (f == 0)
				resyncs += d->resyncs;
			label(d->info.name, name, sizeof name);
			put(&t, "%s{source=\"%s\",disk=\"%s\"} ", m->name, src,
			    name);
			if (!strcmp(n, "size_bytes"))
				put(&t, "%" PRIu64 "\n", d->info.size);
			else if (!strcmp(n, "used_bytes"))
				put(&t, "%" PRIu64 "\n", used);
			else if (!strcmp(n, "cached_bytes"))
				put(&t, "%" PRIu64 "\n", (uint64_t)d->cached);
			else if (!strcmp(n, "bytes_received_total"))
				put(&t, "%" PRIu64 "\n", (uint64_t)d->received);
			else if (!strcmp(n, "wire_bytes_total"))
				put(&t, "%" PRIu64 "\n", (uint64_t)d->wire);
			else if (!strcmp(n, "chunks"))
				put(&t, "%" PRIu64 "\n",
				    (uint64_t)d->data_chunks);
			else if (!strcmp(n, "chunks_cached"))
				put(&t, "%" PRIu64 "\n",
				    (uint64_t)d->present_chunks);
			else if (!strcmp(n, "rate_bytes_per_second"))
				put(&t, "%.0f\n", rate);
			else if (!strcmp(n, "digest_mismatches_total"))
				put(&t, "%" PRIu64 "\n",
				    (uint64_t)d->mismatches);
			else
				put(&t, "%d\n", strcmp(state, "complete") == 0);
		}
		continue;
mount:
		put(&t, "%s{source=\"%s\"} ", m->name, src);
		if (!strcmp(m->name, "ferry_link_up"))
			put(&t, "%d\n", !fs->src->health.down &&
			    !fs->src->health.retrying);
		else if (!strcmp(m->name, "ferry_link_failures_total"))
			put(&t, "%" PRIu64 "\n",
			    (uint64_t)fs->src->health.failures);
		else if (!strcmp(m->name, "ferry_link_retrying"))
			put(&t, "%u\n", (unsigned)fs->src->health.retrying);
		else if (!strcmp(m->name, "ferry_resync_running")) {
			rs = fs->resync.state;
			put(&t, "%d\n", rs && strcmp(rs, "running") == 0);
		} else
			put(&t, "%" PRIu64 "\n", resyncs);
	}
	if (t.failed) {
		free(t.p);
		return NULL;
	}
	return t.p;
}
