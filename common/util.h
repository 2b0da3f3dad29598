/* ferry — small pure helpers. */
#ifndef FERRY_UTIL_H
#define FERRY_UTIL_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#define FERRY_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FERRY_MAX(a, b) ((a) > (b) ? (a) : (b))

/*! ferry_parse_size() :
 * Parse "4096", "64K", "1M", "2G", "1T" (binary multiples, optional "i"/"B":
 * "64KiB", "1MB"). Rejects empty, negative, trailing junk and overflow.
 * @return 0 and *out, or -EINVAL / -ERANGE. */
int ferry_parse_size(const char *s, uint64_t *out);

/*! ferry_parse_duration() :
 * Parse seconds: "30", "1.5", "30s", "5m", "2h". Rejects empty, negative,
 * trailing junk and more than ten years.
 * @return 0 and *out, or -EINVAL. */
int ferry_parse_duration(const char *s, double *out);

/*! ferry_format_size() : "1.5 GiB"-style text of n into buf. @return buf. */
char *ferry_format_size(uint64_t n, char *buf, size_t len);

/*! ferry_hex() : lowercase hex of len bytes into out (2*len+1 bytes). */
void ferry_hex(const void *in, size_t len, char *out);

/*! ferry_random_token() : 32 random bytes as 64 hex chars into out[65].
 * @return 0 or -EIO if the CSPRNG failed. */
int ferry_random_token(char out[65]);

/*! ferry_accepts_coding() : does an Accept-Encoding header value @h
 * (NULL: none) name @coding with a weight above 0? ("gzip, zstd;q=0.5")
 * Only an explicit name counts, not "*". */
bool ferry_accepts_coding(const char *h, const char *coding);

/*! ferry_if_match() : does an If-Match header value @h ("*", or a list of
 * quoted entity tags) match the strong tag "@tag"? Weak tags (W/"...")
 * never match (RFC 9110: If-Match compares strongly). */
bool ferry_if_match(const char *h, const char *tag);

/*! ferry_parse_range() :
 * An HTTP Range header value: "bytes=A-B", "bytes=A-" or "bytes=-N", one
 * range only, against a disk of @size bytes; the end is clipped to the disk.
 * @return 0 with [*off, *off + *len), -EINVAL if malformed, -ERANGE if it
 * does not overlap the disk (416). */
int ferry_parse_range(const char *h, uint64_t size, uint64_t *off,
		      uint64_t *len);

/*! ferry_pwrite_all() : write all @len bytes at @off, retrying short
 * writes and EINTR. @return 0 or -errno. */
int ferry_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

/* Big-endian loads, for the parsers of image formats. */
static inline uint32_t
ferry_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t
ferry_be64(const uint8_t *p)
{
	return (uint64_t)ferry_be32(p) << 32 | ferry_be32(p + 4);
}

/*! ferry_now() : monotonic seconds. */
double ferry_now(void);

#endif
