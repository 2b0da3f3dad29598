/* ferry-export — serve disks read-only over HTTPS to ferryfs (or curl).
 *
 * Opens each NAME=PATH through a backend, makes (or loads) a TLS key and a
 * bearer token, listens, and prints one connection string
 *   ferry://TOKEN@HOST:PORT/?pin=sha256//BASE64
 * as the first line of stdout. Several threads each run an event loop and
 * accept from the same listening socket, so TLS encryption of concurrent
 * streams uses every core.
 */
#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zstd.h>

#include "common/connstr.h"
#include "common/relay.h"
#include "common/tls.h"
#include "common/log.h"
#include "backends/usedmap.h"
#include "common/util.h"
#include "tools/export/export.h"
#include "tools/export/pool.h"

#define MAX_THREADS 64

enum { OPT_ZSTD = 256, OPT_BWLIMIT, OPT_SCAN, OPT_DISK_ID, OPT_FORMAT,
       OPT_MAX_CONNS,
       OPT_HEADER_TIMEOUT, OPT_ALL_BLOCKS, OPT_PRINT_MAP, OPT_CONNECT,
       OPT_NAME, OPT_PROXY, OPT_POOL, OPT_METRICS };
#define MAX_IDS 64

struct worker {
	pthread_t tid;
	struct event_base *base;
	struct evhttp *http;
	struct event *stop;	/* made active to end the loop */
	struct evhttp *metrics;	/* --metrics-listen, on the first loop */
};

/* On the worker's own loop: end it. (event_base_loopbreak() from another
 * thread is lost if the loop has not started yet: it clears the flag as
 * it starts. An active event is not: it runs once the loop does.) */
static void
worker_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static void
usage(FILE *f)
{
	fprintf(f,
"Usage: ferry-export [OPTIONS] NAME=PATH...\n"
"Serve disks read-only over HTTPS: block devices, raw image files, and the\n"
"virtual disk inside qcow2/qcow, VHD/VHDX and VMDK images (found by their\n"
"content; backing images are followed).\n"
"\n"
"  -l, --listen HOST:PORT  address to listen on (default 0.0.0.0:8703;\n"
"                          port 0 picks a free port)\n"
"  -u, --url-file FILE     also write the connection string to FILE (0600)\n"
"                          once listening\n"
"  -t, --token TOKEN       bearer token (default: 256 random bits)\n"
"      --connect URL       listen nowhere: dial out to a transit host\n"
"                          (ferryfs --listen) at the connection string it\n"
"                          printed, ferry://TOKEN@HOST:PORT/?pin=..., and\n"
"                          serve its requests on the connections dialled;\n"
"                          its key must match the pin. \"@FILE\" reads URL\n"
"                          from FILE (the command line is visible to every\n"
"                          local user). Dropped connections are dialled\n"
"                          again with backoff, forever\n"
"      --name NAME         --connect: this source's name on the transit, its\n"
"                          directory there (default: the hostname). Give\n"
"                          each exporter on one machine its own\n"
"      --proxy URL         --connect through this HTTP CONNECT proxy,\n"
"                          http://[USER:PASS@]HOST:PORT (default:\n"
"                          $https_proxy; none: no proxy)\n"
"      --pool N            --connect: idle connections kept ready for the\n"
"                          transit's readers (default 4, at most 32)\n"
"      --metrics-listen HOST:PORT  also serve GET /metrics (Prometheus text)\n"
"                          in plain HTTP with no token on this address,\n"
"                          for a scraper (port 0: a free one, logged);\n"
"                          /metrics on the main address needs the token\n"
"  -c, --cert FILE         PEM certificate (chain); needs --key\n"
"  -k, --key FILE          PEM private key\n"
"  -T, --threads N         event-loop threads (default: number of CPUs);\n"
"                          sources are read on 2N+2 threads beside them\n"
"      --zstd-level N      compress data for clients that ask\n"
"                          (Accept-Encoding: zstd) at this zstd level, -7\n"
"                          (fastest) to 19; parts that do not shrink go\n"
"                          raw (default 1; 0 = never compress)\n"
"      --bwlimit RATE      cap on bytes per second sent, all clients\n"
"                          together (K/M/G suffixes; default none)\n"
"      --format FMT        read every PATH as FMT: auto (default: by\n"
"                          content), raw, qcow2, vhd or vmdk\n"
"      --disk-id NAME=ID   identity of disk NAME's content for clients'\n"
"                          caches (default: a file's device, inode, size\n"
"                          and mtime; a block device, or a file with a\n"
"                          filesystem mounted here, is live: clients check\n"
"                          what they cached of it against its digests at\n"
"                          each resync and remount); with an ID, clients\n"
"                          trust it: give a new one whenever it changed\n"
"      --max-connections N  open connections at most, all clients; the\n"
"                          next ones get 503 (default 512)\n"
"      --header-timeout SECS  a connection that has not sent a whole first\n"
"                          request by then is closed (default 10)\n"
"      --all-blocks        serve every block as it is; by default the free\n"
"                          space of the filesystems found on a disk (ext2/3/4,\n"
"                          XFS, NTFS, FAT, swap, LVM2 linear LVs) reads as\n"
"                          zeros and never crosses the wire. Forensic work\n"
"                          that wants deleted files uses this\n"
"      --print-map         print each disk's volumes (type, used bytes, how\n"
"                          each was mapped) as JSON and exit: what would\n"
"                          cross, without serving\n"
"      --scan-zeros        before serving, read every allocated block and\n"
"                          leave those that are all zeros out of the extent\n"
"                          maps (blocks read while serving are checked\n"
"                          anyway; this finds them all up front). Never on\n"
"                          a live disk (a block device, or a filesystem\n"
"                          mounted here): its server may write them later\n"
"  -v, --verbose           more log lines\n"
"  -h, --help              this text\n"
"  -V, --version           version\n"
"\n"
"NAME becomes the disk's name (letters, digits, '.', '_', '-').\n"
"The first line of stdout is the connection string for ferryfs:\n"
"  ferry://TOKEN@HOST:PORT/?pin=sha256//BASE64\n"
"Without --cert/--key a fresh key and self-signed certificate are made in\n"
"memory; the pin in the connection string is what clients trust.\n");
}

/* NAME=ID: the ID names the disk's content for caches (a block device's
 * own identity says nothing of what was written to it). */
static bool
valid_disk_id(const char *s)
{
	const char *eq = strchr(s, '=');
	char name[FERRY_NAME_MAX + 1];
	size_t n;

	if (!eq || (size_t)(eq - s) > FERRY_NAME_MAX)
		return false;
	snprintf(name, sizeof name, "%.*s", (int)(eq - s), s);
	n = strlen(eq + 1);
	return ferry_valid_disk_name(name) && n >= 1 && n <= 64 &&
	       strspn(eq + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRST"
		      "UVWXYZ0123456789._-") == n;
}

/* The disk's generation from --disk-id NAME=ID, if given: the ID and the
 * size, in place of what the file or device says. @return the ID or NULL. */
static const char *
set_disk_id(struct ferry_source *src, const char *name, char *const *ids,
	    size_t nids)
{
	struct ferry_disk_info *d = &src->disks[0];
	const char *id = NULL;
	size_t n = strlen(name);

	for (size_t k = 0; k < nids; k++)
		if (strncmp(ids[k], name, n) == 0 && ids[k][n] == '=')
			id = ids[k] + n + 1;
	if (id) {
		snprintf(d->generation, sizeof d->generation, "id-%s-%" PRIu64,
			 id, d->size);
		d->live = false;	/* the user names the content */
	}
	return id;
}

/* A stable, non-revealing identity of this host: a hash of its machine-id
 * (or its name), so that ferryfs recognises its cache whatever address or
 * key the exporter has this time. */
static void
host_id(char out[33])
{
	unsigned char md[32];
	char buf[300] = "ferry-host:";
	size_t n = strlen(buf);
	FILE *f = fopen("/etc/machine-id", "re");

	if (!f || !fgets(buf + n, (int)(sizeof buf - n), f))
		gethostname(buf + n, sizeof buf - n - 1);
	if (f)
		fclose(f);
	buf[sizeof buf - 1] = '\0';
	buf[n + strcspn(buf + n, "\n")] = '\0';
	EVP_Digest(buf, strlen(buf), md, NULL, EVP_sha256(), NULL);
	ferry_hex(md, 16, out);
}

static int
split_hostport(const char *s, char *host, size_t hostlen, char *port,
	       size_t portlen)
{
	const char *colon;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		snprintf(host, hostlen, "%.*s", (int)(end - s - 1), s + 1);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		snprintf(host, hostlen, "%.*s", (int)(colon - s), s);
	}
	if (!colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return -EINVAL;
	snprintf(port, portlen, "%s", colon + 1);
	return 0;
}

static int
listen_on(const char *host, const char *port, unsigned *bound)
{
	struct addrinfo *res;
	char why[256];
	int fd;

	if (export_resolve(host, port, true, &res, why, sizeof why) < 0) {
		ferry_error("listen address %s:%s: %s", host, port, why);
		return -EINVAL;
	}
	/* Replies end in a small TLS record; with Nagle it waits for the
	 * client's delayed ACK, a stall on every request (137 vs 578 MB/s on
	 * one stream): TCP_NODELAY, which accepted sockets inherit. */
	fd = ferry_listen_tcp(res, true, bound);
	export_freeaddrinfo(res);
	if (fd < 0) {
		ferry_error("listen on %s:%s: %m", host, port);
		return -EADDRINUSE;
	}
	return fd;
}

/* --metrics-listen HOST:PORT: plain HTTP for Prometheus on @w's loop.
 * @return 0 or -errno after a message. */
static int
metrics_start(struct worker *w, struct exporter *ex, const char *addr)
{
	char host[256], port[16];
	unsigned bound;
	int fd;

	if (split_hostport(addr, host, sizeof host, port, sizeof port) < 0) {
		ferry_error("--metrics-listen %s: expected HOST:PORT", addr);
		return -EINVAL;
	}
	fd = listen_on(host, port, &bound);
	if (fd < 0)
		return fd;
	w->metrics = evhttp_new(w->base);
	if (!w->metrics || !evhttp_accept_socket_with_handle(w->metrics, fd)) {
		ferry_error("--metrics-listen %s: cannot serve", addr);
		close(fd);
		return -ENOMEM;
	}
	serve_metrics_setup(ex, w->metrics);
	ferry_info("metrics on http://%s:%u/metrics (no token)",
		   host[0] ? host : "0.0.0.0", bound);
	return 0;
}

static int
write_url_file(const char *path, const char *line)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	umask(077);
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0) {
		ferry_error("%s: %m", tmp);
		return -errno;
	}
	if (rename(tmp, path) < 0) {
		ferry_error("%s: rename: %m", path);
		return -errno;
	}
	return 0;
}

/* --print-map: each disk's size, allocation, used bytes and volumes. */
static int
print_maps(struct exporter *ex)
{
	json_t *disks = json_array();
	char *text;

	for (size_t i = 0; disks && i < ex->ndisks; i++) {
		struct ferry_source *src = ex->disks[i].src;
		json_t *vols = ferry_usedmap_volumes(src);

		json_array_append_new(disks, json_pack("{sssIsIsIso}",
			"name", ex->disks[i].name,
			"size", (json_int_t)src->disks[0].size,
			"allocated", (json_int_t)src->disks[0].allocated,
			"used", (json_int_t)ferry_usedmap_used(src),
			"volumes", vols ? vols : json_null()));
	}
	text = disks ? json_dumps(disks, JSON_INDENT(2)) : NULL;
	json_decref(disks);
	if (!text)
		return 1;
	printf("%s\n", text);
	free(text);
	return 0;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	event_base_dispatch(w->base);
	return NULL;
}

/* What the command line asks, besides @ex's settings. */
struct args {
	const char *listen, *url_file, *token, *cert, *key, *format;
	const char *connect, *name, *proxy, *metrics_listen;
	unsigned pool;
	bool listen_given;
	long nthreads;
	uint64_t bwlimit;
	bool scan, all_blocks, print_map;
	char *ids[MAX_IDS];
	size_t nids;
};

/* Parse the options into @a and @ex. @return -1 to go on, or the exit
 * code: 0 after --help or --version, 2 for a bad option (said). */
static int
parse_args(int argc, char **argv, struct args *a, struct exporter *ex)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "url-file", required_argument, NULL, 'u' },
		{ "token", required_argument, NULL, 't' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "threads", required_argument, NULL, 'T' },
		{ "zstd-level", required_argument, NULL, OPT_ZSTD },
		{ "bwlimit", required_argument, NULL, OPT_BWLIMIT },
		{ "scan-zeros", no_argument, NULL, OPT_SCAN },
		{ "disk-id", required_argument, NULL, OPT_DISK_ID },
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "max-connections", required_argument, NULL, OPT_MAX_CONNS },
		{ "header-timeout", required_argument, NULL,
		  OPT_HEADER_TIMEOUT },
		{ "all-blocks", no_argument, NULL, OPT_ALL_BLOCKS },
		{ "print-map", no_argument, NULL, OPT_PRINT_MAP },
		{ "connect", required_argument, NULL, OPT_CONNECT },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "proxy", required_argument, NULL, OPT_PROXY },
		{ "pool", required_argument, NULL, OPT_POOL },
		{ "metrics-listen", required_argument, NULL, OPT_METRICS },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int opt;

	while ((opt = getopt_long(argc, argv, "l:u:t:c:k:T:vhV", longopts,
				  NULL)) != -1) {
		switch (opt) {
		case 'l': a->listen = optarg; a->listen_given = true; break;
		case OPT_CONNECT: a->connect = optarg; break;
		case OPT_NAME:
			if (!ferry_source_name_ok(optarg)) {
				ferry_error("--name %s: 1-%d letters, digits, "
					    "'.', '_' or '-', not starting "
					    "with '.' or '-'", optarg,
					    FERRY_SOURCE_NAME_MAX);
				return 2;
			}
			a->name = optarg;
			break;
		case OPT_PROXY: a->proxy = optarg; break;
		case OPT_METRICS: a->metrics_listen = optarg; break;
		case OPT_POOL:
			a->pool = (unsigned)strtoul(optarg, &end, 10);
			if (*end || a->pool < 1 || a->pool > 32) {
				ferry_error("--pool %s: 1 to 32", optarg);
				return 2;
			}
			break;
		case 'u': a->url_file = optarg; break;
		case 't': a->token = optarg; break;
		case 'c': a->cert = optarg; break;
		case 'k': a->key = optarg; break;
		case 'T':
			a->nthreads = strtol(optarg, NULL, 10);
			if (a->nthreads < 1 || a->nthreads > MAX_THREADS) {
				ferry_error("--threads must be 1-%d",
					    MAX_THREADS);
				return 2;
			}
			break;
		case OPT_ZSTD:
			ex->zstd_level = (int)strtol(optarg, &end, 10);
			if (!optarg[0] || *end ||
			    ex->zstd_level < FERRY_MAX(ZSTD_minCLevel(), -7) ||
			    ex->zstd_level > ZSTD_maxCLevel()) {
				ferry_error("--zstd-level %s: -7 to %d (0 = "
					    "off)", optarg, ZSTD_maxCLevel());
				return 2;
			}
			break;
		case OPT_BWLIMIT:
			if (ferry_parse_size(optarg, &a->bwlimit) < 0) {
				ferry_error("--bwlimit %s: bytes per second, "
					    "with K/M/G suffixes", optarg);
				return 2;
			}
			break;
		case OPT_SCAN: a->scan = true; break;
		case OPT_ALL_BLOCKS: a->all_blocks = true; break;
		case OPT_PRINT_MAP: a->print_map = true; break;
		case OPT_MAX_CONNS:
			ex->max_conns = (unsigned)strtoul(optarg, &end, 10);
			if (*end || ex->max_conns < 1 || ex->max_conns > 1000000) {
				ferry_error("--max-connections %s: 1 to 1000000",
					    optarg);
				return 2;
			}
			break;
		case OPT_HEADER_TIMEOUT:
			if (ferry_parse_duration(optarg, &ex->header_timeout) < 0 ||
			    ex->header_timeout < 0.1 || ex->header_timeout > 3600) {
				ferry_error("--header-timeout %s: 0.1 s to 1 h",
					    optarg);
				return 2;
			}
			break;
		case OPT_FORMAT:
			if (strcmp(optarg, "auto") && strcmp(optarg, "raw") &&
			    strcmp(optarg, "qcow2") && strcmp(optarg, "vhd") &&
			    strcmp(optarg, "vmdk")) {
				ferry_error("--format %s: auto, raw, qcow2, vhd "
					    "or vmdk", optarg);
				return 2;
			}
			a->format = optarg;
			break;
		case OPT_DISK_ID:
			if (a->nids == MAX_IDS || !valid_disk_id(optarg)) {
				ferry_error("--disk-id %s: NAME=ID, the ID 1-64 "
					    "letters, digits, '.', '_' or '-' "
					    "(at most %d)", optarg, MAX_IDS);
				return 2;
			}
			a->ids[a->nids++] = optarg;
			break;
		case 'v': ferry_log_verbose(true); break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("ferry-export " FERRY_VERSION "\n"); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (a->nthreads < 1)
		a->nthreads = 1;
	if (a->nthreads > MAX_THREADS)
		a->nthreads = MAX_THREADS;
	if (optind >= argc) {
		ferry_error("no disks to export (give NAME=PATH)");
		usage(stderr);
		return 2;
	}
	if (!a->cert != !a->key) {
		ferry_error("--cert and --key go together");
		return 2;
	}
	if (a->connect && (a->listen_given || a->url_file || a->token ||
			   a->cert)) {
		ferry_error("--connect listens nowhere: --listen, --url-file, "
			    "--token, --cert and --key do not go with it");
		return 2;
	}
	if (!a->connect && (a->name || a->proxy || a->pool)) {
		ferry_error("--name, --proxy and --pool go with --connect");
		return 2;
	}
	return -1;
}

/* Open the disks NAME=PATH of @specs, @count of them, as @a says. @return 0,
 * or -1 after saying why. */
static int
open_disks(struct exporter *ex, int count, char **specs, const struct args *a)
{
	ex->ndisks = (size_t)count;
	ex->disks = calloc(ex->ndisks, sizeof *ex->disks);
	if (!ex->disks)
		return -1;
	for (size_t i = 0; i < ex->ndisks; i++) {
		char *arg = specs[i], *eq = strchr(arg, '=');

		if (!eq || eq == arg || !eq[1]) {
			ferry_error("%s: expected NAME=PATH", arg);
			return -1;
		}
		*eq = '\0';
		ex->disks[i].name = arg;
		ex->disks[i].path = eq + 1;
		if (!ferry_valid_disk_name(arg)) {
			ferry_error("%s: disk names are 1-%d letters, digits, "
				    "'.', '_' or '-', not starting with '.'",
				    arg, FERRY_NAME_MAX);
			return -1;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(ex->disks[j].name, arg) == 0) {
				ferry_error("%s: disk name given twice", arg);
				return -1;
			}
		ex->disks[i].format = strcmp(a->format, "auto") == 0 ?
				     ferry_image_format(eq + 1) : a->format;
		if (ferry_image_open(arg, eq + 1, ex->disks[i].format,
				     &ex->disks[i].src) < 0)
			return -1;
		/* Free space of the disk's filesystems reads as zeros. A
		 * block learnt zero could be one a live filesystem writes
		 * later, so learning is for sources served as they are. */
		if (!a->all_blocks) {
			int r = ferry_usedmap_wrap(&ex->disks[i].src, eq + 1);

			if (r < 0) {
				ferry_error("%s: filesystem maps: %s", arg,
					    strerror(-r));
				return -1;
			}
		}
		ex->disks[i].learn_zeros = a->all_blocks || a->scan;
		pthread_mutex_init(&ex->disks[i].lock, NULL);
		if (zeros_init(&ex->disks[i]) < 0) {
			ferry_error("%s: out of memory", arg);
			return -1;
		}
		/* A block device; a mounted filesystem's file is found live
		 * by its first look (export_look()). */
		if (ex->disks[i].src->disks[0].live)
			zeros_live(&ex->disks[i]);
		ex->disks[i].disk_id = set_disk_id(ex->disks[i].src, arg, a->ids,
						  a->nids);
		if (a->scan && zeros_scan(&ex->disks[i]) < 0)
			return -1;	/* the read said why */
	}
	for (size_t k = 0; k < a->nids; k++) {
		size_t n = (size_t)(strchr(a->ids[k], '=') - a->ids[k]), i;

		for (i = 0; i < ex->ndisks; i++)
			if (strlen(ex->disks[i].name) == n &&
			    strncmp(ex->disks[i].name, a->ids[k], n) == 0)
				break;
		if (i == ex->ndisks) {
			ferry_error("--disk-id %s: no disk of that name", a->ids[k]);
			return -1;
		}
	}
	return 0;
}

/* --connect URL or @FILE into @out, parsed into @cs. @return 0, or -1
 * after saying why. */
static int
read_connect_url(const struct args *a, char *out, size_t len,
		 struct ferry_connstr *cs)
{
	char why[200];

	if (a->connect[0] == '@') {
		FILE *f = fopen(a->connect + 1, "re");

		if (!f || !fgets(out, (int)len, f)) {
			ferry_error("--connect %s: %m", a->connect);
			if (f)
				fclose(f);
			return -1;
		}
		fclose(f);
		out[strcspn(out, "\r\n")] = '\0';
	} else {
		snprintf(out, len, "%s", a->connect);
	}
	if (ferry_connstr_parse(out, cs, why, sizeof why) < 0) {
		ferry_error("--connect: %s", why);
		return -1;
	}
	return 0;
}

/* The source's name on the transit: --name, or the hostname made fit. */
static void
source_name(const char *given, char out[FERRY_SOURCE_NAME_MAX + 1])
{
	char h[256] = "";
	size_t n = 0;

	if (given) {
		snprintf(out, FERRY_SOURCE_NAME_MAX + 1, "%s", given);
		return;
	}
	gethostname(h, sizeof h - 1);
	for (const char *c = h; *c && n < FERRY_SOURCE_NAME_MAX; c++)
		out[n++] = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
				  "OPQRSTUVWXYZ0123456789_.-", *c) ? *c : '_';
	out[n] = '\0';
	if (!ferry_source_name_ok(out))
		snprintf(out, FERRY_SOURCE_NAME_MAX + 1, "source");
}

/* --connect: the HTTPS server listens on abstract Unix sockets, one per
 * event-loop thread (the relay deals its connections out in turn, so that
 * each thread encrypts its share), named NAME-K for a random NAME. They
 * are reached by the relay, and by any local process that finds the name:
 * like any socket of the exporter, they take only the pinned client key
 * and the token. @return the socket, or -errno after logging. */
static int
listen_private(char name[96], long k)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, n;

	if (!name[0]) {
		unsigned char rnd[12];
		char hex[25];

		if (RAND_bytes(rnd, sizeof rnd) != 1)
			return -EIO;
		ferry_hex(rnd, sizeof rnd, hex);
		snprintf(name, 96, "ferry-export-%d-%s", (int)getpid(), hex);
	}
	/* Abstract: a leading NUL, no file to leave behind. */
	n = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "%s-%ld", name,
		     k);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa,
			   (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
				       1 + (size_t)n)) < 0 ||
	    listen(fd, 128) < 0) {
		ferry_error("the local HTTPS socket: %m");
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	return fd;
}

int
main(int argc, char **argv)
{
	struct args a = { .listen = "0.0.0.0:8703", .format = "auto",
			  .nthreads = sysconf(_SC_NPROCESSORS_ONLN) };
	struct pool pool = { 0 };
	struct exporter ex = { .zstd_level = 1, .max_conns = 512,
			       .header_timeout = 10 };
	struct worker workers[MAX_THREADS] = { 0 };
	struct ferry_connstr cs = { 0 };
	char host[256], port[16], line[1024], curl[1024];
	char sock_name[96] = "", own_pin[128];
	struct dialer dl = { 0 };
	unsigned bound = 0;
	sigset_t sigs;
	int fd = -1, sig, rc;

	ferry_log_init(argv[0]);
	rc = parse_args(argc, argv, &a, &ex);
	if (rc >= 0)
		return rc;
	rc = 1;
	if (a.connect && read_connect_url(&a, curl, sizeof curl, &cs) < 0)
		return 2;
	if (a.connect)
		snprintf(host, sizeof host, "?");
	else if (split_hostport(a.listen, host, sizeof host, port,
			   sizeof port) < 0) {
		ferry_error("--listen %s: expected HOST:PORT", a.listen);
		return 2;
	}
	if (a.connect) {
		/* The transit's token: its requests carry it too. */
	} else if (a.token) {
		if (strlen(a.token) < 16 || strlen(a.token) >= sizeof cs.token ||
		    strspn(a.token, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
			   "KLMNOPQRSTUVWXYZ0123456789-._~") !=
		    strlen(a.token)) {
			ferry_error("--token: 16-255 URL-safe characters "
				    "(letters, digits, - . _ ~)");
			return 2;
		}
		snprintf(cs.token, sizeof cs.token, "%s", a.token);
	} else if (ferry_random_token(cs.token) < 0) {
		ferry_error("cannot make a random token");
		return 1;
	}
	EVP_Digest(cs.token, strlen(cs.token), ex.token_hash, NULL,
		   EVP_sha256(), NULL);

	if (open_disks(&ex, argc - optind, argv + optind, &a) < 0)
		goto out;
	if (a.print_map) {
		rc = print_maps(&ex);
		goto out;
	}
	host_id(ex.host_id);
	ferry_bucket_init(&ex.bucket, a.bwlimit);
	/* --connect: the key is made here, in memory, and its pin goes to
	 * the transit in the hello; only the transit's key may be a client's.
	 * The transit's own pin stays in @cs. */
	if (ferry_tls_server_ctx(a.cert, a.key, &ex.ssl,
				 a.connect ? own_pin : cs.pin) < 0)
		goto out;
	if (a.connect && ferry_tls_require_client_pin(ex.ssl, cs.pin) < 0)
		goto out;

	/* Signals are taken by sigwait() below, in no thread's handler. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	fd = a.connect ? listen_private(sock_name, 0) :
	     listen_on(host, port, &bound);
	if (fd < 0)
		goto out;
	evthread_use_pthreads();
	/* Twice the loops, and a few more: the sources' reads wait for disks
	 * (and a hash or zstd runs on each), the loops only for sockets. */
	ex.pool = &pool;
	if (pool_start(&pool, (unsigned)FERRY_MIN(2 * a.nthreads + 2, 64)) < 0)
		goto out;
	for (long i = 0; i < a.nthreads; i++) {
		struct worker *w = &workers[i];
		int wfd = !a.connect ? dup(fd) : i == 0 ? dup(fd) :
			  listen_private(sock_name, i);

		w->base = event_base_new();
		w->http = w->base ? evhttp_new(w->base) : NULL;
		w->stop = w->base ? event_new(w->base, -1, 0, worker_stop,
					      w->base) : NULL;
		if (!w->http || !w->stop || wfd < 0 ||
		    !evhttp_accept_socket_with_handle(w->http, wfd)) {
			ferry_error("cannot start event loop %ld", i);
			if (wfd >= 0)
				close(wfd);
			goto stop;
		}
		serve_setup(&ex, w->http);
		if (i == 0 && a.metrics_listen &&
		    metrics_start(w, &ex, a.metrics_listen) < 0)
			goto stop;
		if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
			ferry_error("cannot start thread %ld", i);
			goto stop;
		}
	}

	if (a.connect) {
		char name[FERRY_SOURCE_NAME_MAX + 1];

		struct event_base *bases[MAX_THREADS];

		for (long i = 0; i < a.nthreads; i++)
			bases[i] = workers[i].base;
		source_name(a.name, name);
		dl.pool = a.pool;
		if (dial_start(&dl, curl, a.proxy, name, ex.host_id, own_pin,
			       sock_name, bases, (unsigned)a.nthreads) < 0)
			goto stop;
		ferry_info("serving %zu disk%s to the transit, no listening "
			   "socket, %ld thread%s", ex.ndisks,
			   ex.ndisks == 1 ? "" : "s", a.nthreads,
			   a.nthreads == 1 ? "" : "s");
		if (sigwait(&sigs, &sig) == 0 && !dl.failed)
			ferry_info("%s: stopping", strsignal(sig));
		rc = dl.failed ? 1 : 0;
		goto stop;
	}
	/* Print the host clients should use: a wildcard listen address
	 * means "this machine", so name it. */
	if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
		gethostname(cs.host, sizeof cs.host - 1);
	else
		snprintf(cs.host, sizeof cs.host, "%s", host);
	cs.port = bound;
	ferry_connstr_format(&cs, line, sizeof line);
	printf("%s\n", line);
	fflush(stdout);
	if (a.url_file && write_url_file(a.url_file, line) < 0)
		goto stop;
	ferry_info("serving %zu disk%s on %s:%u with %ld thread%s", ex.ndisks,
		   ex.ndisks == 1 ? "" : "s", host, bound, a.nthreads,
		   a.nthreads == 1 ? "" : "s");

	if (sigwait(&sigs, &sig) == 0)
		ferry_info("%s: stopping", strsignal(sig));
	rc = 0;
stop:
	dial_stop(&dl);
	/* The source threads first: a job's completion goes to its loop. */
	pool_stop(&pool);
	for (long i = 0; i < a.nthreads; i++)
		if (workers[i].stop)
			event_active(workers[i].stop, EV_TIMEOUT, 0);
		else if (workers[i].base)
			event_base_loopbreak(workers[i].base);
	for (long i = 0; i < a.nthreads; i++) {
		struct worker *w = &workers[i];

		if (w->tid)
			pthread_join(w->tid, NULL);
		if (w->http)
			evhttp_free(w->http);
		if (w->metrics)
			evhttp_free(w->metrics);
		if (w->stop)
			event_free(w->stop);
		if (w->base)
			event_base_free(w->base);
	}
	if (a.url_file && rc == 0)
		unlink(a.url_file);
out:
	if (fd >= 0)
		close(fd);
	for (size_t i = 0; i < ex.ndisks; i++) {
		zeros_free(&ex.disks[i]);
		ferry_source_close(ex.disks[i].src);
	}
	free(ex.disks);
	SSL_CTX_free(ex.ssl);
	return rc;
}
