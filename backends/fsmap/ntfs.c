/* ferry — NTFS: free clusters from $Bitmap.
 *
 * Layout (the Linux-NTFS project's documentation, as ntfs-3g reads it):
 * the boot sector gives bytes per sector, sectors per cluster, the volume's
 * sectors and where the MFT starts. MFT record 6 is $Bitmap; its unnamed
 * $DATA attribute is non-resident, a run list of clusters holding one bit
 * per cluster of the volume, set when used. Records are protected by an
 * update sequence (the last two bytes of each sector moved to an array),
 * undone and checked here.
 *
 * Used: every cluster whose bit is set, and everything past the clusters
 * the bitmap covers, which includes the backup boot sector in the
 * partition's last sector. A $Bitmap described through an attribute list
 * (a volume too fragmented for one record) is not read: all data.
 *
 * $Bitmap is only as new as the last time the volume was shut down: after
 * a crash, or Windows' Fast Startup (a hibernated kernel), clusters the
 * journal allocated may not be in it yet. So a volume is all data when
 * $Volume (record 3) has its dirty flag set in $VOLUME_INFORMATION, or
 * when $LogFile (record 2) has a restart area with clients still in use
 * and no "clean" flag, as ntfs-3g judges it before mounting. An empty log
 * (all 0xff: mkntfs, or ntfs-3g's reset at unmount) is clean.
 * libntfs-3g would read it too, but needs a device of its own to mount
 * and brings a whole filesystem driver to read one file; this is 200 lines
 * over the read callback, fuzzed like the other parsers.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backends/fsmap/fsmap.h"
#include "common/util.h"

#define MFT_LOGFILE	2
#define MFT_VOLUME	3
#define MFT_BITMAP	6
#define AT_VOLUME_INFO	0x70u
#define AT_DATA		0x80u
#define AT_ATTR_LIST	0x20u
#define AT_END		0xffffffffu
#define RUNS_MAX	65536
#define BITMAP_READ	(1u << 20)
#define VOLUME_IS_DIRTY	0x0001u
#define RESTART_CLEAN	0x0002u
#define LOG_NO_CLIENT	0xffffu
#define RSTR_MAX	(64u << 10)	/* a restart page at most */

struct run {
	int64_t lcn;		/* -1: sparse */
	uint64_t len;		/* clusters */
};

/* Undo the update sequence of an MFT record of @size bytes. */
static int
fixup(uint8_t *rec, uint32_t size, uint32_t sector)
{
	uint16_t off = fsmap_le16(rec + 4), count = fsmap_le16(rec + 6);

	if (count < 2 || (uint32_t)(count - 1) * sector != size ||
	    off + count * 2u > size)
		return -EINVAL;
	for (uint16_t i = 1; i < count; i++) {
		uint8_t *end = rec + i * sector - 2;

		if (memcmp(end, rec + off, 2) != 0)
			return -EINVAL;	/* a torn write */
		memcpy(end, rec + off + i * 2, 2);
	}
	return 0;
}

/* The unnamed attribute of @type in MFT record @rec (fixed up), or NULL;
 * an attribute list met first sets *@list. */
static const uint8_t *
find_attr(const uint8_t *rec, uint32_t recsize, uint32_t type, bool *list)
{
	*list = false;
	for (uint32_t aoff = fsmap_le16(rec + 20); aoff + 16 <= recsize;) {
		const uint8_t *a = rec + aoff;
		uint32_t t = fsmap_le32(a), alen = fsmap_le32(a + 4);

		if (t == AT_END || alen < 16 || alen > recsize - aoff)
			return NULL;
		if (t == AT_ATTR_LIST) {
			*list = true;
			return NULL;
		}
		if (t == type && a[9] == 0)
			return a;
		aoff += alen;
	}
	return NULL;
}

/* The value of resident attribute @a of record @rec, at least @need bytes
 * of it, or NULL. */
static const uint8_t *
resident_value(const uint8_t *rec, uint32_t recsize, const uint8_t *a,
	       uint32_t need)
{
	uint32_t alen = fsmap_le32(a + 4), vlen, voff;

	if (a[8] != 0 || alen < 24)
		return NULL;
	vlen = fsmap_le32(a + 16);
	voff = fsmap_le16(a + 20);
	if (vlen < need || voff > alen || vlen > alen - voff ||
	    (size_t)(a - rec) + alen > recsize)
		return NULL;
	return a + voff;
}

/* Decode the run list at @p (up to @end) into @runs; @return the count or
 * -EINVAL. */
static int
decode_runs(const uint8_t *p, const uint8_t *end, struct run *runs)
{
	int64_t lcn = 0;
	int n = 0;

	while (p < end && *p) {
		unsigned lb = *p & 0xf, ob = *p >> 4;
		uint64_t len = 0;
		int64_t delta = 0;

		if (lb == 0 || lb > 8 || ob > 8 || p + 1 + lb + ob > end ||
		    n == RUNS_MAX)
			return -EINVAL;
		for (unsigned i = 0; i < lb; i++)
			len |= (uint64_t)p[1 + i] << (8 * i);
		for (unsigned i = 0; i < ob; i++)
			delta |= (int64_t)((uint64_t)p[1 + lb + i] << (8 * i));
		if (ob && ob < 8 && (p[lb + ob] & 0x80))	/* sign */
			delta |= (int64_t)(~UINT64_C(0) << (8 * ob));
		if (len == 0 || len > (UINT64_C(1) << 48))
			return -EINVAL;
		if (ob) {
			if ((delta > 0 && lcn > INT64_MAX - delta) ||
			    (delta < 0 && lcn < INT64_MIN - delta))
				return -EINVAL;
			lcn += delta;
			if (lcn < 0)
				return -EINVAL;
		}
		runs[n].lcn = ob ? lcn : -1;
		runs[n].len = len;
		n++;
		p += 1 + lb + ob;
	}
	return n;
}

/* Free runs of @bits (bit i: cluster @first + i) into @fr. */
static int
add_free_bits(struct ferry_extents *fr, const uint8_t *bits, uint64_t nbits,
	      uint64_t first, uint64_t csize, uint64_t *run, uint64_t *runlen)
{
	for (uint64_t i = 0; i < nbits; i++) {
		uint64_t c = first + i;
		int r;

		if (bits[i / 8] & (1u << (i % 8)))
			continue;
		if (*runlen && *run + *runlen == c) {
			(*runlen)++;
			continue;
		}
		if (*runlen && (r = fsmap_add_free(fr, *run * csize,
						   *runlen * csize)) < 0)
			return r;
		*run = c;
		*runlen = 1;
	}
	return 0;
}

/* MFT record @idx (from @mft, records of @recsize bytes) into @rec, its
 * update sequence undone; it is file @name's, for the reason given when
 * it is damaged. @return 0, -EINVAL (damaged, @why says so) or a read's
 * error. */
static int
read_record(const struct fsmap_vol *v, uint64_t mft, uint32_t recsize,
	    uint32_t bps, uint32_t idx, uint8_t *rec, const char *name,
	    char *why, size_t whylen)
{
	int r = v->read(v->ctx, mft + idx * (uint64_t)recsize, rec, recsize);

	if (r < 0)
		return r;
	if (memcmp(rec, "FILE", 4) != 0 || fixup(rec, recsize, bps) < 0)
		return fsmap_fail(why, whylen, -EINVAL, "MFT record of %s is "
				  "damaged", name);
	return 0;
}

/* Is the restart page @pg (@size bytes, fixed up) one whose area says the
 * log has nothing to replay? @return 1 clean, 0 not, -EINVAL damaged;
 * its current LSN into *@lsn. */
static int
restart_clean(uint8_t *pg, uint32_t size, uint64_t *lsn)
{
	uint16_t ro;

	if (memcmp(pg, "RSTR", 4) != 0 || fixup(pg, size, 512) < 0)
		return -EINVAL;
	ro = fsmap_le16(pg + 0x18);
	if (ro < 0x1e || ro > size - 16 || ro % 8)
		return -EINVAL;
	*lsn = fsmap_le64(pg + ro);
	return fsmap_le16(pg + ro + 0xc) == LOG_NO_CLIENT ||
	       (fsmap_le16(pg + ro + 0xe) & RESTART_CLEAN);
}

/* Was the volume shut down cleanly? Its dirty flag ($Volume) and its
 * journal's restart area ($LogFile, the newer of its two restart pages).
 * @return 0 if so, else -EINVAL with the reason (not clean, or records
 * that cannot be read) in @why, or a read's error. @rec and @runs are
 * buffers. */
static int
check_clean(const struct fsmap_vol *v, uint64_t mft, uint32_t recsize,
	    uint32_t bps, uint64_t csize, uint64_t clusters, uint8_t *rec,
	    struct run *runs, char *why, size_t whylen)
{
	const uint8_t *a, *val;
	uint8_t *pg = NULL;
	uint32_t psize;
	uint64_t lsn[2] = { 0, 0 }, at;
	int n, r, state[2];
	bool list;

	r = read_record(v, mft, recsize, bps, MFT_VOLUME, rec, "$Volume", why,
			whylen);
	if (r < 0)
		return r;
	a = find_attr(rec, recsize, AT_VOLUME_INFO, &list);
	val = a ? resident_value(rec, recsize, a, 12) : NULL;
	if (!val)
		return fsmap_fail(why, whylen, -EINVAL, "no volume information "
				  "in $Volume");
	if (fsmap_le16(val + 10) & VOLUME_IS_DIRTY)
		return fsmap_fail(why, whylen, -EINVAL, "the volume is dirty "
				  "(not shut down cleanly, or a check is due): "
				  "$Bitmap may lag its journal");

	r = read_record(v, mft, recsize, bps, MFT_LOGFILE, rec, "$LogFile",
			why, whylen);
	if (r < 0)
		return r;
	a = find_attr(rec, recsize, AT_DATA, &list);
	n = a && a[8] == 1 && fsmap_le32(a + 4) >= 64 &&
	    fsmap_le16(a + 32) < fsmap_le32(a + 4) ?
	    decode_runs(a + fsmap_le16(a + 32), a + fsmap_le32(a + 4), runs) :
	    -EINVAL;
	if (n <= 0 || runs[0].lcn < 0 || (uint64_t)runs[0].lcn >= clusters)
		return fsmap_fail(why, whylen, -EINVAL, "no run list in "
				  "$LogFile");
	at = (uint64_t)runs[0].lcn * csize;
	pg = malloc(RSTR_MAX);
	if (!pg)
		return -ENOMEM;
	r = v->read(v->ctx, at, pg, 512);
	if (r < 0)
		goto out;
	if (fsmap_le32(pg) == 0xffffffffu) {
		r = 0;		/* an empty log: nothing to replay */
		goto out;
	}
	psize = fsmap_le32(pg + 0x10);
	if (memcmp(pg, "RSTR", 4) != 0 || psize < 512 || psize > RSTR_MAX ||
	    (psize & (psize - 1)) || 2 * (uint64_t)psize > runs[0].len * csize) {
		r = fsmap_fail(why, whylen, -EINVAL, "$LogFile has no valid "
			       "restart page");
		goto out;
	}
	for (int k = 0; k < 2; k++) {
		r = v->read(v->ctx, at + (uint64_t)k * psize, pg, psize);
		if (r < 0)
			goto out;
		state[k] = restart_clean(pg, psize, &lsn[k]);
	}
	/* The newer valid page is the journal's word, as ntfs-3g takes it. */
	n = state[0] < 0 ? 1 : state[1] < 0 ? 0 : lsn[1] > lsn[0] ? 1 : 0;
	if (state[n] < 0)
		r = fsmap_fail(why, whylen, -EINVAL, "$LogFile's restart pages "
			       "are damaged");
	else if (state[n] == 0)
		r = fsmap_fail(why, whylen, -EINVAL, "$LogFile has changes "
			       "to replay (a crash, or Windows' Fast Startup): "
			       "$Bitmap may lag them");
	else
		r = 0;
out:
	free(pg);
	return r;
}

static int
ntfs_free(const struct fsmap_vol *v, struct ferry_extents *fr, char *why,
	  size_t whylen)
{
	uint8_t bs[512], *rec = NULL, *bits = NULL;
	uint32_t bps, spc, recsize;
	const uint8_t *a;
	bool list;
	uint64_t total, csize, clusters, mft, done = 0, run = 0, runlen = 0;
	int8_t cpr;
	struct run *runs = NULL;
	int r, nruns = -1;

	if (v->size < sizeof bs)
		return fsmap_fail(why, whylen, -EINVAL, "too small");
	r = v->read(v->ctx, 0, bs, sizeof bs);
	if (r < 0)
		return r;
	bps = fsmap_le16(bs + 11);
	/* Above 0x80: a power of two, 2^(256 - n) (large clusters). */
	spc = bs[13] <= 0x80 ? bs[13] : bs[13] >= 0xf0 ? 1u << (256 - bs[13]) : 0;
	total = fsmap_le64(bs + 40);
	mft = fsmap_le64(bs + 48);
	cpr = (int8_t)bs[64];
	if (memcmp(bs + 3, "NTFS    ", 8) != 0 || bps < 256 || bps > 4096 ||
	    (bps & (bps - 1)) || spc == 0 || spc > 65536 || (spc & (spc - 1)) ||
	    total == 0)
		return fsmap_fail(why, whylen, -EINVAL, "not a valid NTFS boot "
				  "sector");
	csize = (uint64_t)bps * spc;
	if (total > v->size / bps)
		return fsmap_fail(why, whylen, -EINVAL, "%llu sectors do not "
				  "fit in the volume", (unsigned long long)total);
	clusters = total / spc;
	recsize = cpr > 0 ? (uint32_t)cpr * (uint32_t)csize :
		  cpr < 0 && cpr >= -16 ? 1u << -cpr : 0;
	if (recsize < 256 || recsize > 65536 || recsize % bps ||
	    mft >= clusters ||
	    (mft * csize + (MFT_BITMAP + 1) * (uint64_t)recsize) >
	    clusters * csize)
		return fsmap_fail(why, whylen, -EINVAL, "bad MFT record size "
				  "or place");
	rec = malloc(recsize);
	runs = calloc(RUNS_MAX, sizeof *runs);
	if (!rec || !runs) {
		r = -ENOMEM;
		goto out;
	}
	r = check_clean(v, mft * csize, recsize, bps, csize, clusters, rec,
			runs, why, whylen);
	if (r < 0)
		goto out;
	r = read_record(v, mft * csize, recsize, bps, MFT_BITMAP, rec,
			"$Bitmap", why, whylen);
	if (r < 0)
		goto out;
	a = find_attr(rec, recsize, AT_DATA, &list);
	if (list) {
		r = fsmap_fail(why, whylen, -ENOTSUP, "$Bitmap has an "
			       "attribute list");
		goto out;
	}
	if (a) {
		uint32_t alen = fsmap_le32(a + 4);
		uint16_t ro;

		if (a[8] != 1 || alen < 64 || fsmap_le64(a + 16) != 0) {
			r = fsmap_fail(why, whylen, -ENOTSUP, "$Bitmap data is "
				       "resident or split");
			goto out;
		}
		ro = fsmap_le16(a + 32);
		if (ro < alen)
			nruns = decode_runs(a + ro, a + alen, runs);
	}
	if (nruns <= 0) {
		r = fsmap_fail(why, whylen, -EINVAL, "no $DATA run list in "
			       "$Bitmap");
		goto out;
	}
	bits = malloc(BITMAP_READ);
	if (!bits) {
		r = -ENOMEM;
		goto out;
	}
	/* Read the bitmap run by run, piece by piece, up to the clusters of
	 * the volume; bits past a sparse run or a short bitmap stay used. */
	for (int i = 0; i < nruns && done < clusters; i++) {
		uint64_t bytes = runs[i].len * csize;

		if (runs[i].lcn < 0 || (uint64_t)runs[i].lcn >= clusters ||
		    runs[i].len > clusters - (uint64_t)runs[i].lcn) {
			r = fsmap_fail(why, whylen, -EINVAL, "$Bitmap run %d "
				       "outside the volume", i);
			goto out;
		}
		for (uint64_t o = 0; o < bytes && done < clusters;) {
			uint64_t n = FERRY_MIN(bytes - o, (uint64_t)BITMAP_READ);
			uint64_t nb = FERRY_MIN(n * 8, clusters - done);

			r = v->read(v->ctx, (uint64_t)runs[i].lcn * csize + o,
				    bits, (size_t)((nb + 7) / 8));
			if (r < 0)
				goto out;
			r = add_free_bits(fr, bits, nb, done, csize, &run,
					  &runlen);
			if (r < 0)
				goto out;
			done += nb;
			o += n;
		}
	}
	r = runlen ? fsmap_add_free(fr, run * csize, runlen * csize) : 0;
out:
	free(bits);
	free(runs);
	free(rec);
	return r;
}

const struct fsmap_fs fsmap_ntfs = { .name = "ntfs", .free = ntfs_free };
