/* ferry-export — TLS context, certificate generation and key pin. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "tools/export/export.h"

static void
log_ssl(const char *what)
{
	char buf[256];
	unsigned long e = ERR_get_error();

	ERR_error_string_n(e, buf, sizeof buf);
	ferry_error("%s: %s", what, e ? buf : "unknown TLS error");
	ERR_clear_error();
}

/* The pin curl checks: base64(SHA-256(DER SubjectPublicKeyInfo)). */
static int
make_pin(EVP_PKEY *pkey, char pin[128])
{
	unsigned char *der = NULL, md[32];
	unsigned char b64[64];
	int len = i2d_PUBKEY(pkey, &der);

	if (len <= 0) {
		log_ssl("encoding the public key");
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
					(const unsigned char *)"ferry-export",
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
tls_server_ctx(const char *certfile, const char *keyfile, SSL_CTX **out,
	       char pin[128])
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *pkey = NULL;
	X509 *x = NULL;

	if (!ctx) {
		log_ssl("SSL_CTX_new");
		return -ENOMEM;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	/* ferry's clients resume little; no tickets keeps keys off disk. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(ctx, 0);

	if (certfile) {
		if (SSL_CTX_use_certificate_chain_file(ctx, certfile) != 1) {
			log_ssl(certfile);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, keyfile,
						SSL_FILETYPE_PEM) != 1) {
			log_ssl(keyfile);
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
			log_ssl("generating a key");
			goto fail;
		}
		x = self_signed(pkey);
		if (!x) {
			log_ssl("making a self-signed certificate");
			goto fail;
		}
		if (SSL_CTX_use_certificate(ctx, x) != 1 ||
		    SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
			log_ssl("installing the certificate");
			goto fail;
		}
	}
	if (!pkey || make_pin(pkey, pin) < 0)
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
