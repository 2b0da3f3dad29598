/* ferry — partition tables (MBR with logical partitions, GPT), parsed to
 * find the slices the partition views show.
 *
 * The parser reads the disk through a callback and trusts nothing it reads:
 * every offset and length is checked against the disk, the number of
 * entries and of logical partitions is bounded, chains of extended boot
 * records cannot loop, and GPT headers and entry arrays must pass their
 * CRC32. A table that fails any check yields no partitions and a reason.
 */
#ifndef FERRY_PARTS_H
#define FERRY_PARTS_H

#include <stddef.h>
#include <stdint.h>

#define PARTS_MAX 128

struct part {
	unsigned num;		/* Linux numbering: MBR 1-4 primary, 5+ logical;
				 * GPT entry index + 1 */
	uint64_t off, len;	/* bytes */
	char type[40];		/* "0x83" (MBR) or the GPT type GUID */
};

struct part_table {
	char scheme[8];		/* "mbr", "gpt" or "" (none) */
	unsigned sector;	/* logical sector size used */
	struct part v[PARTS_MAX];
	size_t n;
};

/* Read @len bytes at @off of the disk into @buf; 0 or -errno. */
typedef int (*parts_read_fn)(void *ctx, uint64_t off, void *buf, size_t len);

/*! parts_scan() :
 * Find the partition table of a disk of @size bytes.
 * @return 0 (t->n may be 0: no table), -EINVAL (a malformed table; a
 * reason in @why), or the read callback's error. */
int parts_scan(uint64_t size, parts_read_fn read, void *ctx,
	       struct part_table *t, char *why, size_t whylen);

#endif
