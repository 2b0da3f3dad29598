/* Unit tests of the partition table parser on tables built in memory:
 * MBR with logical partitions, GPT (primary and backup), and broken or
 * hostile tables that must give no partitions and a reason. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "backends/fsmap/parts.h"
#include "tests/unit/check.h"

#define DISK (8u << 20)
#define SECTORS (DISK / 512)

static uint8_t *disk;

static int
mem_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	(void)ctx;
	if (off > DISK || len > DISK - off)
		return -EIO;
	memcpy(buf, disk + off, len);
	return 0;
}

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

static void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static void
mbr_entry(uint64_t sector, unsigned i, uint8_t type, uint32_t first,
	  uint32_t count)
{
	uint8_t *e = disk + sector * 512 + 446 + 16 * i;

	e[0] = 0;
	e[4] = type;
	put32(e + 8, first);
	put32(e + 12, count);
	disk[sector * 512 + 510] = 0x55;
	disk[sector * 512 + 511] = 0xaa;
}

static int
scan(struct part_table *t, char *why)
{
	return parts_scan(DISK, mem_read, NULL, t, why, 160);
}

static void
test_mbr(void)
{
	struct part_table t;
	char why[160];

	memset(disk, 0, DISK);
	CHECK(scan(&t, why) == 0);
	CHECK_EQ_U64(t.n, 0);			/* no signature: no table */

	mbr_entry(0, 0, 0x83, 2048, 1000);
	mbr_entry(0, 1, 0x05, 4096, 8192);	/* extended */
	mbr_entry(4096, 0, 0x83, 63, 100);	/* first logical */
	mbr_entry(4096, 1, 0x05, 1000, 300);	/* link to the next EBR */
	mbr_entry(5096, 0, 0x07, 63, 200);	/* second logical */
	CHECK(scan(&t, why) == 0);
	CHECK(strcmp(t.scheme, "mbr") == 0);
	CHECK_EQ_U64(t.n, 3);
	CHECK_EQ_U64(t.v[0].num, 1);
	CHECK_EQ_U64(t.v[0].off, 2048 * 512);
	CHECK_EQ_U64(t.v[0].len, 1000 * 512);
	CHECK(strcmp(t.v[0].type, "0x83") == 0);
	CHECK_EQ_U64(t.v[1].num, 5);
	CHECK_EQ_U64(t.v[1].off, (4096 + 63) * 512);
	CHECK_EQ_U64(t.v[1].len, 100 * 512);
	CHECK_EQ_U64(t.v[2].num, 6);
	CHECK_EQ_U64(t.v[2].off, (5096 + 63) * 512);
	CHECK(strcmp(t.v[2].type, "0x07") == 0);

	/* An EBR chain that points back at itself. */
	mbr_entry(5096, 1, 0x05, 0, 300);
	CHECK(scan(&t, why) == -EINVAL);
	CHECK(strstr(why, "goes back") != NULL);
	CHECK_EQ_U64(t.n, 0);
	mbr_entry(5096, 1, 0, 0, 0);

	/* A logical partition leaving the extended one. */
	mbr_entry(5096, 0, 0x07, 63, 9000);
	CHECK(scan(&t, why) == -EINVAL);
	mbr_entry(5096, 0, 0x07, 63, 200);

	/* Overlapping primaries. */
	mbr_entry(0, 2, 0x83, 2500, 10);
	CHECK(scan(&t, why) == -EINVAL);
	CHECK(strstr(why, "overlaps") != NULL);
	mbr_entry(0, 2, 0, 0, 0);

	/* Past the end of the disk; 32-bit wrap-around. */
	mbr_entry(0, 3, 0x83, SECTORS - 10, 11);
	CHECK(scan(&t, why) == -EINVAL);
	mbr_entry(0, 3, 0x83, 0xffffffff, 0xffffffff);
	CHECK(scan(&t, why) == -EINVAL);
	mbr_entry(0, 3, 0, 0, 0);

	/* A boot sector that is not a partition table. */
	disk[446] = 0x12;
	CHECK(scan(&t, why) == -EINVAL);
	CHECK(strstr(why, "boot flag") != NULL);
	disk[446] = 0;
	CHECK(scan(&t, why) == 0);
	CHECK_EQ_U64(t.n, 3);

	/* A long chain is bounded. */
	memset(disk, 0, DISK);
	mbr_entry(0, 0, 0x05, 2048, SECTORS - 2048);
	for (uint32_t i = 0; i < 200; i++) {
		mbr_entry(2048 + i * 16, 0, 0x83, 1, 8);
		mbr_entry(2048 + i * 16, 1, 0x05, (i + 1) * 16, 16);
	}
	CHECK(scan(&t, why) == -EINVAL);
	CHECK(strstr(why, "more than") != NULL);
}

static void
gpt_header(uint64_t lba, uint64_t alt, uint64_t array, uint32_t num)
{
	uint8_t *h = disk + lba * 512, *a = disk + array * 512;

	memset(h, 0, 512);
	memcpy(h, "EFI PART", 8);
	put32(h + 8, 0x00010000);
	put32(h + 12, 92);
	put64(h + 24, lba);
	put64(h + 32, alt);
	put64(h + 40, 34);
	put64(h + 48, SECTORS - 34);
	put64(h + 72, array);
	put32(h + 80, num);
	put32(h + 84, 128);
	put32(h + 88, (uint32_t)crc32(0, a, (num < 128 ? num : 128) * 128));
	put32(h + 16, (uint32_t)crc32(0, h, 92));
}

static void
gpt_entry(uint64_t array, unsigned i, uint64_t first, uint64_t last)
{
	uint8_t *e = disk + array * 512 + i * 128;
	/* Linux filesystem data: 0FC63DAF-8483-4772-8E79-3D69D8477DE4 */
	static const uint8_t linux_fs[16] = {
		0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
		0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4 };

	memcpy(e, linux_fs, 16);
	memset(e + 16, i + 1, 16);
	put64(e + 32, first);
	put64(e + 40, last);
}

static void
test_gpt(void)
{
	struct part_table t;
	char why[160];

	memset(disk, 0, DISK);
	mbr_entry(0, 0, 0xee, 1, SECTORS - 1);
	gpt_entry(2, 0, 2048, 4095);
	gpt_entry(2, 2, 8192, 8192);
	gpt_header(1, SECTORS - 1, 2, 128);
	memcpy(disk + (SECTORS - 33) * 512, disk + 2 * 512, 32 * 512);
	gpt_header(SECTORS - 1, 1, SECTORS - 33, 128);
	CHECK(scan(&t, why) == 0);
	CHECK(strcmp(t.scheme, "gpt") == 0);
	CHECK_EQ_U64(t.n, 2);
	CHECK_EQ_U64(t.v[0].num, 1);
	CHECK_EQ_U64(t.v[0].off, 2048 * 512);
	CHECK_EQ_U64(t.v[0].len, 2048 * 512);
	CHECK(strcmp(t.v[0].type,
		     "0fc63daf-8483-4772-8e79-3d69d8477de4") == 0);
	CHECK_EQ_U64(t.v[1].num, 3);
	CHECK_EQ_U64(t.v[1].off, 8192 * 512);
	CHECK_EQ_U64(t.v[1].len, 512);

	/* A damaged primary entry array: the backup is used. */
	disk[2 * 512 + 40] ^= 1;
	CHECK(scan(&t, why) == 0);
	CHECK_EQ_U64(t.n, 2);
	CHECK_EQ_U64(t.v[0].len, 2048 * 512);
	/* Both damaged: nothing. */
	disk[(SECTORS - 33) * 512 + 40] ^= 1;
	CHECK(scan(&t, why) == -EINVAL);
	CHECK(strstr(why, "CRC") != NULL);
	CHECK_EQ_U64(t.n, 0);
	disk[2 * 512 + 40] ^= 1;
	disk[(SECTORS - 33) * 512 + 40] ^= 1;

	/* Valid CRCs around hostile contents. */
	gpt_entry(2, 1, 4000, 4100);			/* overlaps entry 1 */
	gpt_header(1, SECTORS - 1, 2, 128);
	CHECK(scan(&t, why) == -EINVAL);
	gpt_entry(2, 1, 10000, SECTORS);		/* past the end */
	gpt_header(1, SECTORS - 1, 2, 128);
	CHECK(scan(&t, why) == -EINVAL);
	gpt_entry(2, 1, 10000, 9999);			/* inverted */
	gpt_header(1, SECTORS - 1, 2, 128);
	CHECK(scan(&t, why) == -EINVAL);
	memset(disk + 2 * 512 + 128, 0, 128);
	gpt_header(1, SECTORS - 1, 2, 0xffffffff);	/* huge array */
	CHECK(scan(&t, why) == -EINVAL);
	gpt_header(1, SECTORS - 1, SECTORS - 1, 128);	/* array past end */
	CHECK(scan(&t, why) == -EINVAL);
	/* Protective MBR and no GPT at all. */
	memset(disk + 512, 0, 512);
	memset(disk + (SECTORS - 1) * 512, 0, 512);
	CHECK(scan(&t, why) == -EINVAL);
	CHECK(strstr(why, "no GPT") != NULL);
}

int
main(void)
{
	disk = malloc(DISK);
	if (!disk)
		return 1;
	test_mbr();
	test_gpt();
	free(disk);
	return check_result("unit-parts");
}
