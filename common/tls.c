/* ferry — TLS contexts, self-signed certificates and key pins, for
 * ferry-export's server, the transit's listener (ferryfs --listen) and the
 * exporter dialling out to it (ferry-export --connect). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "common/tls.h"

void
ferry_tls_log(const char *what)
{
	char buf[256];
	unsigned long e = ERR_get_error();

	ERR_error_string_n(e, buf, sizeof buf);
	ferry_error("%s: %s", what, e ? buf : "unknown TLS error");
	ERR_clear_error();
}

/* The pin curl checks: base64(SHA-256(DER SubjectPublicKeyInfo)). */
int
ferry_tls_pin(EVP_PKEY *pkey, char pin[128])
{
	unsigned char *der = NULL, md[32];
	unsigned char b64[64];
	int len = i2d_PUBKEY(pkey, &der);

	if (len <= 0) {
		ferry_tls_log("encoding the public key");
		return -EIO;
	}
	EVP_Digest(der, (size_t)len, md, NULL, EVP_sha256(), NULL);
	OPENSSL_free(der);
	EVP_EncodeBlock(b64, md, sizeof md);
	snprintf(pin, 128, "sha256//%s", b64);
	return 0;
}

static X509 *
self_signed(EVP_PKEY *pkey)
{
	X509 *x = X509_new();
	X509_NAME *name;
	unsigned char serial[16];
	BIGNUM *bn = NULL;

	if (!x || RAND_bytes(serial, sizeof serial) != 1)
		goto fail;
	serial[0] &= 0x7f;	/* positive */
	bn = BN_bin2bn(serial, sizeof serial, NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		goto fail;
	BN_free(bn);
	bn = NULL;
	if (!X509_set_version(x, 2) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400) ||
	    !X509_set_pubkey(x, pkey))
		goto fail;
	name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					(const unsigned char *)"ferry",
					-1, -1, 0) ||
	    !X509_set_issuer_name(x, name) ||
	    !X509_sign(x, pkey, EVP_sha256()))
		goto fail;
	return x;
fail:
	BN_free(bn);
	X509_free(x);
	return NULL;
}

int
ferry_tls_server_ctx(const char *certfile, const char *keyfile, SSL_CTX **out,
	       char pin[128])
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *pkey = NULL;
	X509 *x = NULL;

	if (!ctx) {
		ferry_tls_log("SSL_CTX_new");
		return -ENOMEM;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	/* ferry's clients resume little; no tickets keeps keys off disk. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(ctx, 0);

	if (certfile) {
		if (SSL_CTX_use_certificate_chain_file(ctx, certfile) != 1) {
			ferry_tls_log(certfile);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, keyfile,
						SSL_FILETYPE_PEM) != 1) {
			ferry_tls_log(keyfile);
			goto fail;
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			ferry_error("%s does not match %s", keyfile, certfile);
			goto fail;
		}
		pkey = X509_get_pubkey(SSL_CTX_get0_certificate(ctx));
	} else {
		pkey = EVP_EC_gen("P-256");
		if (!pkey) {
			ferry_tls_log("generating a key");
			goto fail;
		}
		x = self_signed(pkey);
		if (!x) {
			ferry_tls_log("making a self-signed certificate");
			goto fail;
		}
		if (SSL_CTX_use_certificate(ctx, x) != 1 ||
		    SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
			ferry_tls_log("installing the certificate");
			goto fail;
		}
	}
	if (!pkey || ferry_tls_pin(pkey, pin) < 0)
		goto fail;
	EVP_PKEY_free(pkey);
	X509_free(x);
	*out = ctx;
	return 0;
fail:
	EVP_PKEY_free(pkey);
	X509_free(x);
	SSL_CTX_free(ctx);
	return -EINVAL;
}

/* Write @pem_write's output to @path through a temporary file, mode 0600. */
static int
write_pem(const char *path, int (*pem_write)(FILE *, void *), void *obj)
{
	char tmp[4200];
	FILE *f;
	int fd;

	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		ferry_error("%s: %m", tmp);
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	if (!pem_write(f, obj) || fflush(f) != 0 || fsync(fd) != 0) {
		ferry_error("%s: cannot write", tmp);
		fclose(f);
		unlink(tmp);
		return -EIO;
	}
	fclose(f);
	if (rename(tmp, path) < 0) {
		ferry_error("%s: %m", path);
		unlink(tmp);
		return -EIO;
	}
	return 0;
}

static int
write_key(FILE *f, void *pkey)
{
	return PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL);
}

static int
write_cert(FILE *f, void *x)
{
	return PEM_write_X509(f, x);
}

int
ferry_tls_keep_files(const char *certfile, const char *keyfile)
{
	EVP_PKEY *pkey;
	X509 *x;
	int r;

	if (access(certfile, R_OK) == 0 && access(keyfile, R_OK) == 0)
		return 0;
	pkey = EVP_EC_gen("P-256");
	x = pkey ? self_signed(pkey) : NULL;
	if (!x) {
		ferry_tls_log("making a key and certificate");
		EVP_PKEY_free(pkey);
		return -EIO;
	}
	/* The key first: a certificate alone is never taken for a pair. */
	r = write_pem(keyfile, write_key, pkey);
	if (r == 0)
		r = write_pem(certfile, write_cert, x);
	if (r == 0)
		ferry_info("made a new key %s and certificate %s", keyfile,
			   certfile);
	EVP_PKEY_free(pkey);
	X509_free(x);
	return r;
}

int
ferry_tls_client_ctx(SSL_CTX **out)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx) {
		ferry_tls_log("SSL_CTX_new");
		return -ENOMEM;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	/* Self-signed peers: trust is the pin, checked after the handshake
	 * (ferry_tls_peer_pin), not a CA or a name. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	*out = ctx;
	return 0;
}

int
ferry_tls_peer_pin(SSL *ssl, char pin[128])
{
	X509 *x = SSL_get1_peer_certificate(ssl);
	EVP_PKEY *pkey = x ? X509_get_pubkey(x) : NULL;
	int r = pkey ? ferry_tls_pin(pkey, pin) : -EPROTO;

	EVP_PKEY_free(pkey);
	X509_free(x);
	return r;
}

bool
ferry_tls_pin_equal(const char *a, const char *b)
{
	size_t n = strlen(a);

	return n == strlen(b) && CRYPTO_memcmp(a, b, n) == 0;
}

static int pin_idx = -1;
static pthread_once_t pin_once = PTHREAD_ONCE_INIT;

static void
pin_index_make(void)
{
	pin_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* The peer's certificate is self-signed: what counts is that its key is
 * the pinned one. Chains (depth > 0) are not looked at. */
static int
verify_pin(int preverify, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs,
				SSL_get_ex_data_X509_STORE_CTX_idx());
	const char *want = ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl),
						     pin_idx) : NULL;
	X509 *x = X509_STORE_CTX_get_current_cert(xs);
	EVP_PKEY *pkey;
	char pin[128];
	bool ok;

	(void)preverify;
	if (X509_STORE_CTX_get_error_depth(xs) > 0)
		return 1;
	pkey = x ? X509_get_pubkey(x) : NULL;
	ok = want && pkey && ferry_tls_pin(pkey, pin) == 0 &&
	     ferry_tls_pin_equal(pin, want);
	EVP_PKEY_free(pkey);
	if (!ok)
		ferry_error("a client's key is not the pinned %s: refused",
			    want ? want : "?");
	return ok;
}

int
ferry_tls_require_client_pin(SSL_CTX *ctx, const char *pin)
{
	char *copy = strdup(pin);

	pthread_once(&pin_once, pin_index_make);
	if (!copy || pin_idx < 0 || !SSL_CTX_set_ex_data(ctx, pin_idx, copy)) {
		free(copy);
		return -ENOMEM;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
			   SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_pin);
	return 0;
}
