#!/usr/bin/env python3
"""A reader that keeps one image view open across a resync.

viewreader.py read FILE SECONDS LOG STOP: opens FILE once (O_DIRECT, so
each read is one request to ferryfs, not pages the kernel kept) and reads
128 KiB windows at random offsets until SECONDS pass or the file STOP
exists, logging "offset length sha256" per read.
viewreader.py check LOG OLD NEW: every logged read must equal OLD's or
NEW's bytes at its offset (never a mix of the two); prints how many
matched each, exits 1 naming a read that matched neither."""
import hashlib
import mmap
import os
import random
import sys
import time

WIN = 128 << 10


def read(path, seconds, log, stop):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, WIN)
    end = time.time() + float(seconds)
    with open(log, "w") as out:
        while time.time() < end and not os.path.exists(stop):
            size = os.fstat(fd).st_size
            off = random.randrange(max(1, size // WIN)) * WIN
            n = os.preadv(fd, [buf], off)
            out.write(f"{off} {n} {hashlib.sha256(buf[:n]).hexdigest()}\n")
            out.flush()
    os.close(fd)


def check(log, old, new):
    imgs = []
    for p in (old, new):
        with open(p, "rb") as f:
            imgs.append(f.read())
    counts = [0, 0, 0]
    for line in open(log):
        off, n, h = line.split()
        off, n = int(off), int(n)
        hits = [hashlib.sha256(img[off:off + n]).hexdigest() == h and
                len(img[off:off + n]) == n for img in imgs]
        if not any(hits):
            sys.exit(f"the read of {n} bytes at {off} is neither the old "
                     f"nor the new image")
        counts[0] += hits[0] and not hits[1]
        counts[1] += hits[1] and not hits[0]
        counts[2] += hits[0] and hits[1]
    print(f"{counts[0]} old, {counts[1]} new, {counts[2]} either")
    if counts[1] == 0:
        sys.exit("no read saw the new image")


if __name__ == "__main__":
    if sys.argv[1] == "read":
        read(*sys.argv[2:6])
    else:
        check(*sys.argv[2:5])
