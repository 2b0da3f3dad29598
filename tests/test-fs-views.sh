#!/bin/bash
# Image views over a real mount: NAME.qcow2, NAME.vhd, NAME.fixed.vhd and
# NAME.pN.raw are images of the exported disks that qemu-img and libyal's
# tools accept and that hold the same bytes; metadata reads fetch nothing;
# the bytes are the same however and whenever they are read; partition
# views hold filesystems debugfs can read; a hostile partition table gives
# no partition views and a log line.
. "$(dirname "$0")/functions.sh"
requires qemu-img qcowinfo vhdiinfo sgdisk sfdisk mkfs.ext4 debugfs jq sha256sum

M=$((1024 * 1024))

# An ext4 image holding /etc/hostname = $2, of $3 MiB.
make_fs() {
	rm -rf "$T/root" && mkdir -p "$T/root/etc" && echo "$2" > "$T/root/etc/hostname"
	rm -f "$1" && truncate -s $(($3 * M)) "$1"
	mkfs.ext4 -q -d "$T/root" "$1" || fail "mkfs.ext4 -d"
}

# GPT: p1 ext4 (40 MiB at 1 MiB), p2 empty (8 MiB).
truncate -s $((64 * M)) "$T/gpt.raw"
sgdisk -n 1:2048:+40M -t 1:8300 -n 2:0:+8M "$T/gpt.raw" >/dev/null || fail sgdisk
make_fs "$T/p.img" ferry-gpt-host 16
dd if="$T/p.img" of="$T/gpt.raw" bs=1M seek=1 conv=sparse,notrunc status=none

# MBR: p1 primary, p2 extended holding p5 (ext4) and p6.
truncate -s $((64 * M)) "$T/mbr.raw"
printf 'label: dos\np1 : start=2048, size=20M, type=83\np2 : start=24M, size=38M, type=5\np5 : size=20M, type=83\np6 : size=10M, type=7\n' |
	sfdisk -q "$T/mbr.raw" >/dev/null || fail sfdisk
P5=$(sfdisk -J "$T/mbr.raw" | jq '.partitiontable.partitions[] | select(.node | endswith("5")) | .start')
make_fs "$T/p.img" ferry-mbr-logical 12
dd if="$T/p.img" of="$T/mbr.raw" bs=512 seek="$P5" conv=sparse,notrunc status=none

# Mixed data and holes, a size that is not a multiple of 512.
make_disk "$T/mixed.raw"

# Hostile: an MBR whose partition ends past the disk.
truncate -s $((8 * M)) "$T/bad.raw"
printf 'label: dos\nstart=2048, size=4M, type=83\n' | sfdisk -q "$T/bad.raw" >/dev/null
printf '\xff\xff\x00\x00' | dd of="$T/bad.raw" bs=1 seek=$((446 + 12)) conv=notrunc status=none

start_export gpt="$T/gpt.raw" mbr="$T/mbr.raw" mixed="$T/mixed.raw" bad="$T/bad.raw"

# Reading the images' metadata fetches nothing: a cold cache, no hydration
# and no partition scan (which would cache the first chunk), so any disk
# read at all would show in data_bytes; then reading data does.
MNT="$T/meta"
mount_ferry "$URL" "$MNT" "cache=$T/cache-meta,prefetch=0,views=qcow2,vhd,fixedvhd"
for d in gpt mixed; do
	qemu-img info "$MNT/$d.qcow2" >/dev/null || fail "qemu-img info $d.qcow2"
	qemu-img info -f vpc "$MNT/$d.vhd" >/dev/null || fail "qemu-img info $d.vhd"
	qcowinfo "$MNT/$d.qcow2" >/dev/null || fail "qcowinfo $d.qcow2"
	vhdiinfo "$MNT/$d.vhd" >/dev/null || fail "vhdiinfo $d.vhd"
	head -c 65536 "$MNT/$d.qcow2" >/dev/null
	# A fixed VHD's only metadata is its footer (vhdiinfo also reads
	# the first sector, which is disk data, so it is not run here).
	tail -c 512 "$MNT/$d.fixed.vhd" >/dev/null
done
got=$(jq '[.disks[].data_bytes] | add' "$MNT/.ferry/status.json")
[ "$got" = 0 ] || fail "metadata reads fetched $got bytes"
cat "$MNT/gpt.qcow2" >/dev/null
got=$(status "$MNT" gpt data_bytes)
[ "$got" -gt 0 ] || fail "reading gpt.qcow2 whole fetched nothing"
unmount_ferry "$MNT"
ok "metadata of qcow2 and VHD views read with 0 bytes fetched; their data fetches ($got bytes for gpt.qcow2)"
MNT="$T/mnt"
mount_ferry "$URL" "$MNT" "cache=$T/cache,prefetch=0"

# The listing and status.json agree, and show what is expected.
ls "$MNT" | sort > "$T/ls"
jq -r '.disks[].views[].name' "$MNT/.ferry/status.json" | sort > "$T/status-names"
cmp -s "$T/ls" "$T/status-names" || fail "listing and status.json differ: $(diff "$T/ls" "$T/status-names")"
for f in gpt.raw gpt.qcow2 gpt.vhd gpt.fixed.vhd gpt.p1.raw gpt.p2.raw \
	 mbr.p1.raw mbr.p5.raw mbr.p6.raw mixed.qcow2 bad.raw bad.qcow2; do
	grep -qx "$f" "$T/ls" || fail "$f missing: $(cat "$T/ls")"
done
grep -q '^mbr.p2' "$T/ls" && fail "the extended partition itself is shown"
grep -q '^mixed.p' "$T/ls" && fail "partition views for a disk without a table"
grep -q '^bad.p' "$T/ls" && fail "partition views from a hostile table"
grep -q "bad: no partition views: MBR partition 1 is outside the disk" "$T/ferryfs.log" ||
	fail "no log line for the hostile table"
[ "$(status "$MNT" gpt partition_table)" = gpt ] || fail "gpt table type"
[ "$(status "$MNT" mbr partition_table)" = mbr ] || fail "mbr table type"
[ "$(status "$MNT" mixed partition_table)" = null ] || fail "mixed table type"
ok "listing: $(tr '\n' ' ' < "$T/ls")"

# Without hydration, the mount read only the first chunk of each disk
# (1 MiB, the default), for its partition table.
for d in gpt mbr mixed bad; do
	got=$(status "$MNT" "$d" data_bytes)
	[ "$got" -le $M ] || fail "$d: $got bytes fetched at mount"
done

# Sizes: qemu, qcowinfo and vhdiinfo read back exactly the disk size.
for v in "qcow2 qcow2" "vhd vpc" "fixed.vhd vpc"; do
	set -- $v
	got=$(qemu-img info -f "$2" --output=json "$MNT/gpt.$1" | jq '."virtual-size"')
	[ "$got" = $((64 * M)) ] || fail "qemu-img reads gpt.$1 as $got bytes"
done
grep -q "Media size.*(67108864 bytes)" <<<"$(qcowinfo "$MNT/gpt.qcow2")" || fail "qcowinfo size"
grep -q "Media size.*(67108864 bytes)" <<<"$(vhdiinfo "$MNT/gpt.vhd")" || fail "vhdiinfo size"
grep -q "Disk type.*Fixed" <<<"$(vhdiinfo "$MNT/gpt.fixed.vhd")" || fail "vhdiinfo fixed"
ok "qemu-img, qcowinfo and vhdiinfo read the disk size exactly"

# Only allocated clusters and blocks are stored.
alloc=$(status "$MNT" mixed allocated)
qsize=$(stat -c %s "$MNT/mixed.qcow2")
vsize=$(stat -c %s "$MNT/mixed.vhd")
[ "$qsize" -lt $((alloc + 8 * M)) ] || fail "mixed.qcow2 is $qsize bytes for $alloc allocated"
[ "$vsize" -lt $((alloc + 16 * M)) ] || fail "mixed.vhd is $vsize bytes for $alloc allocated"
ok "mixed: $alloc allocated, qcow2 view $qsize, VHD view $vsize bytes"

# The images are valid and hold the source's bytes.
for d in gpt mixed; do
	qemu-img check "$MNT/$d.qcow2" > "$T/check" 2>&1 || fail "qemu-img check $d.qcow2: $(cat "$T/check")"
	grep -q "No errors were found" "$T/check" || fail "qemu-img check $d.qcow2: $(cat "$T/check")"
	qemu-img compare -f raw -F qcow2 "$T/$d.raw" "$MNT/$d.qcow2" >/dev/null || fail "$d.qcow2 differs"
	qemu-img compare -f raw -F vpc "$T/$d.raw" "$MNT/$d.vhd" >/dev/null || fail "$d.vhd differs"
	qemu-img compare -f raw -F vpc "$T/$d.raw" "$MNT/$d.fixed.vhd" >/dev/null || fail "$d.fixed.vhd differs"
done
ok "qemu-img check is clean; qcow2, VHD and fixed VHD views equal the source"

# qemu-img convert from each view gives the disk back.
for v in "qcow2 qcow2" "vhd vpc" "fixed.vhd vpc" "raw raw"; do
	set -- $v
	qemu-img convert -f "$2" -O qcow2 "$MNT/mixed.$1" "$T/out.qcow2" || fail "convert from mixed.$1"
	qemu-img compare -f raw -F qcow2 "$T/mixed.raw" "$T/out.qcow2" >/dev/null || fail "convert from mixed.$1 differs"
done
rm -f "$T/out.qcow2"
ok "qemu-img convert from every view"

# SEEK_DATA/SEEK_HOLE: the raw view has the source's holes, a partition
# view the holes of its slice, so cp --sparse and qemu-img skip them.
datamap() {
	python3 - "$1" "${2:-0}" "${3:-}" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
base = int(sys.argv[2])
end = int(sys.argv[3]) if sys.argv[3] else os.fstat(fd).st_size
pos = base
while pos < end:
    try:
        d = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        break
    if d >= end:
        break
    h = min(os.lseek(fd, d, os.SEEK_HOLE), end)
    print(d - base, h - base)
    pos = h
PY
}
# The view's data ranges lie inside the source's, and what the source has
# as data and the view as holes reads as zeros there: blocks the exporter
# found to be zeros (reading them earlier in this test) leave its maps.
maps_agree() {	# source-file base source-map view-map
	python3 - "$@" <<'PY'
import sys
path, base = sys.argv[1], int(sys.argv[2])
load = lambda f: [tuple(map(int, l.split())) for l in open(f) if l.strip()]
src, view = load(sys.argv[3]), load(sys.argv[4])
if not view:
    sys.exit("the view has no data at all")
for a, b in view:
    if not any(s <= a and b <= e for s, e in src):
        sys.exit("view data %d-%d is not source data" % (a, b))
with open(path, "rb") as f:
    for s, e in src:
        pos = s
        for a, b in sorted(view):
            if b <= pos or a >= e:
                continue
            if a > pos:
                f.seek(base + pos)
                if f.read(a - pos).strip(b"\0"):
                    sys.exit("source data %d-%d shown as a hole" % (pos, a))
            pos = max(pos, b)
        if pos < e:
            f.seek(base + pos)
            if f.read(e - pos).strip(b"\0"):
                sys.exit("source data %d-%d shown as a hole" % (pos, e))
PY
}
datamap "$T/mixed.raw" > "$T/map.src"
datamap "$MNT/mixed.raw" > "$T/map.view"
why=$(maps_agree "$T/mixed.raw" 0 "$T/map.src" "$T/map.view" 2>&1) || fail "SEEK_DATA/HOLE on mixed.raw: $why"
datamap "$T/gpt.raw" $M $((41 * M)) > "$T/map.src"
datamap "$MNT/gpt.p1.raw" > "$T/map.view"
why=$(maps_agree "$T/gpt.raw" $M "$T/map.src" "$T/map.view" 2>&1) || fail "SEEK_DATA/HOLE on gpt.p1.raw: $why"
ok "SEEK_DATA/SEEK_HOLE on raw and partition views follow the source ($(wc -l < "$T/map.view") data ranges in gpt.p1.raw)"

# Partition views: exact sizes and bytes, and filesystems debugfs reads.
[ "$(stat -c %s "$MNT/gpt.p1.raw")" = $((40 * M)) ] || fail "gpt.p1.raw size"
cmp <(dd if="$T/gpt.raw" bs=1M skip=1 count=40 status=none) "$MNT/gpt.p1.raw" || fail "gpt.p1.raw bytes"
[ "$(debugfs -R 'cat /etc/hostname' "$MNT/gpt.p1.raw" 2>/dev/null)" = ferry-gpt-host ] || fail "debugfs on gpt.p1.raw"
[ "$(stat -c %s "$MNT/mbr.p5.raw")" = $((20 * M)) ] || fail "mbr.p5.raw size"
[ "$(debugfs -R 'cat /etc/hostname' "$MNT/mbr.p5.raw" 2>/dev/null)" = ferry-mbr-logical ] || fail "debugfs on mbr.p5.raw"
ok "debugfs reads /etc/hostname from gpt.p1.raw and the logical mbr.p5.raw"

# The same bytes however the file is read: in parallel pieces, and after
# a remount.
SUM=$(sha256sum < "$MNT/mixed.qcow2")
n=$(stat -c %s "$MNT/mixed.qcow2")
pieces=()
for i in 0 1 2 3; do
	dd if="$MNT/mixed.qcow2" of="$T/piece$i" bs=64K skip=$((i * n / 4 / 65536)) \
		count=$(((i + 1) * n / 4 / 65536 - i * n / 4 / 65536)) status=none &
	pieces+=($!)
done
dd if="$MNT/mixed.qcow2" of="$T/piece4" bs=64K skip=$((n / 65536)) status=none
for p in "${pieces[@]}"; do wait "$p" || fail "parallel read"; done
[ "$(cat "$T"/piece[0-4] | sha256sum)" = "$SUM" ] || fail "parallel pieces differ"
rm -f "$T"/piece*
unmount_ferry "$MNT"
mount_ferry "$URL" "$MNT" "cache=$T/cache,prefetch=0"
# The exporter has seen every block by now, so the new map may have lost
# blocks of zeros and the image its clusters: the content is what stays.
qemu-img compare -q "$MNT/mixed.qcow2" "$T/mixed.raw" || fail "mixed.qcow2 changed content across a remount"
ok "mixed.qcow2 reads the same in parallel pieces, and the same content after a remount"
unmount_ferry "$MNT"

# -o views= and -o qcow2_cluster=.
mount_ferry "$URL" "$MNT" "cache=$T/cache,views=qcow2,vhd,qcow2_cluster=2M"
[ "$(ls "$MNT" | tr '\n' ' ')" = "bad.qcow2 bad.vhd gpt.qcow2 gpt.vhd mbr.qcow2 mbr.vhd mixed.qcow2 mixed.vhd " ] ||
	fail "views=qcow2,vhd shows $(ls "$MNT")"
[ "$(jq '[.disks[].views[]] | length' "$MNT/.ferry/status.json")" = 8 ] || fail "status views for views=qcow2,vhd"
qemu-img info --output=json "$MNT/mixed.qcow2" | jq -e '."cluster-size" == 2097152' >/dev/null || fail "cluster size"
qemu-img check "$MNT/mixed.qcow2" >/dev/null || fail "qemu-img check with 2M clusters"
qemu-img compare -f raw -F qcow2 "$T/mixed.raw" "$MNT/mixed.qcow2" >/dev/null || fail "2M clusters differ"
unmount_ferry "$MNT"
ok "views=qcow2,vhd with qcow2_cluster=2M"

expect_refused "$URL" "cache=$T/cache,views=isofs" "unknown view .isofs."
expect_refused "$URL" "cache=$T/cache,qcow2_cluster=3000" "power of 2"
