/* ferry — MBR and GPT partition table parser (see parts.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "backends/fsmap/parts.h"

#define MBR_SECTOR	512u
#define GPT_ENTRIES_MAX	(1u << 20)	/* bytes of an entry array */

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t
le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int __attribute__((format(printf, 3, 4)))
fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool
is_extended(uint8_t type)
{
	return type == 0x05 || type == 0x0f || type == 0x85;
}

static int
add(struct part_table *t, unsigned num, uint64_t first, uint64_t count,
    char *why, size_t whylen)
{
	struct part *p;

	if (t->n == PARTS_MAX)
		return fail(why, whylen, "more than %d partitions",
			    PARTS_MAX);
	p = &t->v[t->n++];
	p->num = num;
	p->off = first * t->sector;
	p->len = count * t->sector;
	return 0;
}

static int
cmp_off(const void *a, const void *b)
{
	const struct part *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* No two partitions may share a byte. */
static int
check_overlap(struct part_table *t, char *why, size_t whylen)
{
	struct part sorted[PARTS_MAX];

	memcpy(sorted, t->v, t->n * sizeof *sorted);
	qsort(sorted, t->n, sizeof *sorted, cmp_off);
	for (size_t i = 1; i < t->n; i++)
		if (sorted[i - 1].off + sorted[i - 1].len > sorted[i].off)
			return fail(why, whylen,
				    "partition %u overlaps another",
				    sorted[i].num);
	return 0;
}

/* Logical partitions: a chain of extended boot records, each link
 * relative to the extended partition's start and strictly increasing, so
 * the chain cannot loop. */
static int
scan_ebr(uint64_t ext, uint64_t ext_len, parts_read_fn read, void *ctx,
	 struct part_table *t, char *why, size_t whylen)
{
	uint64_t link = 0;
	unsigned num = 5;

	for (unsigned hops = 0;; hops++) {
		uint8_t s[MBR_SECTOR];
		const uint8_t *e1 = s + 446, *e2 = s + 462;
		uint64_t ebr = ext + link, next;
		int r;

		if (hops == PARTS_MAX)
			return fail(why, whylen, "more than %d logical "
				    "partitions", PARTS_MAX);
		if (link >= ext_len)
			return fail(why, whylen, "extended boot record at "
				    "sector %llu is outside the extended "
				    "partition", (unsigned long long)ebr);
		r = read(ctx, ebr * MBR_SECTOR, s, sizeof s);
		if (r < 0)
			return r;
		if (s[510] != 0x55 || s[511] != 0xaa)
			return fail(why, whylen, "extended boot record at "
				    "sector %llu has no signature",
				    (unsigned long long)ebr);
		if (e1[4] && le32(e1 + 12)) {
			uint64_t first = ebr + le32(e1 + 8);
			uint64_t count = le32(e1 + 12);

			if (first <= ebr || first + count > ext + ext_len)
				return fail(why, whylen, "logical partition "
					    "%u is outside the extended "
					    "partition", num);
			if ((r = add(t, num++, first, count, why, whylen)) < 0)
				return r;
			snprintf(t->v[t->n - 1].type,
				 sizeof t->v[0].type, "0x%02x", e1[4]);
		}
		if (!is_extended(e2[4]) || !le32(e2 + 12))
			return 0;
		next = le32(e2 + 8);
		if (next <= link)
			return fail(why, whylen, "extended boot record chain "
				    "goes back at sector %llu",
				    (unsigned long long)ebr);
		link = next;
	}
}

static int
scan_mbr(const uint8_t *mbr, uint64_t sectors, parts_read_fn read, void *ctx,
	 struct part_table *t, char *why, size_t whylen)
{
	bool have_ext = false;
	uint64_t ext = 0, ext_len = 0;
	int r;

	snprintf(t->scheme, sizeof t->scheme, "mbr");
	t->sector = MBR_SECTOR;
	for (unsigned i = 0; i < 4; i++) {
		const uint8_t *e = mbr + 446 + 16 * i;
		uint64_t first = le32(e + 8), count = le32(e + 12);

		if (e[0] != 0x00 && e[0] != 0x80)
			return fail(why, whylen, "MBR entry %u has boot flag "
				    "0x%02x", i + 1, e[0]);
		if (e[4] == 0 || count == 0)
			continue;
		if (first == 0 || first + count > sectors)
			return fail(why, whylen, "MBR partition %u is "
				    "outside the disk", i + 1);
		if (is_extended(e[4])) {
			if (have_ext)
				return fail(why, whylen, "MBR has more than "
					    "one extended partition");
			have_ext = true;
			ext = first;
			ext_len = count;
			continue;
		}
		if ((r = add(t, i + 1, first, count, why, whylen)) < 0)
			return r;
		snprintf(t->v[t->n - 1].type, sizeof t->v[0].type, "0x%02x",
			 e[4]);
	}
	if (have_ext &&
	    (r = scan_ebr(ext, ext_len, read, ctx, t, why, whylen)) < 0)
		return r;
	return 0;
}

static void
guid_string(const uint8_t *g, char *out, size_t n)
{
	snprintf(out, n, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 le32(g), (unsigned)(g[4] | g[5] << 8),
		 (unsigned)(g[6] | g[7] << 8), g[8], g[9], g[10], g[11],
		 g[12], g[13], g[14], g[15]);
}

/* The GPT header in sector @lba, checked; then its entry array. */
static int
scan_gpt_at(uint64_t size, unsigned lss, uint64_t lba, parts_read_fn read,
	    void *ctx, struct part_table *t, char *why, size_t whylen)
{
	uint64_t sectors = size / lss, first_usable, last_usable, array;
	uint32_t hsize, num, esize, crc;
	uint8_t h[512], *ents;
	int r;

	r = read(ctx, lba * lss, h, sizeof h);
	if (r < 0)
		return r;
	if (memcmp(h, "EFI PART", 8) != 0) {
		fail(why, whylen, "no GPT header in sector %llu",
		     (unsigned long long)lba);
		return -ENOENT;
	}
	/* Damage (-EBADMSG) sends the caller to the backup header. */
	hsize = le32(h + 12);
	crc = le32(h + 16);
	memset(h + 16, 0, 4);
	if (hsize < 92 || hsize > sizeof h || crc32(0, h, hsize) != crc ||
	    le64(h + 24) != lba) {
		fail(why, whylen, "GPT header in sector %llu is damaged (size, "
		     "CRC or own sector wrong)", (unsigned long long)lba);
		return -EBADMSG;
	}
	first_usable = le64(h + 40);
	last_usable = le64(h + 48);
	array = le64(h + 72);
	num = le32(h + 80);
	esize = le32(h + 84);
	if (first_usable > last_usable || last_usable >= sectors)
		return fail(why, whylen, "GPT usable range ends at sector "
			    "%llu, past the disk",
			    (unsigned long long)last_usable);
	if (esize < 128 || esize % 8 || esize > 4096 ||
	    (uint64_t)num * esize > GPT_ENTRIES_MAX)
		return fail(why, whylen, "GPT entry array of %u entries of "
			    "%u bytes is not sane", num, esize);
	if (array >= sectors ||
	    (uint64_t)num * esize > (sectors - array) * lss)
		return fail(why, whylen, "GPT entry array at sector %llu is "
			    "outside the disk", (unsigned long long)array);
	ents = malloc((size_t)num * esize + 1);
	if (!ents)
		return -ENOMEM;
	r = read(ctx, array * lss, ents, (size_t)num * esize);
	if (r == 0 && crc32(0, ents, num * esize) != le32(h + 88)) {
		fail(why, whylen, "GPT entry array at sector %llu fails its "
		     "CRC", (unsigned long long)array);
		r = -EBADMSG;
	}
	snprintf(t->scheme, sizeof t->scheme, "gpt");
	t->sector = lss;
	for (uint32_t i = 0; r == 0 && i < num; i++) {
		const uint8_t *e = ents + (size_t)i * esize;
		static const uint8_t unused[16];
		uint64_t first = le64(e + 32), last = le64(e + 40);

		if (memcmp(e, unused, 16) == 0)
			continue;
		if (first > last || last >= sectors) {
			r = fail(why, whylen, "GPT partition %u is outside "
				 "the disk", i + 1);
			break;
		}
		r = add(t, i + 1, first, last - first + 1, why, whylen);
		if (r == 0)
			guid_string(e, t->v[t->n - 1].type,
				    sizeof t->v[0].type);
	}
	free(ents);
	return r;
}

/* The primary GPT header (sector 1) with 512- or 4096-byte sectors; if it
 * or its array is damaged (signature present, CRC wrong), the backup in
 * the last sector. A table whose checksums hold but whose contents do not
 * is refused as it is: the backup is for damage, not for disagreement. */
static int
scan_gpt(uint64_t size, parts_read_fn read, void *ctx, struct part_table *t,
	 char *why, size_t whylen)
{
	static const unsigned sizes[] = { 512, 4096 };
	char first[160] = "";
	int r = -ENOENT;

	for (size_t i = 0; i < 2 && r == -ENOENT; i++) {
		unsigned lss = sizes[i];

		if (size / lss < 3)
			break;
		t->n = 0;
		r = scan_gpt_at(size, lss, 1, read, ctx, t, why, whylen);
		if (i == 0)
			snprintf(first, sizeof first, "%s", why);
		if (r == -EBADMSG) {
			snprintf(first, sizeof first, "%s", why);
			t->n = 0;
			r = scan_gpt_at(size, lss, size / lss - 1, read, ctx,
					t, why, whylen);
			if (r < 0) {
				snprintf(why, whylen, "%s, and no usable "
					 "backup", first);
				r = -EINVAL;
			}
		}
	}
	if (r == -ENOENT) {
		snprintf(why, whylen, "protective MBR but %s", first);
		r = -EINVAL;
	}
	return r;
}

int
parts_scan(uint64_t size, parts_read_fn read, void *ctx, struct part_table *t,
	   char *why, size_t whylen)
{
	uint8_t mbr[MBR_SECTOR];
	bool protective = false;
	int r;

	memset(t, 0, sizeof *t);
	if (whylen)
		why[0] = '\0';
	if (size < 2 * MBR_SECTOR)
		return 0;
	r = read(ctx, 0, mbr, sizeof mbr);
	if (r < 0)
		return r;
	if (mbr[510] != 0x55 || mbr[511] != 0xaa)
		return 0;	/* no partition table */
	for (unsigned i = 0; i < 4; i++)
		if (mbr[446 + 16 * i + 4] == 0xee)
			protective = true;
	if (protective)
		r = scan_gpt(size, read, ctx, t, why, whylen);
	else
		r = scan_mbr(mbr, size / MBR_SECTOR, read, ctx, t, why,
			     whylen);
	if (r == 0)
		r = check_overlap(t, why, whylen);
	if (r < 0) {
		t->n = 0;
		t->scheme[0] = '\0';
	}
	return r;
}
