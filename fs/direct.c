/* ferryfs — small cold reads answered without waiting for their chunks.
 *
 * A random 4 KiB read of a chunk not yet cached would otherwise wait for
 * the whole chunk (1 MiB: 40 ms at 200 Mbit/s, where the read's own bytes
 * take 0.2 ms). Inspection before cutover (debugfs, virt-inspector,
 * mounting a partition view) and booting from a view are runs of such
 * reads. So a read that is small (-o smallread=, default 256K), not the
 * continuation of a sequential reader, and touches a chunk not cached, is
 * answered from memory: the 4 KiB blocks holding its disk ranges are
 * fetched straight from the source (their data ranges only; holes are
 * zeros), checked against the source's digests of those blocks when the
 * disk is verified, and copied to the reply. A ferry-export sends those
 * digests in the data reply's headers (doc/protocol.md), so a small read
 * is one request; from a source that does not, they are a second one.
 *
 * Nothing of it is written to the cache: the presence map keeps meaning
 * "these whole chunks are in the file and matched their digests", and a
 * hydration run racing with the read never sees its bytes. Its chunks are
 * then queued for the background workers (sched.later, whatever -o
 * prefetch= says), which fetch them whole, checked, as any chunk, once
 * readers have been quiet for a moment: the asked blocks first, the rest
 * of the chunk after, a few KiB crossing twice. (Fetched at once, each
 * chunk held the link while the next small read came: p99 of back-to-back
 * random reads 2.3 ms instead of 0.8 on loopback, 30 ms on 200 Mbit/s.)
 *
 * While the fetch is on the wire it counts as foreground work, so
 * background transfers pause as they do for a demand chunk. A block whose
 * bytes differ from its digest is not served: the read falls back to the
 * chunk path, which fetches, checks and retries as always.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "fs/ferryfs.h"

#define BLOCK 4096u		/* fetch and digest unit */
#define FIRST_MAX (64u << 10)	/* a file's first read, at most */

static uint64_t
round_block(uint64_t x)
{
	return (x + BLOCK - 1) / BLOCK * BLOCK;
}

struct dsink {
	struct ferryfs *fs;
	struct fdisk *d;
	uint8_t *buf;		/* the span's bytes, from @base */
	uint64_t base, end;
	/* The digests of the span's blocks, as they came in the replies'
	 * headers (bit i of @have: block i's); at most 64 blocks. */
	struct ferry_digest *want;
	size_t nblk;
	uint64_t have;
};

static int
dsink_data(void *arg, uint64_t off, const void *buf, size_t len)
{
	struct dsink *k = arg;

	if (off < k->base || off + len > k->end)
		return -EIO;	/* the backend checks ranges; never here */
	memcpy(k->buf + (off - k->base), buf, len);
	k->d->received += len;
	k->d->small_bytes += len;
	return 0;
}

static int
dsink_wire(void *arg, size_t n)
{
	struct dsink *k = arg;

	k->d->wire += n;
	/* Counted against -o bwlimit=, which the background then pays, but
	 * never waited for: a small read waiting out the debt of a
	 * hydration stream took 40-66 ms under bwlimit=200M on loopback. */
	ferry_bucket_take(&k->fs->bucket, n, ferry_now());
	return k->fs->stop ? -ECANCELED : 0;
}

static void
dsink_digests(void *arg, uint64_t first, const struct ferry_digest *dg,
	      size_t n)
{
	struct dsink *k = arg;
	uint64_t b0 = k->base / BLOCK;

	for (size_t i = 0; i < n; i++)
		if (first + i >= b0 && first + i < b0 + k->nblk) {
			k->want[first + i - b0] = dg[i];
			k->have |= 1ull << (first + i - b0);
		}
}

/* Fetch and check the blocks [a, b) (BLOCK-aligned, inside the disk but
 * for the last) into @buf: their data ranges by @map, holes as zeros. The
 * digests come with the data when the exporter sends them in-band, else
 * by a request of their own. */
static int
fetch_span(struct ferryfs *fs, struct fdisk *d, const struct ferry_extents *map,
	   uint64_t a, uint64_t b, uint8_t *buf)
{
	size_t nblk = (size_t)((b - a + BLOCK - 1) / BLOCK);
	struct ferry_digest small[FERRY_DIGESTS_INBAND_MAX], *want = small;
	struct dsink k = { fs, d, buf, a, b, want, nblk, 0 };
	struct ferry_sink sink = { .data = dsink_data, .wire = dsink_wire,
				   .arg = &k, .plain = true };
	struct ferry_hasher h;
	int r = 0;

	if (d->verify && nblk <= FERRY_DIGESTS_INBAND_MAX) {
		sink.digest_block = BLOCK;
		sink.digests = dsink_digests;
	}
	memset(buf, 0, b - a);
	for (size_t i = ferry_extents_find(map, a); r == 0 && i < map->n;
	     i++) {
		uint64_t x = FERRY_MAX(map->v[i].off, a);
		uint64_t y = FERRY_MIN(map->v[i].off + map->v[i].len, b);

		if (map->v[i].off >= b)
			break;
		if (y > x)
			r = ferry_source_read(fs->src, d->idx, x, y - x, &sink);
	}
	if (r < 0 || !d->verify)
		return r;
	if (!sink.digest_block || k.have != (nblk == 64 ? UINT64_MAX :
					     (1ull << nblk) - 1)) {
		if (nblk > FERRY_DIGESTS_INBAND_MAX &&
		    !(want = calloc(nblk, sizeof *want)))
			return -ENOMEM;
		r = ferry_source_digests(fs->src, d->idx, BLOCK, a / BLOCK,
					 nblk, want);
	}
	if (r == 0 && (r = ferry_hasher_init(&h)) == 0) {
		for (size_t i = 0; r == 0 && i < nblk; i++) {
			uint64_t x = a + i * BLOCK, y = FERRY_MIN(x + BLOCK, b);
			struct ferry_digest got;

			ferry_hasher_reset(&h);
			ferry_hasher_update(&h, buf + (x - a), (size_t)(y - x));
			ferry_hasher_final(&h, &got);
			if (ferry_digest_equal(&got, &want[i]))
				continue;
			ferry_error("%s: block at %" PRIu64 " differs from "
				    "the source's digest; reading its chunk "
				    "instead", d->info.name, x);
			d->mismatches++;
			r = -EBADMSG;
		}
		ferry_hasher_free(&h);
	}
	if (want != small)
		free(want);
	return r;
}

int
fetch_direct(struct ferryfs *fs, struct fdisk *d,
	     const struct ferry_extents *map, const struct ferry_extent *rv,
	     size_t n, struct fetch_ra *ra, uint8_t **res)
{
	uint64_t span = 0, biggest = 0, total = 0;
	bool cold = false;
	uint8_t *buf, *out;
	int r = 0;

	if (fs->smallread == 0 || n == 0 || !ra)
		return 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t a = rv[i].off / BLOCK * BLOCK;
		uint64_t b = FERRY_MIN(round_block(rv[i].off + rv[i].len),
				       d->info.size);

		if (rv[i].len == 0 || rv[i].off + rv[i].len > d->info.size)
			return 0;
		span += b - a;
		total += rv[i].len;
		biggest = FERRY_MAX(biggest, b - a);
		if (span > fs->smallread)
			return 0;	/* (before looking at its chunks) */
		for (uint64_t c = rv[i].off / d->chunk;
		     c <= (rv[i].off + rv[i].len - 1) / d->chunk; c++) {
			if (ferry_bitmap_test(&d->present, c))
				continue;
			/* Kept from an earlier generation: most often
			 * still right, which the chunk path finds by its
			 * digest without fetching it. */
			if (ferry_bitmap_test(&d->candidate, c))
				return 0;
			cold = true;
		}
	}
	/* A file's first read of more than FIRST_MAX is most often a
	 * sequential reader starting (the kernel's first readahead): the
	 * chunk path, which it needs next anyway, rather than its bytes
	 * twice. */
	if (!cold || (span > FIRST_MAX && ra_first(ra)) ||
	    fetch_ra_follows(fs, d, ra, rv[0].off,
			     rv[n - 1].off + rv[n - 1].len))
		return 0;
	buf = malloc(biggest);
	*res = out = malloc(total);
	if (!buf || !out) {
		free(buf);
		free(out);
		*res = NULL;
		return -ENOMEM;
	}
	fetch_fg_enter(fs);
	for (size_t i = 0; i < n && r == 0; i++) {
		uint64_t a = rv[i].off / BLOCK * BLOCK;
		uint64_t b = FERRY_MIN(round_block(rv[i].off + rv[i].len),
				       d->info.size);

		r = fetch_span(fs, d, map, a, b, buf);
		if (r == 0) {
			memcpy(out, buf + (rv[i].off - a), rv[i].len);
			out += rv[i].len;
		}
	}
	fetch_fg_leave(fs);
	free(buf);
	if (r != -EBADMSG)	/* (a digest mismatch is not the link's) */
		fetch_note_result(d, r);
	if (r == 0) {
		d->small_reads++;
		for (size_t i = 0; i < n; i++)
			fetch_later(fs, d, rv[i].off, rv[i].len);
		return 1;
	}
	free(*res);
	*res = NULL;
	return r == -EBADMSG ? 0 : r;	/* the chunk path checks, retries */
}
