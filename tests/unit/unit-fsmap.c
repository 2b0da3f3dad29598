/* unit-fsmap: the filesystem parsers and the disk map, on images made by
 * the filesystems' own tools (the fuzz seeds: tests/fuzz/corpus/) and on
 * damaged or lying copies of them made here. Each parser's free space is
 * checked against what the image itself says (its own free counters, its
 * layout), and damage must make it refuse, never guess. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "tests/fuzz/memfile.h"
#include "backends/fsmap/fsmap.h"
#include "backends/fsmap/lvm.h"

static const char *corpus;
static int failures;

#define EXPECT(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n",	\
	__FILE__, __LINE__, #c); failures++; } } while (0)

static uint8_t *
load(const char *rel, size_t *size)
{
	char path[4096];
	FILE *f;
	uint8_t *buf;
	long n;

	snprintf(path, sizeof path, "%s/%s", corpus, rel);
	f = fopen(path, "rb");
	CHECK(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n);
	CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	*size = (size_t)n;
	return buf;
}

/* Run parser @type on @img; @return its result, free ranges in @fr. */
static int
run(const char *type, const uint8_t *img, size_t size,
    struct ferry_extents *fr, char *why)
{
	struct memfile f = { img, size };
	struct fsmap_vol v = { .read = mem_read, .ctx = &f, .size = size };
	const struct fsmap_fs *fs = fsmap_fs_find(type);

	CHECK(fs);
	ferry_extents_init(fr, size);
	why[0] = '\0';
	return fs->free(&v, fr, why, 200);
}

static uint32_t
le32(const uint8_t *p)
{
	return fsmap_le32(p);
}

/* ext2/ext4: free bytes equal the superblock's free block count; the
 * superblock and group descriptors are used; a flipped bitmap byte fails
 * its checksum (ext4 with metadata_csum), and a superblock not marked
 * valid (mounted, or crashed) is refused. */
static void
test_ext(const char *seed, bool csum)
{
	size_t size;
	uint8_t *img = load(seed, &size);
	const uint8_t *sb = img + 1024;
	uint64_t bsize = 1024u << le32(sb + 24);
	uint64_t free_blocks = le32(sb + 12);
	struct ferry_extents fr;
	char why[200];
	int r = run("ext4", img, size, &fr, why);

	EXPECT(r == 0);
	EXPECT(fr.data_bytes == free_blocks * bsize);
	EXPECT(ferry_extents_data_in(&fr, 0, 4 * bsize) == 0);
	ferry_extents_free(&fr);
	if (csum) {
		/* The first group descriptor, in the block after the
		 * superblock's, points at the block bitmap. */
		uint64_t gd = (le32(sb + 20) + 1) * bsize;
		uint64_t bitmap = le32(img + gd) * bsize;

		img[bitmap + 100] ^= 0x40;
		r = run("ext4", img, size, &fr, why);
		EXPECT(r == -EINVAL && strstr(why, "bitmap"));
		ferry_extents_free(&fr);
	}
	if (!csum) {	/* s_state without "valid": mounted, or crashed */
		img[1024 + 58] = 0;
		r = run("ext4", img, size, &fr, why);
		EXPECT(r == -EINVAL && strstr(why, "cleanly"));
		ferry_extents_free(&fr);
	}
	img[1024 + 56] = 0;	/* the magic */
	r = run("ext4", img, size, &fr, why);
	EXPECT(r == -EINVAL && why[0]);
	ferry_extents_free(&fr);
	free(img);
}

/* XFS: the seed's layout (mkseeds.py): exactly its free extents; a log
 * whose last record is not an unmount record, a superblock free count
 * that is not the AGs', a wrong AGF free count, a broken magic or a
 * looping sibling is refused. */
static void
test_xfs(void)
{
	size_t size;
	uint8_t *img = load("fsmap-xfs/v5-2ag", &size), *copy;
	static const struct ferry_extent want[] = {
		{ 6 * 512, 2 * 512 }, { 9 * 512, 512 }, { 12 * 512, 3 * 512 },
		{ (16 + 5) * 512, 7 * 512 },
	};
	struct ferry_extents fr;
	char why[200];
	int r = run("xfs", img, size, &fr, why);

	EXPECT(r == 0 && fr.n == 4);
	for (size_t i = 0; r == 0 && i < fr.n && i < 4; i++)
		EXPECT(fr.v[i].off == want[i].off && fr.v[i].len == want[i].len);
	ferry_extents_free(&fr);

	copy = malloc(size);
	memcpy(copy, img, size);
	copy[16 * 512 + 512 + 55] = 12;		/* AG 1's AGF free count */
	EXPECT(run("xfs", copy, size, &fr, why) == -EINVAL &&
	       strstr(why, "AGF says"));
	ferry_extents_free(&fr);
	memcpy(copy, img, size);
	copy[16 * 512 + 12 * 512 + 512 + 9] = 1; /* the log's last op: */
	EXPECT(run("xfs", copy, size, &fr, why) == -EINVAL && /* a start */
	       strstr(why, "log is not clean"));
	ferry_extents_free(&fr);
	memcpy(copy, img, size);
	copy[151] = 14;				/* sb_fdblocks: a crash */
	EXPECT(run("xfs", copy, size, &fr, why) == -EINVAL &&
	       strstr(why, "cleanly"));
	ferry_extents_free(&fr);
	memcpy(copy, img, size);
	copy[4 * 512] = 'X';			/* a leaf's magic */
	EXPECT(run("xfs", copy, size, &fr, why) == -EINVAL);
	ferry_extents_free(&fr);
	memcpy(copy, img, size);
	copy[4 * 512 + 12] = 0;			/* leaf 4's right sibling: */
	copy[4 * 512 + 13] = 0;			/* back to leaf 3 */
	copy[4 * 512 + 14] = 0;
	copy[4 * 512 + 15] = 3;
	EXPECT(run("xfs", copy, size, &fr, why) == -EINVAL);
	ferry_extents_free(&fr);
	free(copy);
	free(img);
}

/* FAT12 as mkfs.vfat makes it, empty: every data cluster is free, from
 * the first data sector on; a damaged BPB is refused. */
static void
test_vfat(void)
{
	size_t size;
	uint8_t *img = load("fsmap-vfat/fat12", &size);
	uint32_t bps = fsmap_le16(img + 11), spc = img[13];
	uint32_t data = fsmap_le16(img + 14) + img[16] * fsmap_le16(img + 22) +
			(fsmap_le16(img + 17) * 32 + bps - 1) / bps;
	uint32_t total = fsmap_le16(img + 19);
	uint64_t clusters = (total - data) / spc;
	struct ferry_extents fr;
	char why[200];
	int r = run("vfat", img, size, &fr, why);

	EXPECT(r == 0 && fr.n == 1);
	EXPECT(r == 0 && fr.v[0].off == (uint64_t)data * bps);
	EXPECT(fr.data_bytes == clusters * spc * bps);
	ferry_extents_free(&fr);
	img[13] = 3;	/* sectors per cluster, not a power of two */
	EXPECT(run("vfat", img, size, &fr, why) == -EINVAL && why[0]);
	ferry_extents_free(&fr);
	free(img);
}

/* The first unnamed attribute of @type in MFT record @rec (1 KiB, its
 * first sector only: where these tests write). */
static uint8_t *
ntfs_attr(uint8_t *rec, uint32_t type)
{
	for (uint32_t o = fsmap_le16(rec + 20); o + 16 <= 1024;) {
		uint32_t t = fsmap_le32(rec + o), len = fsmap_le32(rec + o + 4);

		if (t == 0xffffffffu || len < 16)
			break;
		if (t == type && rec[o + 9] == 0)
			return rec + o;
		o += len;
	}
	return NULL;
}

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* A restart page of @size bytes at @pg: update sequence at 0x1e (number
 * 7 in every sector's last word), its area at 0x40 with @in_use and
 * @flags, current LSN @lsn. */
static void
rstr_page(uint8_t *pg, uint32_t size, uint16_t in_use, uint16_t flags,
	  uint64_t lsn)
{
	uint16_t count = (uint16_t)(size / 512 + 1);

	memset(pg, 0, size);
	memcpy(pg, "RSTR", 4);
	put16(pg + 4, 0x1e);
	put16(pg + 6, count);
	pg[0x10] = (uint8_t)size;
	pg[0x11] = (uint8_t)(size >> 8);
	put16(pg + 0x18, 0x40);
	for (int i = 0; i < 8; i++)
		pg[0x40 + i] = (uint8_t)(lsn >> (8 * i));
	put16(pg + 0x40 + 0xc, in_use);
	put16(pg + 0x40 + 0xe, flags);
	put16(pg + 0x1e, 7);
	for (uint16_t i = 1; i < count; i++)	/* saved words are zeros */
		put16(pg + i * 512 - 2, 7);
}

/* $Bitmap may lag the journal: a dirty volume, and a $LogFile with
 * changes to replay, are all data; a clean restart area is not. */
static void
test_ntfs_unclean(uint8_t *img, size_t size, uint64_t mft, uint64_t csize)
{
	uint8_t *vol = img + mft + 3 * 1024, *a, *val, *log, *runs;
	uint64_t at, len, lsn = 0x1000;
	struct ferry_extents fr;
	char why[200];

	a = ntfs_attr(vol, 0x70);
	EXPECT(a != NULL && a[8] == 0);
	if (!a)
		return;
	val = a + fsmap_le16(a + 20);
	val[10] |= 1;			/* VOLUME_IS_DIRTY */
	EXPECT(run("ntfs", img, size, &fr, why) == -EINVAL &&
	       strstr(why, "dirty"));
	ferry_extents_free(&fr);
	val[10] &= (uint8_t)~1;

	/* $LogFile's first run: its header byte gives the sizes of its
	 * length and of its (here positive) offset. */
	a = ntfs_attr(img + mft + 2 * 1024, 0x80);
	EXPECT(a != NULL && a[8] == 1);
	if (!a)
		return;
	runs = a + fsmap_le16(a + 32);
	len = at = 0;
	for (unsigned i = 0; i < (runs[0] & 0xfu); i++)
		len |= (uint64_t)runs[1 + i] << (8 * i);
	for (unsigned i = 0; i < (runs[0] >> 4); i++)
		at |= (uint64_t)runs[1 + (runs[0] & 0xf) + i] << (8 * i);
	EXPECT(len * csize >= 8192 && at * csize + 8192 <= size);
	if (at * csize + 8192 > size)
		return;
	log = img + at * csize;
	EXPECT(fsmap_le32(log) == 0xffffffffu);	/* mkntfs: empty */
	for (int k = 0; k < 2; k++)		/* a client in use */
		rstr_page(log + k * 4096, 4096, 0, 0, lsn + (uint64_t)k);
	EXPECT(run("ntfs", img, size, &fr, why) == -EINVAL &&
	       strstr(why, "replay"));
	ferry_extents_free(&fr);
	/* The newer page is the one that counts. */
	rstr_page(log + 4096, 4096, 0xffff, 0, lsn - 1);
	EXPECT(run("ntfs", img, size, &fr, why) == -EINVAL);
	ferry_extents_free(&fr);
	rstr_page(log, 4096, 0, 2, lsn + 5);	/* RESTART_VOLUME_IS_CLEAN */
	EXPECT(run("ntfs", img, size, &fr, why) == 0 && fr.data_bytes > 0);
	ferry_extents_free(&fr);
	log[510] ^= 0xff;			/* torn: the other page counts */
	EXPECT(run("ntfs", img, size, &fr, why) == 0);
	ferry_extents_free(&fr);
	rstr_page(log + 4096, 4096, 0, 0, lsn - 1);
	EXPECT(run("ntfs", img, size, &fr, why) == -EINVAL);
	ferry_extents_free(&fr);
	memset(log, 0xff, 8192);
}

/* NTFS as mkntfs makes it: the boot sector and the backup boot sector at
 * the end are used; some space is free; a torn $Bitmap record is
 * refused. */
static void
test_ntfs(void)
{
	size_t size;
	uint8_t *img = load("fsmap-ntfs/ntfs-2m", &size);
	uint64_t csize = (uint64_t)fsmap_le16(img + 11) * img[13];
	uint64_t mft = fsmap_le64(img + 48) * csize;
	struct ferry_extents fr;
	char why[200];
	int r = run("ntfs", img, size, &fr, why);

	EXPECT(r == 0 && fr.data_bytes > size / 2);
	EXPECT(ferry_extents_data_in(&fr, 0, 8192) == 0);
	EXPECT(ferry_extents_data_in(&fr, size - 512, 512) == 0);
	EXPECT(ferry_extents_data_in(&fr, mft, 16 * 1024) == 0);
	ferry_extents_free(&fr);
	/* MFT records here are 1 KiB: record 6 ends its first sector with
	 * the update sequence number, which must match. */
	img[mft + 6 * 1024 + 510] ^= 0xff;
	EXPECT(run("ntfs", img, size, &fr, why) == -EINVAL &&
	       strstr(why, "damaged"));
	ferry_extents_free(&fr);
	img[mft + 6 * 1024 + 510] ^= 0xff;
	test_ntfs_unclean(img, size, mft, csize);
	free(img);
}

static void
test_swap(void)
{
	size_t size;
	uint8_t *img = load("fsmap-swap/swap-64k", &size);
	struct ferry_extents fr;
	char why[200];
	int r = run("swap", img, size, &fr, why);

	EXPECT(r == 0 && fr.n == 1 && fr.v[0].off == 4096 &&
	       fr.v[0].len == size - 4096);
	ferry_extents_free(&fr);
	memcpy(img + 4086, "S1SUSPEND\0", 10);	/* a hibernation image */
	EXPECT(run("swap", img, size, &fr, why) == -EINVAL);
	ferry_extents_free(&fr);
	free(img);
}

/* --- LVM: the seed, and copies whose metadata text is replaced --------- */

static uint32_t
lvm_crc(const void *buf, size_t len)
{
	return ~(uint32_t)crc32(~0xf597a6cfu & 0xffffffffu, buf, (uInt)len);
}

struct pvimg {
	uint8_t *img;
	size_t size;
	uint64_t mda;		/* the metadata area's offset */
	char *text;		/* the seed's metadata text */
};

static void
pv_load(struct pvimg *p)
{
	const uint8_t *h, *loc;
	uint64_t off, len;

	p->img = load("lvm/pv-2lv", &p->size);
	/* The label in sector 1, its PV header at 32: UUID, size, a data
	 * area and its end, then the metadata area. */
	h = p->img + 512 + le32(p->img + 512 + 20);
	loc = h + 40 + 32;
	p->mda = fsmap_le64(loc);
	off = fsmap_le64(p->img + p->mda + 40);
	len = fsmap_le64(p->img + p->mda + 48);
	p->text = strndup((char *)p->img + p->mda + off, len);
}

/* A copy of the PV with @text as its metadata, checksums right. */
static uint8_t *
pv_with(const struct pvimg *p, const char *text)
{
	uint8_t *c = malloc(p->size), *mh;
	uint64_t off;
	size_t n = strlen(text);

	memcpy(c, p->img, p->size);
	mh = c + p->mda;
	off = fsmap_le64(mh + 40);
	memcpy(c + p->mda + off, text, n);
	for (int i = 0; i < 8; i++)
		mh[48 + i] = (uint8_t)((uint64_t)n >> (8 * i));
	for (int i = 0; i < 4; i++)
		mh[56 + i] = (uint8_t)(lvm_crc(text, n) >> (8 * i));
	for (int i = 0; i < 4; i++)
		mh[i] = (uint8_t)(lvm_crc(mh + 4, 508) >> (8 * i));
	return c;
}

/* @text with the first @from replaced by @to (malloc'd). */
static char *
replace(const char *text, const char *from, const char *to)
{
	const char *at = strstr(text, from);
	char *out;

	CHECK(at);
	out = malloc(strlen(text) + strlen(to) + 1);
	sprintf(out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
	return out;
}

static int
pv_read(const uint8_t *img, size_t size, struct lvm_pv *pv, char *why)
{
	struct memfile f = { img, size };
	struct fsmap_vol v = { .read = mem_read, .ctx = &f, .size = size };

	return lvm_pv_read(&v, pv, why, 200);
}

static void
test_lvm(void)
{
	struct pvimg p;
	struct lvm_pv pv;
	char why[200];
	uint64_t ext = 64 * 1024, pe;
	uint8_t *c;
	char *t;
	int r;

	pv_load(&p);
	r = pv_read(p.img, p.size, &pv, why);
	EXPECT(r == 0);
	if (r == 0) {
		pe = pv.pe_start;
		EXPECT(strcmp(pv.vg, "vgseed") == 0 && pv.nlvs == 2);
		EXPECT(pv.lvs[0].mappable && pv.lvs[0].nsegs == 2 &&
		       pv.lvs[0].size == 6 * ext);
		EXPECT(pv.lvs[0].segs[0].lv_off == 0 &&
		       pv.lvs[0].segs[0].pv_off == pe + 8 * ext &&
		       pv.lvs[0].segs[0].len == 4 * ext);
		EXPECT(pv.lvs[0].segs[1].lv_off == 4 * ext &&
		       pv.lvs[0].segs[1].pv_off == pe + 2 * ext &&
		       pv.lvs[0].segs[1].len == 2 * ext);
		EXPECT(!pv.lvs[1].mappable);	/* two stripes */
		/* Taken: 2-3, 8-11, 14, 16. */
		EXPECT(pv.taken.data_bytes == 8 * ext);
		EXPECT(ferry_extents_data_in(&pv.taken, pe + 14 * ext, ext) ==
		       ext && ferry_extents_data_in(&pv.taken, pe + 15 * ext,
						    ext) == 0);
		lvm_pv_free(&pv);
	}

	/* The same text written back: still read (the copy is right). */
	c = pv_with(&p, p.text);
	EXPECT(pv_read(c, p.size, &pv, why) == 0);
	lvm_pv_free(&pv);
	free(c);

	/* Lies and damage, each refused with a reason. */
	static const char *const lies[][2] = {
		{ "\"pv0\", 8\n", "\"pv0\", 28\n" },	/* past pe_count */
		{ "\"pv0\", 8\n", "\"pv0\", 1\n" },	/* on root's own 2 */
		{ "extent_size = 128", "extent_size = 0" },
		{ "segment_count = 2", "segment_count = 3" },
		{ "physical_volumes {", "physical_volumes {{" },
		{ "pe_count = 30", "pe_count = 3000" },
		{ "\"pv0\", 8\n", "\"pv0\", 8,\n\"pv0\", 20\n" },	/* 2 areas, 1 stripe */
	};
	for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
		t = replace(p.text, lies[i][0], lies[i][1]);
		c = pv_with(&p, t);
		why[0] = '\0';
		r = pv_read(c, p.size, &pv, why);
		if (r != -EINVAL || !why[0])
			fprintf(stderr, "lie %zu: %d %s\n", i, r, why);
		EXPECT(r == -EINVAL && why[0]);
		free(c);
		free(t);
	}
	/* A bad checksum. */
	c = pv_with(&p, p.text);
	c[p.mda + fsmap_le64(c + p.mda + 40) + 10] ^= 1;
	EXPECT(pv_read(c, p.size, &pv, why) == -EINVAL &&
	       strstr(why, "checksum"));
	free(c);
	/* A snapshot of root: root's blocks are read by it, not mappable. */
	t = replace(p.text, "type = \"striped\"\nstripe_count = 2",
		    "type = \"snapshot\"\norigin = \"root\"\n"
		    "stripe_count = 2");
	c = pv_with(&p, t);
	r = pv_read(c, p.size, &pv, why);
	EXPECT(r == 0 && pv.nlvs == 2 && !pv.lvs[0].mappable &&
	       strstr(pv.lvs[0].why, "snapshot"));
	if (r == 0)
		lvm_pv_free(&pv);
	free(c);
	free(t);
	free(p.text);
	free(p.img);
}

/* --- the disk: tables and gaps stay, free space of known volumes goes -- */

static int
sig_probe(void *ctx, const struct fsmap_vol *v, char *type, size_t len)
{
	char sig[10];

	(void)ctx;
	type[0] = '\0';
	if (v->size >= 4096 && v->read(v->ctx, 4086, sig, 10) == 0 &&
	    memcmp(sig, "SWAPSPACE2", 10) == 0)
		snprintf(type, len, "swap");
	return 0;
}

static void
test_disk(void)
{
	size_t size;
	uint8_t *img = load("fsmap-disk/mbr-2", &size);
	struct memfile f = { img, size };
	struct fsmap_vol v = { .read = mem_read, .ctx = &f, .size = size };
	struct fsmap_probe pr = { sig_probe, NULL };
	struct fsmap_report rep = { 0 };
	struct ferry_extents used;
	uint64_t p1 = 128 * 1024;
	int r;

	ferry_extents_init(&used, size);
	r = fsmap_disk(&v, &pr, NULL, &used, &rep);
	EXPECT(r == 0);
	/* Used: everything but p1's swap space after its header page. */
	EXPECT(used.n == 2 && used.v[0].off == 0 &&
	       used.v[0].len == p1 + 4096 &&
	       used.v[1].off == p1 + 256 * 1024);
	EXPECT(used.data_bytes == size - (256 * 1024 - 4096));
	EXPECT(rep.n == 2 && strcmp(rep.v[0].where, "p1") == 0 &&
	       rep.v[0].method == FSMAP_BITMAP && rep.v[0].used == 4096);
	EXPECT(rep.n == 2 && rep.v[1].method == FSMAP_UNKNOWN &&
	       rep.v[1].used == 256 * 1024 && rep.v[1].why[0]);
	ferry_extents_free(&used);
	fsmap_report_free(&rep);

	/* Without a table, the whole disk is one volume: here unknown. */
	memset(img + 446, 0, 66);
	ferry_extents_init(&used, size);
	EXPECT(fsmap_disk(&v, &pr, NULL, &used, &rep) == 0 &&
	       used.data_bytes == size && rep.n == 1 &&
	       strcmp(rep.v[0].where, "disk") == 0);
	ferry_extents_free(&used);
	fsmap_report_free(&rep);
	free(img);
}

int
main(int argc, char **argv)
{
	CHECK(argc == 2);
	corpus = argv[1];
	test_ext("fsmap-ext4/ext2-1k", false);
	test_ext("fsmap-ext4/ext4-csum", true);
	test_xfs();
	test_vfat();
	test_ntfs();
	test_swap();
	test_lvm();
	test_disk();
	if (failures)
		fprintf(stderr, "%d failed\n", failures);
	return failures ? 1 : 0;
}
