/* ferry — ext2/3/4: free blocks from libext2fs's block bitmaps.
 *
 * libext2fs (e2fsprogs) is the filesystem's own library: it knows flex_bg,
 * uninitialised groups (BLOCK_UNINIT: their metadata marked used from the
 * group descriptors), bigalloc clusters, 1 KiB blocks, checksums and the
 * 64-bit layout, all of which a hand-written reader would have to chase.
 * It reads through an I/O manager; ours is the read callback, so this is
 * still pure code over bytes (fuzzed as the others), and nothing can be
 * written: every write entry point fails.
 *
 * Metadata (superblocks, group descriptors, bitmaps, inode tables) and the
 * journal are marked used in the bitmaps. A filesystem whose journal needs
 * recovery is left as data: its bitmaps may lag what the journal holds;
 * so is one not marked cleanly unmounted, or marked with errors (ext2
 * without a journal clears "valid" while mounted).
 * Checksum errors are errors: a bitmap that fails its checksum is not
 * trusted.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ext2fs/ext2fs.h>

#include "backends/fsmap/fsmap.h"

struct chan {
	const struct fsmap_vol *v;
	int err;		/* the callback's last error */
};

static errcode_t
io_read64(io_channel ch, unsigned long long block, int count, void *data)
{
	struct chan *c = ch->private_data;
	uint64_t off = block * (uint64_t)ch->block_size;
	size_t len = count < 0 ? (size_t)-count :
		     (size_t)count * (size_t)ch->block_size;
	int r;

	if (off > c->v->size || len > c->v->size - off)
		return EXT2_ET_SHORT_READ;
	r = c->v->read(c->v->ctx, off, data, len);
	if (r < 0) {
		c->err = r;
		return EXT2_ET_SHORT_READ;
	}
	return 0;
}

static errcode_t
io_read(io_channel ch, unsigned long block, int count, void *data)
{
	return io_read64(ch, block, count, data);
}

static errcode_t
io_write(io_channel ch, unsigned long block, int count, const void *data)
{
	(void)ch; (void)block; (void)count; (void)data;
	return EXT2_ET_RO_FILSYS;
}

static errcode_t
io_write64(io_channel ch, unsigned long long block, int count,
	   const void *data)
{
	(void)ch; (void)block; (void)count; (void)data;
	return EXT2_ET_RO_FILSYS;
}

static errcode_t
io_write_byte(io_channel ch, unsigned long off, int count, const void *data)
{
	(void)ch; (void)off; (void)count; (void)data;
	return EXT2_ET_RO_FILSYS;
}

static errcode_t
io_set_blksize(io_channel ch, int blksize)
{
	ch->block_size = blksize;
	return 0;
}

static errcode_t
io_flush(io_channel ch)
{
	(void)ch;
	return 0;
}

static errcode_t
io_set_option(io_channel ch, const char *opt, const char *arg)
{
	(void)ch; (void)opt; (void)arg;
	return EXT2_ET_INVALID_ARGUMENT;
}

static errcode_t io_open(const char *name, int flags, io_channel *out);

static errcode_t
io_close(io_channel ch)
{
	if (--ch->refcount > 0)
		return 0;
	free(ch->name);
	free(ch);
	return 0;
}

static struct struct_io_manager ferry_io = {
	.magic = EXT2_ET_MAGIC_IO_MANAGER,
	.name = "ferry read callback",
	.open = io_open,
	.close = io_close,
	.set_blksize = io_set_blksize,
	.read_blk = io_read,
	.write_blk = io_write,
	.flush = io_flush,
	.write_byte = io_write_byte,
	.set_option = io_set_option,
	.read_blk64 = io_read64,
	.write_blk64 = io_write64,
};

/* The "name" libext2fs passes back to us is the channel's address. */
static errcode_t
io_open(const char *name, int flags, io_channel *out)
{
	struct chan *c = NULL;
	io_channel ch;

	if (flags & IO_FLAG_RW)
		return EXT2_ET_RO_FILSYS;
	if (sscanf(name, "ferry:%p", (void **)&c) != 1 || !c)
		return EXT2_ET_BAD_DEVICE_NAME;
	ch = calloc(1, sizeof *ch);
	if (!ch || !(ch->name = strdup(name))) {
		free(ch);
		return EXT2_ET_NO_MEMORY;
	}
	ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	ch->manager = &ferry_io;
	ch->block_size = 1024;
	ch->refcount = 1;
	ch->private_data = c;
	*out = ch;
	return 0;
}

/* libext2fs's messages, for error_message(). */
static void
error_table(void)
{
	initialize_ext2_error_table();
}

/* The superblock's geometry, checked before libext2fs sees it: its
 * bitmap reader trusts some of these (a first data block of 10 on a 1 KiB
 * filesystem overflowed its buffer, found by fuzz-fsmap-ext4), and
 * mke2fs never makes anything else. */
static int
sane_super(const struct fsmap_vol *v, char *why, size_t whylen)
{
	uint8_t sb[1024];
	uint32_t log_bs, log_cs, bpg, cpg, ipg, first, incompat, ro;
	uint32_t bsize, isize, dsize;
	uint64_t blocks;
	bool bigalloc;
	int r;

	if (v->size < 2048)
		return fsmap_fail(why, whylen, -EINVAL, "too small");
	r = v->read(v->ctx, 1024, sb, sizeof sb);
	if (r < 0)
		return r;
	blocks = fsmap_le32(sb + 4);
	first = fsmap_le32(sb + 20);
	log_bs = fsmap_le32(sb + 24);
	log_cs = fsmap_le32(sb + 28);
	bpg = fsmap_le32(sb + 32);
	cpg = fsmap_le32(sb + 36);
	ipg = fsmap_le32(sb + 40);
	isize = fsmap_le32(sb + 76) >= 1 ? fsmap_le16(sb + 88) : 128;
	incompat = fsmap_le32(sb + 96);
	ro = fsmap_le32(sb + 100);
	dsize = fsmap_le16(sb + 254);
	bigalloc = ro & EXT4_FEATURE_RO_COMPAT_BIGALLOC;
	if (incompat & EXT4_FEATURE_INCOMPAT_64BIT)
		blocks |= (uint64_t)fsmap_le32(sb + 0x150) << 32;
	if (fsmap_le16(sb + 56) != EXT2_SUPER_MAGIC || log_bs > 6)
		return fsmap_fail(why, whylen, -EINVAL, "bad superblock");
	bsize = 1024u << log_bs;
	if ((bigalloc ? log_cs < log_bs || log_cs > log_bs + 16 :
			log_cs != log_bs) ||
	    first != (bsize == 1024 && !bigalloc ? 1u : 0u) ||
	    blocks <= first || cpg == 0 || cpg % 8 || cpg > 8 * bsize ||
	    (uint64_t)bpg != (uint64_t)cpg << (log_cs - log_bs) ||
	    ipg == 0 || ipg > 8 * bsize || isize < 128 || isize > bsize ||
	    (isize & (isize - 1)) ||
	    ((incompat & EXT4_FEATURE_INCOMPAT_64BIT) ?
	     dsize < 32 || dsize > bsize || (dsize & (dsize - 1)) :
	     dsize != 0 && dsize != 32))
		return fsmap_fail(why, whylen, -EINVAL, "superblock geometry "
				  "that mke2fs does not make (first data "
				  "block %u, %u blocks per group)", first, bpg);
	return 0;
}

static int
ext_free(const struct fsmap_vol *v, struct ferry_extents *fr, char *why,
	 size_t whylen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct chan c = { .v = v };
	char name[64];
	ext2_filsys fs = NULL;
	errcode_t e;
	blk64_t first, end, blk, next;
	uint64_t bsize;
	int r = 0;

	pthread_once(&once, error_table);
	r = sane_super(v, why, whylen);
	if (r < 0)
		return r;
	snprintf(name, sizeof name, "ferry:%p", (void *)&c);
	e = ext2fs_open2(name, NULL, EXT2_FLAG_64BITS | EXT2_FLAG_SKIP_MMP, 0,
			 0, &ferry_io, &fs);
	if (e) {
		if (c.err)
			return c.err;
		return fsmap_fail(why, whylen, -EINVAL, "libext2fs: %s",
				  error_message(e));
	}
	bsize = (uint64_t)fs->blocksize;
	if (fs->super->s_feature_incompat & EXT3_FEATURE_INCOMPAT_RECOVER) {
		r = fsmap_fail(why, whylen, -EINVAL, "the journal needs "
			       "recovery: bitmaps may lag it");
		goto out;
	}
	if (!(fs->super->s_state & EXT2_VALID_FS) ||
	    (fs->super->s_state & EXT2_ERROR_FS)) {
		r = fsmap_fail(why, whylen, -EINVAL, "not cleanly unmounted, "
			       "or with errors (state %#x): bitmaps may lag",
			       fs->super->s_state);
		goto out;
	}
	if (ext2fs_blocks_count(fs->super) > v->size / bsize) {
		r = fsmap_fail(why, whylen, -EINVAL, "%llu blocks of %llu "
			       "bytes do not fit in the volume",
			       (unsigned long long)ext2fs_blocks_count(fs->super),
			       (unsigned long long)bsize);
		goto out;
	}
	e = ext2fs_read_block_bitmap(fs);
	if (e) {
		r = c.err ? c.err : fsmap_fail(why, whylen, -EINVAL,
					       "libext2fs: block bitmap: %s",
					       error_message(e));
		goto out;
	}
	first = ext2fs_get_block_bitmap_start2(fs->block_map);
	end = ext2fs_get_block_bitmap_end2(fs->block_map);
	for (blk = first; r == 0 && blk <= end; blk = next) {
		blk64_t free_at;

		if (ext2fs_find_first_zero_block_bitmap2(fs->block_map, blk,
							 end, &free_at))
			break;		/* ENOENT: no free block left */
		if (ext2fs_find_first_set_block_bitmap2(fs->block_map, free_at,
							end, &next))
			next = end + 1;
		r = fsmap_add_free(fr, free_at * bsize,
				   (next - free_at) * bsize);
	}
out:
	ext2fs_close_free(&fs);
	return r;
}

const struct fsmap_fs fsmap_ext2 = { .name = "ext2", .free = ext_free };
const struct fsmap_fs fsmap_ext3 = { .name = "ext3", .free = ext_free };
const struct fsmap_fs fsmap_ext4 = { .name = "ext4", .free = ext_free };
