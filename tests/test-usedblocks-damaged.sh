#!/usr/bin/env bash
# Used blocks on damaged filesystems: a disk whose ext4 has a bitmap that
# fails its checksum, whose XFS has an AGF that disagrees with its btree,
# whose NTFS has a torn $Bitmap record (and two more that were not shut
# down cleanly: the dirty flag, a journal to replay), whose FAT claims more sectors than
# its partition, and whose LVM2 PVs hold lying (an LV past the PV's end)
# and truncated metadata. Each is served whole (all data), with one log
# line that says why, and the exporter neither crashes nor drops a byte.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/serverdisk.sh"
requires losetup sgdisk mkfs.ext4 mkfs.xfs mkntfs mkfs.vfat pvcreate \
	vgcreate python3 jq ntfs-3g ntfsinfo
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (loop devices)"; exit 77; }

test_cleanup() {
	mountpoint -q "$T/m" 2>/dev/null && umount "$T/m"
	detach_loops
}

disk=$T/disk.img
truncate -s $((800 * MiB)) "$disk"
# number start(MiB) size(MiB)
layout="1 1 64
2 65 320
3 385 64
4 449 64
5 513 64
6 577 64
7 641 64
8 705 64"
while read -r n s z; do
	sgdisk -n "$n:$((s * 2048)):+$((z * 2048))" "$disk" >/dev/null || fail "sgdisk"
done <<< "$layout"
part() {	# part N: a loop device on partition N, in $LOOP
	local n s z
	read -r n s z < <(sed -n "${1}p" <<< "$layout")
	loop_at "$disk" $((s * MiB)) $((z * MiB))
}
mkdir -p "$T/m"
part 1 && mkfs.ext4 -q -F "$LOOP" && mount "$LOOP" "$T/m" &&
	head -c $((8 * MiB)) /dev/urandom > "$T/m/a" && umount "$T/m" || fail "ext4"
part 2 && mkfs.xfs -q -f "$LOOP" || fail "xfs"
part 3 && mkntfs -q -F -Q "$LOOP" >/dev/null 2>&1 || fail "ntfs"
part 4 && mkfs.vfat -F 16 "$LOOP" >/dev/null || fail "vfat"
# Files written through ntfs-3g, so that $Bitmap has clusters in use.
for n in 7 8; do
	part $n && mkntfs -q -F -Q "$LOOP" >/dev/null 2>&1 && ntfs-3g "$LOOP" "$T/m" &&
		head -c $((8 * MiB)) /dev/urandom > "$T/m/a" && umount "$T/m" || fail "ntfs on p$n"
done
for n in 5 6; do
	part $n && pvcreate -ff -y "$LOOP" >/dev/null 2>&1 &&
		vgcreate ferrydmg$$-$n "$LOOP" >/dev/null 2>&1 &&
		vgchange -an ferrydmg$$-$n >/dev/null 2>&1 || fail "lvm on p$n"
done
detach_loops
sync

# The damage, written into the image file directly.
python3 - "$disk" <<'PY' || fail "damaging the image"
import struct, sys, zlib
MiB = 1 << 20
f = open(sys.argv[1], 'r+b')
def rd(off, n):
    f.seek(off); return f.read(n)
def wr(off, b):
    f.seek(off); f.write(b)
le32 = lambda b, o: struct.unpack_from('<I', b, o)[0]
le64 = lambda b, o: struct.unpack_from('<Q', b, o)[0]
be32 = lambda b, o: struct.unpack_from('>I', b, o)[0]

# p1 ext4: flip a byte of group 0's block bitmap (metadata_csum).
p1 = 1 * MiB
sb = rd(p1 + 1024, 1024)
bs = 1024 << le32(sb, 24)
gd = rd(p1 + (le32(sb, 20) + 1) * bs, 64)
bitmap = p1 + le32(gd, 0) * bs
wr(bitmap + 3000, bytes([rd(bitmap + 3000, 1)[0] ^ 0x10]))

# p2 xfs: AG 1's AGF says one more free block than its btree holds.
p2 = 65 * MiB
sb = rd(p2, 512)
bsize, agblocks, sect = be32(sb, 4), be32(sb, 84), struct.unpack_from('>H', sb, 102)[0]
agf = p2 + agblocks * bsize + sect
wr(agf + 52, struct.pack('>I', be32(rd(agf, 512), 52) + 1))

# p3 ntfs: tear the first sector of $Bitmap's MFT record (record 6).
p3 = 385 * MiB
bs = rd(p3, 512)
csize = struct.unpack_from('<H', bs, 11)[0] * bs[13]
mft = p3 + le64(bs, 48) * csize
rec = mft + 6 * 1024
wr(rec + 510, bytes([rd(rec + 510, 1)[0] ^ 0xff]))

# p4 vfat: claims twice the sectors its partition has.
p4 = 449 * MiB
total = struct.unpack_from('<H', rd(p4, 512), 19)[0] or le32(rd(p4, 512), 32)
wr(p4 + 19, b'\0\0')
wr(p4 + 32, struct.pack('<I', total * 2))

# p5, p6 LVM: an LV past the PV's end; metadata cut short. Checksums are
# made right, so that only the content is wrong.
def crc(b):
    return (~zlib.crc32(b, ~0xf597a6cf & 0xffffffff)) & 0xffffffff
def set_text(pv, text):
    lab = rd(pv + 512, 512)
    hdr = pv + 512 + le32(lab, 20)
    mda = le64(rd(hdr + 72, 16), 0) + pv
    mh = bytearray(rd(mda, 512))
    off = le64(mh, 40)
    old = rd(mda + off, le64(mh, 48))
    new = text(old.decode())
    wr(mda + off, new.encode())
    struct.pack_into('<Q', mh, 48, len(new))
    struct.pack_into('<I', mh, 56, crc(new.encode()))
    struct.pack_into('<I', mh, 0, crc(bytes(mh[4:])))
    wr(mda, bytes(mh))
lv = '''logical_volumes {
big {
id = "ferry0-dmg0-lvid-0000-0000-0000-000000"
status = ["READ", "WRITE", "VISIBLE"]
segment_count = 1
segment1 {
start_extent = 0
extent_count = 100
type = "striped"
stripe_count = 1
stripes = [
"pv0", 0
]
}
}
}
'''
def add_lv(t):		# after the end of pv0 and of physical_volumes
    i = t.index('\n}\n}\n') + 5
    return t[:i] + lv + t[i:]
set_text(513 * MiB, add_lv)
set_text(577 * MiB, lambda t: t[:len(t) // 2])

# p7, p8 ntfs, as a crash or Windows' Fast Startup leaves them: the
# dirty flag in $Volume's information; a $LogFile restart area with a
# client in use and no clean flag (in both restart pages, each with its
# update sequence).
def ntfs(p):
    bs = rd(p, 512)
    csize = struct.unpack_from('<H', bs, 11)[0] * bs[13]
    return csize, p + le64(bs, 48) * csize
def attr(rec, t):
    o = struct.unpack_from('<H', rec, 20)[0]
    while le32(rec, o) != 0xffffffff:
        if le32(rec, o) == t and rec[o + 9] == 0:
            return o
        o += le32(rec, o + 4)
p7 = 641 * MiB
csize, mft = ntfs(p7)
mirr = p7 + le64(rd(p7, 512), 56) * csize	# $MFTMirr: records 0-3 again
rec = rd(mft + 3 * 1024, 512)
o = attr(rec, 0x70)
for m in (mft, mirr):
    val = m + 3 * 1024 + o + struct.unpack_from('<H', rec, o + 20)[0]
    wr(val + 10, bytes([rd(val + 10, 1)[0] | 1]))
p8 = 705 * MiB
csize, mft = ntfs(p8)
rec = rd(mft + 2 * 1024, 512)
o = attr(rec, 0x80)
runs = o + struct.unpack_from('<H', rec, o + 32)[0]
lb, ob = rec[runs] & 15, rec[runs] >> 4
lcn = int.from_bytes(rec[runs + 1 + lb:runs + 1 + lb + ob], 'little')
logsize = int.from_bytes(rec[runs + 1:runs + 1 + lb], 'little') * csize
for k in range(2):
    pg = bytearray(4096)
    pg[0:4] = b'RSTR'
    struct.pack_into('<HH', pg, 4, 0x1e, 9)
    # page sizes; the area's offset; version 1.1
    struct.pack_into('<IIHHH', pg, 0x10, 4096, 4096, 0x40, 1, 1)
    # the area: LSN, 1 client, none free, client 0 in use, no clean
    # flag, sequence number bits (67 less the log size's), 0x30-byte
    # header and then the client array, the log's size
    struct.pack_into('<QHHHHIHHQIHH', pg, 0x40, 0x1000 + k, 1, 0xffff,
                     0, 0, 67 - logsize.bit_length(), 0x30 + 0xa0, 0x30,
                     logsize, 0, 0x30, 0x40)
    # the client: no neighbours, named NTFS (UTF-16)
    struct.pack_into('<QQHHH6xI', pg, 0x70, 0x1000, 0x1000, 0xffff, 0xffff, 1, 8)
    pg[0x70 + 0x20:0x70 + 0x28] = 'NTFS'.encode('utf-16-le')
    struct.pack_into('<H', pg, 0x1e, 7)
    for i in range(1, 9):
        struct.pack_into('<H', pg, i * 512 - 2, 7)
    wr(p8 + lcn * csize + k * 4096, bytes(pg))
PY

loop_at "$disk" 0 $((800 * MiB)) || fail "losetup"
dev=$LOOP
start_export srv="$dev"
api /v1/info >/dev/null
check() {	# check WHERE TYPE REASON
	jq -e --arg w "$1" --arg t "$2" --arg r "$3" '.disks[0].volumes[] |
		select(.where == $w) | select(.type == $t and .map == "unknown"
		and .used == .length and (.reason | test($r)))' "$T/body" >/dev/null ||
		fail "$1: not all data for '$3': $(jq -c ".disks[0].volumes[] | select(.where == \"$1\")" "$T/body")"
	grep -q "srv $1: $2, all data: .*$3" "$T/export.log" ||
		fail "no log line for $1 ($3)"
}
check p1 ext4 "bitmap"
check p2 xfs "AGF says"
check p3 ntfs "damaged"
check p4 vfat "do not fit"
check p5 LVM2_member "outside the PV"
check p6 LVM2_member "does not parse"
check p7 ntfs "dirty"
check p8 ntfs "to replay"
ok "damaged volumes are all data, each with its reason logged: $(grep -c 'all data' "$T/export.log") lines"
used=$(jq '.disks[0].used' "$T/body")
[ "$used" = $((800 * MiB)) ] || fail "used $used: something was dropped"
mnt=$T/mnt
mount_ferry "$URL" "$mnt" "cache=$T/cache,views=raw"
cmp "$disk" "$mnt/srv.raw" || fail "the mounted disk differs from the source"
kill -0 "$EXPORT_PID" || fail "ferry-export died"
ok "the whole disk crossed as it is"
# ntfs-3g's tools agree: ntfsinfo will not open the dirty p7 ("scheduled
# for check"); ntfs-3g finds p8's journal unclean (and, last, mends it).
part 7 || fail "losetup p7"
ntfsinfo -m "$LOOP" >"$T/ntfsinfo.log" 2>&1
grep -q "scheduled for check" "$T/ntfsinfo.log" || fail "ntfsinfo opens the dirty p7: $(head -3 "$T/ntfsinfo.log")"
detach "$LOOP"
part 8 || fail "losetup p8"
timeout 30 ntfs-3g "$LOOP" "$T/m" >"$T/ntfs3g.log" 2>&1 && umount "$T/m"
grep -q "unclean file system" "$T/ntfs3g.log" || fail "ntfs-3g finds p8's journal clean: $(cat "$T/ntfs3g.log")"
detach "$LOOP"
ok "ntfsinfo finds p7 dirty, ntfs-3g p8 unclean, as ferry does"
echo "PASS"
