/* ferry — FAT12/16/32: free clusters from the first FAT.
 *
 * Layout (Microsoft's FAT specification): the boot sector's BPB gives the
 * sector size, sectors per cluster, reserved sectors, the number and size
 * of the FATs and the root directory's entries (FAT12/16). Reserved
 * sectors, the FATs and the fixed root directory are used; a data cluster
 * n (from 2) is free when its FAT entry is 0. The type follows from the
 * cluster count, as the specification says, not from the label text.
 */
#include <errno.h>
#include <stdlib.h>

#include "backends/fsmap/fsmap.h"
#include "common/util.h"

#define FAT_READ (1u << 20)	/* FAT bytes read at a time */

/* Entry @n of a FAT of @type bits held in @fat. */
static uint32_t
fat_entry(const uint8_t *fat, unsigned type, uint64_t n)
{
	if (type == 12) {
		uint32_t x = fsmap_le16(fat + n * 3 / 2);

		return n & 1 ? x >> 4 : x & 0xfff;
	}
	if (type == 16)
		return fsmap_le16(fat + n * 2);
	return fsmap_le32(fat + n * 4) & 0x0fffffff;
}

static int
vfat_free(const struct fsmap_vol *v, struct ferry_extents *fr, char *why,
	  size_t whylen)
{
	uint8_t bs[512], *fat = NULL;
	uint32_t bps, spc, reserved, nfats, rootents, fatsz, total, rootsecs;
	uint64_t datastart, clusters, csize, fatbytes, run = 0, runlen = 0;
	unsigned type;
	int r;

	if (v->size < sizeof bs)
		return fsmap_fail(why, whylen, -EINVAL, "smaller than a boot "
				  "sector");
	r = v->read(v->ctx, 0, bs, sizeof bs);
	if (r < 0)
		return r;
	bps = fsmap_le16(bs + 11);
	spc = bs[13];
	reserved = fsmap_le16(bs + 14);
	nfats = bs[16];
	rootents = fsmap_le16(bs + 17);
	total = fsmap_le16(bs + 19) ? fsmap_le16(bs + 19) : fsmap_le32(bs + 32);
	fatsz = fsmap_le16(bs + 22) ? fsmap_le16(bs + 22) : fsmap_le32(bs + 36);
	if (bps < 512 || bps > 4096 || (bps & (bps - 1)) || spc == 0 ||
	    (spc & (spc - 1)) || reserved == 0 || nfats == 0 || fatsz == 0 ||
	    bs[510] != 0x55 || bs[511] != 0xaa)
		return fsmap_fail(why, whylen, -EINVAL, "not a valid FAT boot "
				  "sector (BPB)");
	if ((uint64_t)total * bps > v->size)
		return fsmap_fail(why, whylen, -EINVAL, "%u sectors of %u "
				  "bytes do not fit in the volume", total, bps);
	rootsecs = (rootents * 32 + bps - 1) / bps;
	datastart = (uint64_t)reserved + (uint64_t)nfats * fatsz + rootsecs;
	if (datastart >= total)
		return fsmap_fail(why, whylen, -EINVAL, "no data area");
	csize = (uint64_t)spc * bps;
	clusters = (total - datastart) / spc;
	type = clusters < 4085 ? 12 : clusters < 65525 ? 16 : 32;
	fatbytes = type == 12 ? (clusters + 2) * 3 / 2 + 2 :
		   (clusters + 2) * (type / 8);
	if (fatbytes > (uint64_t)fatsz * bps)
		return fsmap_fail(why, whylen, -EINVAL, "FAT%u of %u sectors "
				  "is too small for %llu clusters", type, fatsz,
				  (unsigned long long)clusters);
	/* FAT32 keeps its root directory in clusters, found in the FAT. */
	fat = malloc((size_t)fatbytes);
	if (!fat)
		return -ENOMEM;
	for (uint64_t o = 0; o < fatbytes; o += FAT_READ) {
		r = v->read(v->ctx, (uint64_t)reserved * bps + o, fat + o,
			    (size_t)FERRY_MIN(fatbytes - o, (uint64_t)FAT_READ));
		if (r < 0)
			goto out;
	}
	datastart *= bps;
	for (uint64_t n = 2; n < clusters + 2; n++) {
		if (fat_entry(fat, type, n) != 0)
			continue;
		if (runlen && run + runlen == n) {
			runlen++;
			continue;
		}
		if (runlen && (r = fsmap_add_free(fr, datastart +
				(run - 2) * csize, runlen * csize)) < 0)
			goto out;
		run = n;
		runlen = 1;
	}
	r = runlen ? fsmap_add_free(fr, datastart + (run - 2) * csize,
				    runlen * csize) : 0;
out:
	free(fat);
	return r;
}

const struct fsmap_fs fsmap_vfat = { .name = "vfat", .free = vfat_free };
