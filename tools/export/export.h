/* ferry-export — shared declarations of the exporter's files. */
#ifndef FERRY_EXPORT_H
#define FERRY_EXPORT_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>
#include <event2/http.h>

#include "backends/backend.h"

struct export_disk {
	const char *name;
	const char *path;
	struct ferry_source *src;
};

struct exporter {
	struct export_disk *disks;
	size_t ndisks;
	unsigned char token_hash[32];	/* SHA-256 of the bearer token */
	SSL_CTX *ssl;
};

/*! tls_server_ctx() :
 * A TLS 1.3 server context with the certificate and key from files, or, if
 * both are NULL, a fresh P-256 key and self-signed certificate made in
 * memory. Writes curl's pin of the public key ("sha256//BASE64") to @pin.
 * @return 0 or -errno after logging. */
int tls_server_ctx(const char *certfile, const char *keyfile, SSL_CTX **out,
		   char pin[128]);

/*! serve_setup() : route @ex's endpoints on @http (one per thread) and set
 * its limits and TLS. */
void serve_setup(struct exporter *ex, struct evhttp *http);

#endif
