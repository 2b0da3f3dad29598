/* ferry — zstd frames that need no compressor: raw and RLE.
 *
 * ferry-export sends a zstd body as one frame per piece. Data that does
 * not shrink goes in a raw frame (its bytes as they are, 12 bytes of
 * framing per 128 KiB) and a run of one byte value (zeros) in an RLE frame
 * (a few bytes for any length), so neither costs a compression attempt.
 * Both are plain zstd (RFC 8878): any decoder, `curl --compressed` or
 * `zstd -d` included, reads them.
 */
#ifndef FERRY_ZFRAME_H
#define FERRY_ZFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*! ferry_zframe_bound() : largest frame made for @n bytes. */
size_t ferry_zframe_bound(size_t n);

/*! ferry_zframe_raw() : @n bytes of @in as a frame of raw blocks, written
 * to @out (ferry_zframe_bound(n) bytes). @return the frame's size. */
size_t ferry_zframe_raw(uint8_t *out, const void *in, size_t n);

/*! ferry_zframe_rle() : @n copies of @byte as a frame of RLE blocks.
 * @return the frame's size. */
size_t ferry_zframe_rle(uint8_t *out, uint8_t byte, size_t n);

/*! ferry_is_zero() : are all @n bytes of @p zero? */
bool ferry_is_zero(const void *p, size_t n);

#endif
