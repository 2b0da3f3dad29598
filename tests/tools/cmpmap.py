#!/usr/bin/env python3
"""cmpmap.py MAP.json DISK SOURCE IMAGE: IMAGE (a raw file) is SOURCE with
the free space of its filesystems zeroed, as the mount's map says: every
data range of disk DISK in .ferry/map.json equals SOURCE's bytes there, and
everything else in IMAGE is zeros. Prints the data bytes compared; exits 1
naming the first offset that differs."""
import json
import sys

PIECE = 4 << 20


def main():
    mapfile, disk, source, image = sys.argv[1:5]
    with open(mapfile) as f:
        m = json.load(f)
    d = next(x for x in m["disks"] if x["name"] == disk)
    size = d["size"]
    zeros = bytes(PIECE)
    compared = 0
    with open(source, "rb") as s, open(image, "rb") as o:
        at = 0
        for off, length in d["data"] + [[size, 0]]:
            # A hole of the map: zeros in the image.
            while at < off:
                n = min(PIECE, off - at)
                o.seek(at)
                if o.read(n) != zeros[:n]:
                    sys.exit(f"image: not zeros in the hole at {at}")
                at += n
            end = off + length
            while at < end:
                n = min(PIECE, end - at)
                s.seek(at)
                o.seek(at)
                a, b = s.read(n), o.read(n)
                if a != b:
                    k = next(i for i in range(n) if a[i:i+1] != b[i:i+1])
                    sys.exit(f"image differs from the source at {at + k}")
                compared += n
                at += n
    print(compared)


if __name__ == "__main__":
    main()
