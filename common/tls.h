/* ferry — TLS contexts, self-signed certificates and key pins (tls.c).
 *
 * A pin is curl's form: "sha256//" + base64(SHA-256(DER
 * SubjectPublicKeyInfo)). Every ferry peer is self-signed; the pin from a
 * connection string is what is trusted.
 */
#ifndef FERRY_TLS_H
#define FERRY_TLS_H

#include <stdbool.h>

#include <openssl/ssl.h>

/*! ferry_tls_server_ctx() :
 * A TLS 1.3 server context with the certificate and key from files, or, if
 * both are NULL, a fresh P-256 key and self-signed certificate made in
 * memory. Writes the pin of its public key to @pin.
 * @return 0 or -errno after logging. */
int ferry_tls_server_ctx(const char *certfile, const char *keyfile,
			 SSL_CTX **out, char pin[128]);

/*! ferry_tls_keep_files() : make a P-256 key and a self-signed
 * certificate at @keyfile (mode 0600) and @certfile unless both exist, so
 * that a server keeps its pin across restarts. @return 0 or -errno after
 * logging. */
int ferry_tls_keep_files(const char *certfile, const char *keyfile);

/*! ferry_tls_require_client_pin() : make @ctx (a server's) ask every
 * client for a certificate and take only one whose key has @pin.
 * @return 0 or -ENOMEM. (The copy of @pin lives as long as the process.) */
int ferry_tls_require_client_pin(SSL_CTX *ctx, const char *pin);

/*! ferry_tls_client_ctx() : a TLS 1.3 client context that takes any
 * certificate: the caller checks the peer's pin after the handshake.
 * @return 0 or -errno. */
int ferry_tls_client_ctx(SSL_CTX **out);

/*! ferry_tls_peer_pin() : the pin of @ssl's peer's key. @return 0, or
 * -EPROTO if the peer showed no certificate. */
int ferry_tls_peer_pin(SSL *ssl, char pin[128]);

/*! ferry_tls_pin() : the pin of @pkey. @return 0 or -EIO (logged). */
int ferry_tls_pin(EVP_PKEY *pkey, char pin[128]);

/*! ferry_tls_pin_equal() : constant-time comparison of two pins. */
bool ferry_tls_pin_equal(const char *a, const char *b);

/*! ferry_tls_log() : log OpenSSL's last error after @what. */
void ferry_tls_log(const char *what);

#endif
