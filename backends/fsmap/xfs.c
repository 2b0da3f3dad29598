/* ferry — XFS: free space from each allocation group's by-block btree.
 *
 * Layout (xfsprogs' libxfs/xfs_format.h): the superblock at 0 gives the
 * block size, the number and size of allocation groups (AGs); each AG's
 * second sector holds its AGF, with the root and height of the free-space
 * btree sorted by block number (bnobt). Its leaves are (start, length)
 * records of free extents; everything else is used: superblocks, AG
 * headers, the AG free list (AGFL), inodes, the internal log, data.
 * Short-form btree blocks have a 16-byte header (v4) or 56 bytes with a
 * CRC, the disk address and the owning AG (v5), checked here. The sum of
 * an AG's records must equal the AGF's free block count: a tree that does
 * not add up is damaged, and the volume stays data.
 *
 * An XFS that was not cleanly unmounted (it crashed, or it is mounted
 * where we cannot see it) may hold allocations in its log that the btrees
 * on disk do not show yet: such a volume stays data. Clean means the last
 * record of the internal log is an unmount record (found as xfsprogs'
 * xlog_find_head does: the first block of each 512-byte log block carries
 * its cycle number, which drops by one at the head), and the superblock's
 * free block count, written at unmount, equals the AGs' (free, AGFL and
 * btree blocks, as xfs_repair counts them).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backends/fsmap/fsmap.h"
#include "common/util.h"

#define XFS_SB_MAGIC	0x58465342u	/* XFSB */
#define XFS_AGF_MAGIC	0x58414746u	/* XAGF */
#define XFS_ABTB_MAGIC	0x41425442u	/* ABTB, v4 bnobt */
#define XFS_ABTB3_MAGIC	0x41423342u	/* AB3B, v5 bnobt */
#define NULLAGBLOCK	0xffffffffu
#define MAX_LEVELS	9
#define XLOG_MAGIC	0xfeedbabeu	/* a log record's header */
#define XLOG_UNMOUNT	0x20		/* op header flag: unmount record */
#define XLOG_BB		512u
#define XLOG_WINDOW	(2u << 20)	/* in-flight log buffers at most */
#define XLOG_CYCLE_SIZE	32768u		/* data bytes one header covers */

struct xfs {
	const struct fsmap_vol *v;
	uint32_t bsize, sectsize, agblocks, agcount;
	uint64_t dblocks;
	uint64_t ag_free;	/* the AGFs' free, AGFL and btree blocks */
	bool crc;		/* v5 */
	unsigned hdr;		/* btree block header bytes */
	uint8_t *blk;
};

static uint16_t
be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Read block @agbno of AG @ag and check its btree header. */
static int
read_btree_block(struct xfs *x, uint32_t ag, uint32_t agbno, unsigned level,
		 char *why, size_t whylen)
{
	uint64_t daddr = ((uint64_t)ag * x->agblocks + agbno) * x->bsize;
	int r = x->v->read(x->v->ctx, daddr, x->blk, x->bsize);

	if (r < 0)
		return r;
	if (ferry_be32(x->blk) != (x->crc ? XFS_ABTB3_MAGIC : XFS_ABTB_MAGIC) ||
	    be16(x->blk + 4) != level)
		return fsmap_fail(why, whylen, -EINVAL, "AG %u block %u: not a "
				  "free-space btree block of level %u", ag,
				  agbno, level);
	if (x->crc && (ferry_be64(x->blk + 16) != daddr / 512 ||
		       ferry_be32(x->blk + 48) != ag))
		return fsmap_fail(why, whylen, -EINVAL, "AG %u block %u: btree "
				  "block of another place", ag, agbno);
	return 0;
}

static int
map_ag(struct xfs *x, uint32_t ag, struct ferry_extents *fr, char *why,
       size_t whylen)
{
	uint64_t agstart = (uint64_t)ag * x->agblocks, free_blocks = 0;
	uint32_t aglen = (uint32_t)FERRY_MIN((uint64_t)x->agblocks,
					     x->dblocks - agstart);
	uint32_t agbno, levels, next_min = 0, visited = 0;
	uint8_t agf[512];
	int r;

	r = x->v->read(x->v->ctx, agstart * x->bsize + x->sectsize, agf,
		       sizeof agf);
	if (r < 0)
		return r;
	levels = ferry_be32(agf + 28);
	agbno = ferry_be32(agf + 16);
	if (ferry_be32(agf) != XFS_AGF_MAGIC || ferry_be32(agf + 8) != ag ||
	    ferry_be32(agf + 12) != aglen || levels < 1 ||
	    levels > MAX_LEVELS || agbno >= aglen)
		return fsmap_fail(why, whylen, -EINVAL, "AG %u: bad AGF", ag);
	/* Down the leftmost path to the first leaf. */
	for (unsigned level = levels - 1; level > 0; level--) {
		unsigned maxrecs = (x->bsize - x->hdr) / 12;

		r = read_btree_block(x, ag, agbno, level, why, whylen);
		if (r < 0)
			return r;
		if (be16(x->blk + 6) == 0 || be16(x->blk + 6) > maxrecs)
			return fsmap_fail(why, whylen, -EINVAL, "AG %u block "
					  "%u: bad record count", ag, agbno);
		agbno = ferry_be32(x->blk + x->hdr + maxrecs * 8);
		if (agbno >= aglen)
			return fsmap_fail(why, whylen, -EINVAL, "AG %u: btree "
					  "pointer %u outside the AG", ag,
					  agbno);
	}
	/* Along the leaves, left to right. */
	while (agbno != NULLAGBLOCK) {
		unsigned n, maxrecs = (x->bsize - x->hdr) / 8;

		if (agbno >= aglen || ++visited > aglen)
			return fsmap_fail(why, whylen, -EINVAL, "AG %u: btree "
					  "sibling %u outside the AG or "
					  "looping", ag, agbno);
		r = read_btree_block(x, ag, agbno, 0, why, whylen);
		if (r < 0)
			return r;
		n = be16(x->blk + 6);
		if (n > maxrecs)
			return fsmap_fail(why, whylen, -EINVAL, "AG %u block "
					  "%u: bad record count", ag, agbno);
		for (unsigned i = 0; i < n; i++) {
			const uint8_t *rec = x->blk + x->hdr + i * 8;
			uint32_t start = ferry_be32(rec), len = ferry_be32(rec + 4);

			if (len == 0 || start < next_min || start >= aglen ||
			    len > aglen - start)
				return fsmap_fail(why, whylen, -EINVAL, "AG %u: "
						  "free extent %u+%u out of "
						  "order or outside the AG",
						  ag, start, len);
			next_min = start + len;
			free_blocks += len;
			r = fsmap_add_free(fr, (agstart + start) * x->bsize,
					   (uint64_t)len * x->bsize);
			if (r < 0)
				return r;
		}
		agbno = ferry_be32(x->blk + 12);
	}
	if (free_blocks != ferry_be32(agf + 52))
		return fsmap_fail(why, whylen, -EINVAL, "AG %u: the free-space "
				  "btree holds %llu blocks, the AGF says %u",
				  ag, (unsigned long long)free_blocks,
				  ferry_be32(agf + 52));
	x->ag_free += free_blocks + ferry_be32(agf + 48) + ferry_be32(agf + 60);
	return 0;
}

/* The cycle number of log block @i, at @off: a record header keeps it in
 * h_cycle, any other block in its first word. */
static int
log_cycle(struct xfs *x, uint64_t off, uint64_t i, uint32_t *cycle)
{
	uint8_t b[8];
	int r = x->v->read(x->v->ctx, off + i * XLOG_BB, b, sizeof b);

	if (r < 0)
		return r;
	*cycle = ferry_be32(b) == XLOG_MAGIC ? ferry_be32(b + 4) : ferry_be32(b);
	return 0;
}

/* Is the internal log clean? @return 0 if its last record is an unmount
 * record, -EINVAL (with a reason) if not or if it cannot tell. */
static int
log_clean(struct xfs *x, const uint8_t *sb, char *why, size_t whylen)
{
	uint64_t logstart = ferry_be64(sb + 48), off, nbb, lo, hi, head, rec;
	uint32_t logblocks = ferry_be32(sb + 96), c0, c, agno, agbno;
	unsigned agblklog = sb[124];
	uint8_t *buf = NULL, h[XLOG_BB];
	size_t n;
	int r;

	if (logstart == 0)
		return fsmap_fail(why, whylen, -ENOTSUP, "an external log, "
				  "which cannot be checked");
	agno = agblklog < 32 ? (uint32_t)(logstart >> agblklog) : 0;
	agbno = agblklog < 32 ? (uint32_t)(logstart &
					   ((UINT64_C(1) << agblklog) - 1)) : 0;
	nbb = (uint64_t)logblocks * x->bsize / XLOG_BB;
	off = ((uint64_t)agno * x->agblocks + agbno) * x->bsize;
	if (agblklog >= 32 || agno >= x->agcount || agbno >= x->agblocks ||
	    nbb < 2 || off > x->v->size || nbb * XLOG_BB > x->v->size - off)
		return fsmap_fail(why, whylen, -EINVAL, "bad log place");
	/* The head: the first block whose cycle is not the first block's. */
	if ((r = log_cycle(x, off, 0, &c0)) < 0 ||
	    (r = log_cycle(x, off, nbb - 1, &c)) < 0)
		return r;
	if (c0 == 0 || (c != c0 && c != c0 - 1))
		return fsmap_fail(why, whylen, -EINVAL, "log cycles %u and %u "
				  "do not make a log", c0, c);
	head = nbb;
	if (c != c0) {
		for (lo = 0, hi = nbb - 1; hi - lo > 1;) {
			uint64_t mid = lo + (hi - lo) / 2;

			if ((r = log_cycle(x, off, mid, &c)) < 0)
				return r;
			if (c == c0)
				lo = mid;
			else
				hi = mid;
		}
		head = hi;
		/* Log buffers may land out of order: after the head, a
		 * window of them must all be of the older cycle. */
		n = (size_t)FERRY_MIN((uint64_t)XLOG_WINDOW,
				      (nbb - head) * XLOG_BB);
		buf = malloc(n);
		if (!buf)
			return -ENOMEM;
		r = x->v->read(x->v->ctx, off + head * XLOG_BB, buf, n);
		for (size_t i = 0; r == 0 && i < n; i += XLOG_BB) {
			c = ferry_be32(buf + i) == XLOG_MAGIC ?
			    ferry_be32(buf + i + 4) : ferry_be32(buf + i);
			if (c == c0)
				r = fsmap_fail(why, whylen, -EINVAL, "log "
					       "blocks past its head");
		}
		free(buf);
		if (r < 0)
			return r;
	}
	/* The last record, just before the head: one header block (a
	 * v2 log with big buffers: one per 32 KiB), its data, and no more;
	 * one op, the unmount record. */
	for (rec = head; rec-- > 0 && head - rec <= 64;) {
		if ((r = x->v->read(x->v->ctx, off + rec * XLOG_BB, h,
				    sizeof h)) < 0)
			return r;
		if (ferry_be32(h) == XLOG_MAGIC && ferry_be32(h + 4) == c0) {
			uint32_t len = ferry_be32(h + 12);
			uint32_t hsize = ferry_be32(h + 320);
			uint64_t hdrs = (ferry_be32(h + 8) & 2) &&
					hsize > XLOG_CYCLE_SIZE ?
					(hsize + XLOG_CYCLE_SIZE - 1) /
					XLOG_CYCLE_SIZE : 1;
			uint8_t op[XLOG_BB];

			if (rec + hdrs + (len + XLOG_BB - 1) / XLOG_BB != head ||
			    ferry_be32(h + 40) != 1 || len < 12)
				break;
			if ((r = x->v->read(x->v->ctx, off + (rec + hdrs) *
					    XLOG_BB, op, sizeof op)) < 0)
				return r;
			if (op[9] & XLOG_UNMOUNT)
				return 0;
			break;
		}
	}
	return fsmap_fail(why, whylen, -EINVAL, "the log is not clean (the "
			  "filesystem crashed, or is mounted where this "
			  "cannot be seen): it may hold allocations");
}

static int
xfs_free(const struct fsmap_vol *v, struct ferry_extents *fr, char *why,
	 size_t whylen)
{
	uint8_t sb[512];
	struct xfs x = { .v = v };
	unsigned version;
	int r;

	if (v->size < sizeof sb)
		return fsmap_fail(why, whylen, -EINVAL, "too small");
	r = v->read(v->ctx, 0, sb, sizeof sb);
	if (r < 0)
		return r;
	x.bsize = ferry_be32(sb + 4);
	x.dblocks = ferry_be64(sb + 8);
	x.agblocks = ferry_be32(sb + 84);
	x.agcount = ferry_be32(sb + 88);
	x.sectsize = be16(sb + 102);
	version = be16(sb + 100) & 0xf;
	if (ferry_be32(sb) != XFS_SB_MAGIC || (version != 4 && version != 5) ||
	    x.bsize < 512 || x.bsize > 65536 || (x.bsize & (x.bsize - 1)) ||
	    x.sectsize < 512 || x.sectsize > x.bsize ||
	    (x.sectsize & (x.sectsize - 1)) || x.agblocks < 8 ||
	    x.agcount == 0 || x.dblocks == 0 ||
	    x.dblocks > (uint64_t)x.agblocks * x.agcount ||
	    x.dblocks <= (uint64_t)x.agblocks * (x.agcount - 1))
		return fsmap_fail(why, whylen, -EINVAL, "not a valid XFS "
				  "superblock");
	if (sb[126])
		return fsmap_fail(why, whylen, -EINVAL, "mkfs.xfs did not "
				  "finish (sb_inprogress)");
	if (x.dblocks > v->size / x.bsize)
		return fsmap_fail(why, whylen, -EINVAL, "%llu blocks of %u "
				  "bytes do not fit in the volume",
				  (unsigned long long)x.dblocks, x.bsize);
	x.crc = version == 5;
	x.hdr = x.crc ? 56 : 16;
	r = log_clean(&x, sb, why, whylen);
	if (r < 0)
		return r;
	x.blk = malloc(x.bsize);
	if (!x.blk)
		return -ENOMEM;
	for (uint32_t ag = 0; r == 0 && ag < x.agcount; ag++)
		r = map_ag(&x, ag, fr, why, whylen);
	free(x.blk);
	if (r == 0 && x.ag_free != ferry_be64(sb + 144))
		r = fsmap_fail(why, whylen, -EINVAL, "not cleanly unmounted: "
			       "the superblock counts %llu free blocks, the "
			       "AGs %llu", (unsigned long long)ferry_be64(sb + 144),
			       (unsigned long long)x.ag_free);
	return r;
}

const struct fsmap_fs fsmap_xfs = { .name = "xfs", .free = xfs_free };
