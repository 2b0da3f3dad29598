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
};

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
	_Atomic unsigned conns;		/* open connections, all threads */
};

/*! tls_server_ctx() :
 * A TLS 1.3 server context with the certificate and key from files, or, if
 * both are NULL, a fresh P-256 key and self-signed certificate made in
 * memory. Writes curl's pin of the public key ("sha256//BASE64") to @pin.
 * @return 0 or -errno after logging. */
int tls_server_ctx(const char *certfile, const char *keyfile, SSL_CTX **out,
		   char pin[128]);

/* info.c */

/*! info_json() : the body of GET /v1/info (doc/protocol.md). */
json_t *info_json(struct exporter *ex);

/* zeros.c */

/*! zeros_init() : no block of @d known to be zeros yet. @return 0/-ENOMEM */
int zeros_init(struct export_disk *d);
void zeros_free(struct export_disk *d);

/*! zeros_note() : @len bytes of @d read at @off are in @buf; remember
 * the whole blocks among them that are all zeros, unless the disk changed
 * since @epoch (export_look()'s, taken before the read). */
void zeros_note(struct export_disk *d, unsigned epoch, uint64_t off,
		const uint8_t *buf, size_t len);

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
void serve_setup(struct exporter *ex, struct evhttp *http);

#endif
