#!/usr/bin/env bash
# Used blocks: a GPT disk with FAT, ext4 (4K and 1K blocks), XFS, NTFS, swap
# and an LVM2 PV holding an ext4 LV, each filled after a large random file
# was written and deleted, exported as a whole-disk loop device. Only the
# filesystems' used blocks may cross (partclone counts them), deleted bytes
# never; every partition view passes its fsck and holds the source's files;
# --all-blocks sends the deleted bytes; file:// maps the same.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/serverdisk.sh"
requires losetup sgdisk mkfs.vfat mkfs.ext4 mkfs.xfs mkntfs ntfs-3g mkswap \
	pvcreate vgcfgrestore mcopy partclone.extfs partclone.xfs partclone.ntfs \
	partclone.fat e2fsck xfs_repair fsck.vfat ntfsfix qemu-img python3 jq fincore
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (loop devices)"; exit 77; }

test_cleanup() {
	local m
	for m in "$T"/fsm/*; do
		mountpoint -q "$m" 2>/dev/null && umount "$m"
	done
	detach_loops
}

disk=$T/disk.img
server_disk "$disk" "$T/src" || fail "could not build the server disk"
loop_at "$disk" 0 $((SERVER_DISK_MIB * MiB)) || fail "losetup"
dev=$LOOP
ok "server disk on $dev: $(wc -l < "$T/src/needles") needles of deleted data"

# What must cross: partclone's used count of each filesystem, the swap
# header, the LVM label and metadata (pe_start), and everything outside the
# partitions (tables, the gap with the boot loader's bytes).
clone_used() {	# clone_used TOOL OFFSET LENGTH: sets u
	local pos len st
	loop_at "$disk" "$2" "$3" || return 1
	rm -f "$T/dom"
	"$1" -D -s "$LOOP" -o "$T/dom" -L "$T/partclone.log" -q >/dev/null 2>&1 || return 1
	detach "$LOOP"
	u=0
	while read -r pos len st; do
		[ "$st" = + ] && u=$((u + len))
	done < <(grep -v '^#' "$T/dom")
	return 0
}
expect=$((SERVER_DISK_MIB * MiB))
while read -r num start size kind; do
	expect=$((expect - size * MiB))
	case $kind in
	vfat) tool=partclone.fat ;;
	ext4*) tool=partclone.extfs ;;
	xfs) tool=partclone.xfs ;;
	ntfs) tool=partclone.ntfs ;;
	swap) expect=$((expect + 4096)); continue ;;
	lvm) expect=$((expect + MiB))
	     clone_used partclone.extfs $(((start + 1 + LV_PE * 4) * MiB)) $((LV_MIB * MiB)) ||
		fail "partclone of the LV"
	     expect=$((expect + u)); continue ;;
	esac
	clone_used $tool $((start * MiB)) $((size * MiB)) || fail "partclone of p$num"
	[ "$u" -gt 0 ] || fail "partclone counted nothing in p$num"
	expect=$((expect + u))
done <<< "$SERVER_PARTS"
ok "partclone: $((expect / MiB)) MiB must cross of $SERVER_DISK_MIB MiB"

start_export srv="$dev"
api /v1/info >/dev/null
jq -e '.disks[0].volumes | length == 8' "$T/body" >/dev/null ||
	fail "volumes in /v1/info: $(cat "$T/body")"
for w in p1:vfat p2:ext4 p3:ext4 p4:xfs p5:ntfs p6:swap p7:LVM2_member p7/*/root:ext4; do
	jq -e --arg w "${w%%:*}" --arg t "${w#*:}" \
		'[.disks[0].volumes[] | select((.where | test("^" + ($w | sub("\\*"; "[^/]+")) + "$")) and .type == $t and .map != "unknown" and .used < .length)] | length == 1' \
		"$T/body" >/dev/null || fail "volume $w not mapped: $(jq -c .disks[0].volumes "$T/body")"
done
used=$(jq '.disks[0].used' "$T/body")
ok "/v1/info maps every volume; used $((used / MiB)) MiB"
api /v1/disks >/dev/null
[ "$(jq '.disks[0].used' "$T/body")" = "$used" ] || fail "/v1/disks used differs"
[ "$(jq '.disks[0].allocated' "$T/body")" = $((SERVER_DISK_MIB * MiB)) ] ||
	fail "allocated is not the whole device: $(cat "$T/body")"
[ "$used" -ge "$expect" ] || fail "served $used bytes, fewer than partclone's $expect"

mnt=$T/mnt
mount_ferry "$URL" "$mnt" "cache=$T/cache,views=all"
wait_state "$mnt" srv complete 120
got=$(status "$mnt" srv data_bytes)
[ "$(status "$mnt" srv used)" = "$used" ] || fail "status.json used differs"
python3 -c "import sys; g, e = int(sys.argv[1]), int(sys.argv[2]); sys.exit(g > e * 1.05)" "$got" "$expect" ||
	fail "received $got bytes, more than 1.05 x $expect"
ok "received $((got / MiB)) MiB for $((expect / MiB)) MiB used (all-blocks: $SERVER_DISK_MIB MiB)"

# No deleted byte in the cache (the all-blocks mount below finds them).
find_needles() {	# find_needles FILE...: how many needles occur
	python3 - "$T/src/needles" "$@" <<'PY'
import sys
needles = [bytes.fromhex(l) for l in open(sys.argv[1]).read().split()]
found = set()
for path in sys.argv[2:]:
    with open(path, 'rb') as f:
        tail = b''
        while True:
            b = f.read(64 << 20)
            if not b:
                break
            buf = tail + b
            for i, n in enumerate(needles):
                if i not in found and n in buf:
                    found.add(i)
            tail = buf[-64:]
print(len(found))
PY
}
n=$(find_needles $(find "$T/cache" -type f -size +1M)) || fail "needle search"
[ "$n" = 0 ] || fail "$n deleted-data needles are in the cache"
ok "no deleted data in the cache"

# What no filesystem holds crosses as it is: the protective MBR and GPT,
# the boot loader's bytes in the gap, the backup GPT at the end.
same_mib() {	# same_mib MIB: that MiB of the mounted disk equals the source's
	cmp <(dd if="$disk" bs=1M skip="$1" count=1 status=none) \
		<(dd if="$mnt/srv.raw" bs=1M skip="$1" count=1 status=none) >/dev/null
}
same_mib 0 && same_mib $GAP_MIB && same_mib $((SERVER_DISK_MIB - 1)) ||
	fail "tables or the gap between partitions differ from the source"
ok "tables and the boot loader gap crossed as they are"

# Every partition view: fsck clean, and the source's files.
fsm=$T/fsm
mkdir -p "$fsm"
fsck.vfat -n "$mnt/srv.p1.raw" >"$T/fsck.log" 2>&1 || fail "fsck.vfat: $(cat "$T/fsck.log")"
for p in 2 3; do
	e2fsck -fn "$mnt/srv.p$p.raw" >"$T/fsck.log" 2>&1 || fail "e2fsck p$p: $(cat "$T/fsck.log")"
done
xfs_repair -n -f "$mnt/srv.p4.raw" >"$T/fsck.log" 2>&1 || fail "xfs_repair: $(tail -5 "$T/fsck.log")"
ntfsfix -n "$mnt/srv.p5.raw" >"$T/fsck.log" 2>&1 || fail "ntfsfix: $(cat "$T/fsck.log")"
lvoff=$(((1 + LV_PE * 4) * MiB))
loop_at "$mnt/srv.p7.raw" $lvoff $((LV_MIB * MiB)) || fail "losetup of the LV"
lvdev=$LOOP
e2fsck -fn "$lvdev" >"$T/fsck.log" 2>&1 || fail "e2fsck of the LV: $(cat "$T/fsck.log")"
ok "fsck clean: vfat, ext4 4K, ext4 1K, xfs, ntfs, ext4 in the LV"

check_sums() {	# check_sums DIR NAME
	(cd "$1" && sha256sum --quiet -c "$T/src/$2.sha") >"$T/sums.log" 2>&1 ||
		fail "files of $2 differ: $(head -5 "$T/sums.log")"
}
for p in 2 3 4; do
	mkdir -p "$fsm/p$p"
	loop_at "$mnt/srv.p$p.raw" 0 "$(stat -c %s "$mnt/srv.p$p.raw")" || fail "losetup p$p"
	opts=ro; [ $p = 4 ] && opts=ro,norecovery
	mount -o $opts "$LOOP" "$fsm/p$p" || fail "mount p$p"
	check_sums "$fsm/p$p" p$p
	umount "$fsm/p$p"
done
mkdir -p "$fsm/p5" "$fsm/lv"
ntfs-3g -o ro "$mnt/srv.p5.raw" "$fsm/p5" || fail "ntfs-3g of p5"
check_sums "$fsm/p5" p5
umount "$fsm/p5"
mount -o ro "$lvdev" "$fsm/lv" || fail "mount of the LV"
check_sums "$fsm/lv" lv
umount "$fsm/lv"
mkdir -p "$fsm/p1"
mcopy -i "$mnt/srv.p1.raw" ::/EFI/os-release ::/EFI/grubx64.efi "$fsm/p1/" || fail "mcopy from p1"
check_sums "$fsm/p1" p1
ok "every file equals the source's (ext4 x3, xfs, ntfs, vfat)"

# The qcow2 view is the raw view, at about the used size.
qemu-img compare -f raw -F qcow2 "$mnt/srv.raw" "$mnt/srv.qcow2" >/dev/null ||
	fail "qemu-img compare raw qcow2"
q=$(stat -c %s "$mnt/srv.qcow2")
v=$(stat -c %s "$mnt/srv.vhd")
python3 -c "import sys; q, v, u = map(int, sys.argv[1:]); sys.exit(q > u * 1.05 + (1 << 20) or v > u * 1.5)" "$q" "$v" "$used" ||
	fail "views too large: qcow2 $q, vhd $v for $used used"
ok "qcow2 view $((q / MiB)) MiB, vhd $((v / MiB)) MiB for $((used / MiB)) MiB used"

# --all-blocks: every block as it is, deleted bytes too; it equals the
# default disk on every used range, and the default is zeros elsewhere.
start_export --all-blocks srv="$dev"
mnt2=$T/mnt2
mount_ferry "$URL" "$mnt2" "cache=$T/cache2,views=raw"
n=$(find_needles "$mnt2/srv.raw") || fail "needle search"
total=$(wc -l < "$T/src/needles")
[ $((n * 2)) -ge "$total" ] || fail "--all-blocks: only $n of $total needles"
ok "--all-blocks sends deleted data: $n of $total needles; $(status "$mnt2" srv data_bytes) bytes"
python3 - "$mnt/.ferry/map.json" "$mnt/srv.raw" "$mnt2/srv.raw" <<'PY' || fail "default and --all-blocks disagree"
import json, sys
d = json.load(open(sys.argv[1]))['disks'][0]
a, b = open(sys.argv[2], 'rb'), open(sys.argv[3], 'rb')

def same(off, length, zeros):
    a.seek(off)
    b.seek(off)
    while length:
        n = min(length, 16 << 20)
        x, y = a.read(n), b.read(n)
        if (x.count(0) != n) if zeros else (x != y):
            sys.exit('%s at %d' % ('free space is not zeros' if zeros
                                  else 'used range differs', off))
        off += n
        length -= n

pos = 0
for off, length in d['data'] + [[d['size'], 0]]:
    same(pos, off - pos, True)
    same(off, length, False)
    pos = off + length
PY
ok "default = --all-blocks on used ranges, zeros elsewhere"

# file:// maps the same disk the same way.
mnt3=$T/mnt3
mount_ferry "file://$dev" "$mnt3" "cache=none,views=raw"
[ "$(status "$mnt3" "${dev##*/}" used)" = "$used" ] ||
	fail "file:// used $(status "$mnt3" "${dev##*/}" used), exporter $used"
jq -e '.disks[0].volumes | length == 8' "$mnt3/.ferry/source.json" >/dev/null ||
	fail "file:// source.json: $(cat "$mnt3/.ferry/source.json")"
cmp "$mnt/srv.raw" "$mnt3/${dev##*/}.raw" || fail "file:// raw differs from the export's"
ok "file:// $dev: same map, same bytes"

# An image of the disk maps the same volumes, read through libqcow.
qemu-img convert -O qcow2 "$disk" "$T/disk.qcow2" || fail "qemu-img convert"
"$FERRY_EXPORT" --print-map a="$dev" b="$T/disk.qcow2" > "$T/maps.json" 2>>"$T/export.log" ||
	fail "--print-map"
jq -e '[.[] | [.volumes[] | [.where, .type, .used, .map]]] | .[0] == .[1] and (.[0] | length) == 8' \
	"$T/maps.json" >/dev/null || fail "the qcow2 image maps otherwise: $(jq -c . "$T/maps.json")"
ok "a qcow2 image of the disk maps the same 8 volumes"

# Probing an image file's partitions leaves its page cache alone (a block
# device's probe windows are dropped first; a file's cache is never stale,
# and dropping it sent the exporter's reads of those bytes to the disk).
cat "$disk" >/dev/null
res0=$(( $(fincore -bno RES "$disk") ))
"$FERRY_EXPORT" --print-map c="$disk" >/dev/null 2>>"$T/export.log" || fail "--print-map of the file"
res1=$(( $(fincore -bno RES "$disk") ))
[ "$res1" = "$res0" ] || fail "probing $disk dropped $((res0 - res1)) bytes of its page cache"
ok "probing the image file kept its $res0 cached bytes"
echo "PASS"
