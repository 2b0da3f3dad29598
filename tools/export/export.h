/* ferry-export — shared declarations of the exporter's files. */
#ifndef FERRY_EXPORT_H
#define FERRY_EXPORT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <openssl/ssl.h>
#include <event2/http.h>

#include "backends/backend.h"
#include "common/bitmap.h"
#include "common/connstr.h"
#include "common/reverse.h"
#include "common/rate.h"

/* Zero detection granularity: a block of the disk found all zeros (by
 * --scan-zeros, or while serving it) leaves the extent map. */
#define ZERO_BLOCK (64u << 10)

struct export_disk {
	const char *name;
	const char *path;
	const char *disk_id;		/* --disk-id, or NULL */
	const char *format;		/* raw, qcow2, vhd, vmdk */
	struct ferry_source *src;
	struct ferry_bitmap zero;	/* ZERO_BLOCKs known to be zeros */
	/* Guards the generation and size (src->disks[0]) and the zero
	 * blocks against a refresh that finds the disk changed. */
	pthread_mutex_t lock;
	unsigned epoch;			/* generations seen, under lock */
	bool learn_zeros;		/* zeros_note() marks blocks */
	/* The source may change under a generation that stays the same (a
	 * block device, a filesystem mounted here): a block read as zeros
	 * may be written by its server later, so none is learnt. Sticky,
	 * under lock; --disk-id does not clear it. */
	bool source_live;
	_Atomic uint64_t served;	/* disk bytes sent (before zstd) */
	_Atomic uint64_t requests;	/* data requests */
};

struct pool;
struct exporter {
	struct export_disk *disks;
	size_t ndisks;
	unsigned char token_hash[32];	/* SHA-256 of the bearer token */
	SSL_CTX *ssl;
	int zstd_level;			/* 0: never compress */
	struct ferry_bucket bucket;	/* --bwlimit, all connections */
	char host_id[33];		/* hash of the machine id */
	unsigned max_conns;		/* --max-connections */
	double header_timeout;		/* --header-timeout: the first request */
	struct pool *pool;		/* the source threads (pool.h) */
	_Atomic unsigned conns;		/* open connections, all threads */
	_Atomic uint64_t conns_total;	/* connections accepted */
};

/* dial.c: ferry-export --connect */
struct conn;
struct event_base;
struct dialer {
	struct ferry_connstr cs;	/* the transit */
	char proxy_host[256];		/* HTTP CONNECT proxy, or "" */
	unsigned proxy_port;
	char proxy_auth[400];		/* base64 of USER:PASS, or "" */
	char sock_name[96];		/* the local HTTPS server's sockets: */
	unsigned nsocks;		/* abstract NAME-0 .. NAME-(N-1) */
	unsigned load[64];		/* relays to each, under lock */
	struct event_base *bases[64];	/* the thread serving each */
	struct conn *relays;		/* connections relayed, under lock */
	SSL_CTX *ctx;
	struct ferry_hello hello;
	unsigned pool;			/* idle connections to keep */
	unsigned max;			/* connections at most */
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* idle or total changed; stop */
	unsigned idle, total;		/* under lock */
	unsigned long long taken;	/* connections the transit used */
	int state;			/* for a log line per change */
	char dir[FERRY_SOURCE_NAME_MAX + 1];	/* the transit's name for us */
	atomic_bool stop;
	bool failed;			/* refused: main() exits 1 */
	bool started;
	pthread_t tid;
};

/*! dial_start() : parse @url (a connection string from ferryfs --listen)
 * and @proxy (NULL: $https_proxy; "none": none), and start dialling as
 * source @name of host @host_id whose HTTPS server's key has @pin, relaying
 * to that server's abstract Unix sockets @sock_name-K, K < @nsocks, the
 * least loaded first, each relay run by @bases[K], the loop that serves
 * that socket. @return 0 or -errno after logging. */
int dial_start(struct dialer *dl, const char *url, const char *proxy,
	       const char *name, const char *host_id, const char *pin,
	       const char *sock_name, struct event_base **bases,
	       unsigned nsocks);

/*! dial_stop() : close every connection and stop dialling. */
void dial_stop(struct dialer *dl);


/* info.c */

/*! info_json() : the body of GET /v1/info (doc/protocol.md). */
json_t *info_json(struct exporter *ex);

/* zeros.c */

/*! zeros_init() : no block of @d known to be zeros yet. @return 0/-ENOMEM */
struct addrinfo;
/*! export_resolve() : the TCP addresses of @host:@port (numeric port;
 * @host NULL or "" with @passive: every local address). A numeric host is
 * parsed without a resolver; a name goes to getaddrinfo(), or in a static
 * build to libevent's evdns (/etc/hosts, /etc/resolv.conf), glibc's NSS
 * modules being out of a static binary's reach. @return 0 with *@res to
 * free by export_freeaddrinfo(), or -errno with the reason in @why. */
int export_resolve(const char *host, const char *port, bool passive,
		   struct addrinfo **res, char *why, size_t whylen);
void export_freeaddrinfo(struct addrinfo *res);

int zeros_init(struct export_disk *d);
void zeros_free(struct export_disk *d);

/*! zeros_note() : @len bytes of @d read at @off are in @buf; remember
 * the whole blocks among them that are all zeros, unless the disk changed
 * since @epoch (export_look()'s, taken before the read). */
void zeros_note(struct export_disk *d, unsigned epoch, uint64_t off,
		const uint8_t *buf, size_t len);

/*! zeros_live() : @d is live (its generation does not follow its
 * writes): forget every block known to be zeros and learn none from now
 * on, with a log line if it was to learn them. d->lock held, or before
 * serving. */
void zeros_live(struct export_disk *d);

/*! zeros_forget() : the disk changed: no block is known to be zeros.
 * d->lock held. */
void zeros_forget(struct export_disk *d);

/*! export_look() : look at disk @d again (a file written since the last
 * look has a new generation: logged, and its zero blocks forgotten), and
 * give what a request needs: the generation into @gen, the size, and the
 * epoch to pass to zeros_note(). */
unsigned export_look(struct export_disk *d, char *gen, size_t genlen,
		     uint64_t *size);

/*! zeros_scan() : read every data extent of @d and note its zero blocks,
 * logging what was found. @return 0 or -errno of a failed read. */
int zeros_scan(struct export_disk *d);

/*! zeros_map() : @d's extent map, less its known-zero blocks, into @out
 * (uninitialised). @return 0 or -errno. */
int zeros_map(struct export_disk *d, struct ferry_extents *out);

/*! serve_setup() : route @ex's endpoints on @http (one per thread) and set
 * its limits and TLS. */
/*! serve_metrics_setup() : @http answers GET /metrics only, in plain
 * HTTP without a token (--metrics-listen). */
void serve_metrics_setup(struct exporter *ex, struct evhttp *http);
void serve_setup(struct exporter *ex, struct evhttp *http);

#endif
