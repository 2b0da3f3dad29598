/* ferry — per-chunk digests: XXH3-128 of each chunk's bytes, holes read
 * as zeros, so a digest names a chunk's content whatever the extent map.
 *
 * Why XXH3-128: it hashes at memory speed (tens of GB/s a core), so
 * checking every chunk costs next to nothing beside TLS; 128 bits make an
 * accidental match of a changed or corrupted chunk impossible in practice.
 * It is not a defence against a forger: the stream is authenticated by
 * TLS and the key pin; digests catch what TLS cannot see (a bug, a bad
 * disk or memory on either side, a source that changed). SHA-256 is for
 * whole-disk forensic hashes (ferry-convert --verify).
 */
#ifndef FERRY_DIGEST_H
#define FERRY_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FERRY_DIGEST_NAME "xxh3-128"
#define FERRY_DIGEST_HEX 32

struct ferry_digest {
	uint8_t b[16];		/* XXH128 canonical (big-endian) form */
};

/* A digest computed piece by piece. */
struct ferry_hasher {
	void *state;		/* XXH3_state_t */
};

/*! ferry_hasher_init() : @return 0 or -ENOMEM. */
int ferry_hasher_init(struct ferry_hasher *h);
void ferry_hasher_reset(struct ferry_hasher *h);
void ferry_hasher_update(struct ferry_hasher *h, const void *buf, size_t len);
/*! ferry_hasher_zeros() : feed @len zero bytes (a hole). */
void ferry_hasher_zeros(struct ferry_hasher *h, uint64_t len);
void ferry_hasher_final(struct ferry_hasher *h, struct ferry_digest *out);
void ferry_hasher_free(struct ferry_hasher *h);

/*! ferry_digest_of() : the digest of @len bytes at @buf, in one call. */
void ferry_digest_of(const void *buf, size_t len, struct ferry_digest *out);

/*! ferry_digest_equal() */
bool ferry_digest_equal(const struct ferry_digest *a,
			const struct ferry_digest *b);

/*! ferry_digest_hex() : 32 lowercase hex digits + NUL into @out. */
void ferry_digest_hex(const struct ferry_digest *d, char out[33]);

/*! ferry_digests_from_json() :
 * Parse a digests reply, {"algorithm":"xxh3-128","chunk":C,"first":F,
 * "digests":["32 hex",...]}, that must answer exactly @count digests of
 * @chunk-byte chunks from chunk @first, into @out.
 * @return 0, or -EPROTO with the reason in @why. */
int ferry_digests_from_json(const char *text, size_t len, uint64_t chunk,
			    uint64_t first, size_t count,
			    struct ferry_digest *out, char *why, size_t whylen);

/* In-band digests (doc/protocol.md): a data request with "Ferry-Digests:
 * BLOCK" gets, in the reply's headers, the digests of the BLOCK-byte
 * blocks its range touches, as "Ferry-Digests: xxh3-128 BLOCK FIRST
 * HEX,HEX,..." (FIRST: the first block's number). At most this many. */
#define FERRY_DIGESTS_INBAND_MAX 64
/* ... of blocks of at most this many bytes (a multiple of 4096). */
#define FERRY_DIGESTS_BLOCK_MAX (1u << 20)

/*! ferry_digests_header() : that header's value for @n digests of @block
 * bytes from block @first, into @out of @cap bytes.
 * @return its length, or -ENOSPC. */
int ferry_digests_header(char *out, size_t cap, uint64_t block, uint64_t first,
			 const struct ferry_digest *dg, size_t n);

/*! ferry_digests_from_header() : parse such a value (@len bytes, maybe
 * ending in white space), which must give exactly @count digests of
 * @block-byte blocks from block @first, into @out.
 * @return 0, or -EPROTO with the reason in @why. */
int ferry_digests_from_header(const char *v, size_t len, uint64_t block,
			      uint64_t first, size_t count,
			      struct ferry_digest *out, char *why,
			      size_t whylen);

#endif
