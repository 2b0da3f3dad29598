#!/usr/bin/env python3
"""Writes the synthetic seeds of the fsmap fuzz targets (the others are
made by mkfs tools: see tests/fuzz/corpus/README.md). Run from the top of the
tree: python3 tests/fuzz/mkseeds.py

fsmap-xfs/v5-2ag: a v5 XFS of 2 AGs of 16 blocks of 512 bytes. AG 0's
  by-block free-space btree has a root node (block 2) over two leaves
  (blocks 3 and 4): free extents (6,2) (9,1) | (12,3); AG 1's is one leaf
  (block 2): (5,7). AG 1's blocks 12-15 are the internal log, whose
  first record (cycle 1) is an unmount record. The superblock's free count
  (13) says it was cleanly unmounted too. The unit test checks the parser
  against this layout.
fsmap-ntfs/ntfs-2m-rstr: ntfs-2m (made by mkntfs) whose $LogFile starts
  with two restart pages as Windows leaves them after a clean shutdown (a
  client in use, the clean flag set), so that the fuzzer starts inside the
  restart page checks.
fsmap-disk/mbr-2: an MBR disk of 1 MiB: p1 (256 KiB at 128 KiB) a swap
  area, p2 (256 KiB at 512 KiB) with 16 KiB of random bytes, and 16 KiB of
  "boot loader" bytes in the gap after the MBR.
"""
import os
import random
import struct

BS = 512
NULL = 0xffffffff


def xfs_v5():
    agblocks, agcount = 16, 2
    img = bytearray(agblocks * agcount * BS)
    sb = bytearray(BS)
    sb[0:4] = b'XFSB'
    struct.pack_into('>I', sb, 4, BS)                      # blocksize
    struct.pack_into('>Q', sb, 8, agblocks * agcount)      # dblocks
    struct.pack_into('>I', sb, 84, agblocks)               # agblocks
    struct.pack_into('>I', sb, 88, agcount)                # agcount
    struct.pack_into('>H', sb, 100, 5)                     # version 5
    struct.pack_into('>H', sb, 102, BS)                    # sectsize
    struct.pack_into('>Q', sb, 144, 6 + 7)                 # fdblocks: clean
    struct.pack_into('>Q', sb, 48, (1 << 4) | 12)          # logstart: AG 1
    struct.pack_into('>I', sb, 96, 4)                      # logblocks
    sb[124] = 4                                            # agblklog
    img[0:BS] = sb

    def block(ag, agbno, level, nrecs, right, body):
        b = bytearray(BS)
        b[0:4] = b'AB3B'
        struct.pack_into('>HHII', b, 4, level, nrecs, NULL, right)
        daddr = (ag * agblocks + agbno) * BS // 512
        struct.pack_into('>Q', b, 16, daddr)
        struct.pack_into('>I', b, 48, ag)
        b[56:56 + len(body)] = body
        off = (ag * agblocks + agbno) * BS
        img[off:off + BS] = b

    def agf(ag, root, levels, free):
        a = bytearray(BS)
        a[0:4] = b'XAGF'
        struct.pack_into('>III', a, 4, 1, ag, agblocks)
        struct.pack_into('>I', a, 16, root)
        struct.pack_into('>I', a, 28, levels)
        struct.pack_into('>I', a, 52, free)
        off = ag * agblocks * BS + BS                       # sector 1
        img[off:off + BS] = a

    recs = lambda rs: b''.join(struct.pack('>II', s, n) for s, n in rs)
    maxrecs = (BS - 56) // 12
    keys = struct.pack('>II', 6, 2) + struct.pack('>II', 12, 3)
    node = keys.ljust(maxrecs * 8, b'\0') + struct.pack('>II', 3, 4)
    block(0, 2, 1, 2, NULL, node)
    block(0, 3, 0, 2, 4, recs([(6, 2), (9, 1)]))
    block(0, 4, 0, 1, NULL, recs([(12, 3)]))
    agf(0, 2, 2, 6)
    block(1, 2, 0, 1, NULL, recs([(5, 7)]))
    agf(1, 2, 1, 7)
    log = (agblocks + 12) * BS
    h = bytearray(BS)
    struct.pack_into('>IIII', h, 0, 0xfeedbabe, 1, 2, 512)   # magic cycle v2 len
    struct.pack_into('>I', h, 40, 1)                         # one op
    struct.pack_into('>I', h, 320, 32768)                    # h_size
    img[log:log + BS] = h
    op = bytearray(BS)
    struct.pack_into('>IIBB', op, 0, 1, 8, 0xaa, 0x20)       # unmount op
    img[log + BS:log + 2 * BS] = op
    return bytes(img)


def mbr_disk():
    KiB = 1024
    rnd = random.Random(7)
    img = bytearray(1024 * KiB)
    img[512:512 + 16 * KiB] = bytes(rnd.getrandbits(8) for _ in range(16 * KiB))
    for i, (start, size, typ) in enumerate([(256, 512, 0x82), (1024, 512, 0x83)]):
        struct.pack_into('<B3sB3sII', img, 446 + 16 * i, 0, b'\0\0\0', typ,
                         b'\0\0\0', start, size)
    img[510:512] = b'\x55\xaa'
    swap = 128 * KiB
    img[swap + 4096 - 10:swap + 4096] = b'SWAPSPACE2'
    img[swap + 8192:swap + 16384] = bytes(rnd.getrandbits(8) for _ in range(8192))
    p2 = 512 * KiB
    img[p2:p2 + 16 * KiB] = bytes(rnd.getrandbits(8) for _ in range(16 * KiB))
    return bytes(img)


def ntfs_rstr(img):
    img = bytearray(img)
    le16 = lambda o: struct.unpack_from('<H', img, o)[0]
    le32 = lambda o: struct.unpack_from('<I', img, o)[0]
    csize = le16(11) * img[13]
    rec = struct.unpack_from('<Q', img, 48)[0] * csize + 2 * 1024
    o = rec + le16(rec + 20)
    while le32(o) != 0x80:
        o += le32(o + 4)
    runs = o + le16(o + 32)
    lb, ob = img[runs] & 15, img[runs] >> 4
    log = int.from_bytes(img[runs + 1 + lb:runs + 1 + lb + ob], 'little') * csize
    for k in range(2):
        pg = bytearray(4096)
        pg[0:4] = b'RSTR'
        struct.pack_into('<HH', pg, 4, 0x1e, 9)
        struct.pack_into('<IIHHH', pg, 0x10, 4096, 4096, 0x40, 1, 1)
        struct.pack_into('<QHHHH', pg, 0x40, 0x1000 + k, 1, 0xffff, 0, 2)
        struct.pack_into('<H', pg, 0x1e, 7)
        for i in range(1, 9):
            struct.pack_into('<H', pg, i * 512 - 2, 7)
        img[log + k * 4096:log + (k + 1) * 4096] = pg
    return bytes(img)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)


base = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
write(os.path.join(base, 'fsmap-xfs', 'v5-2ag'), xfs_v5())
write(os.path.join(base, 'fsmap-disk', 'mbr-2'), mbr_disk())
with open(os.path.join(base, 'fsmap-ntfs', 'ntfs-2m'), 'rb') as f:
    write(os.path.join(base, 'fsmap-ntfs', 'ntfs-2m-rstr'), ntfs_rstr(f.read()))
