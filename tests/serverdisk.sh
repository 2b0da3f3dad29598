# A realistic server disk for the used-blocks tests and bench (sourced after
# functions.sh or bench/lib.sh): a GPT disk image whose partitions hold
# FAT, ext4 (4 KiB and 1 KiB blocks), XFS, NTFS, swap and an LVM2 PV with
# an ext4 LV, each filled with files after a large random file was written
# and deleted, plus random "boot loader" bytes in a gap between partitions.
# Filesystems are made through loop devices on each partition's range (no
# partition scanning here); LOOPS lists them so a trap can detach them.
LOOPS=()
MiB=$((1024 * 1024))

# Partition layout, MiB: number start size kind
SERVER_PARTS="1 1 64 vfat
2 65 160 ext4
3 225 64 ext4-1k
4 290 320 xfs
5 610 96 ntfs
6 706 32 swap
7 738 128 lvm"
SERVER_DISK_MIB=872
GAP_MIB=289		# 1 MiB of random bytes between p3 and p4
LV_MIB=64		# the ext4 LV inside p7, at PV extent 2 (4 MiB extents)
LV_PE=2

# loop_at FILE OFFSET LENGTH: a loop device on a byte range of FILE, in
# $LOOP (not printed: a command substitution would lose LOOPS).
loop_at() {
	LOOP=$(losetup -f --show -o "$2" --sizelimit "$3" "$1") || return 1
	LOOPS+=("$LOOP")
}

detach_loops() {
	local l
	for l in "${LOOPS[@]}"; do
		losetup -d "$l" 2>/dev/null
	done
	LOOPS=()
}

# detach DEV: detach one loop device made by loop_at.
detach() {
	local i
	losetup -d "$1"
	for i in "${!LOOPS[@]}"; do
		[ "${LOOPS[$i]}" = "$1" ] && unset "LOOPS[$i]"
	done
}

# needles FILE: three 32-byte samples of FILE, in hex, onto $SERVER_OUT/needles
# (bytes that must not cross the wire once FILE is deleted).
needles() {
	local size k
	size=$(stat -c %s "$1")
	for k in 1 2 3; do
		od -An -tx1 -v -j $((size * k / 4)) -N 32 "$1" | tr -d ' \n'
		echo
	done >> "$SERVER_OUT/needles"
}

# sums DIR NAME: sha256sum of every file below DIR into $SERVER_OUT/NAME.sha.
sums() {
	(cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum) \
		> "$SERVER_OUT/$2.sha"
}

# fill DIR MIB NAME: write MIB of files (random, text, and small ones) into
# DIR after writing a MIB*2/3 random file and deleting it; their sums go to
# $SERVER_OUT/NAME.sha.
fill() {
	local d=$1 n=$2 i
	head -c $((n * 2 / 3 * MiB)) /dev/urandom > "$d/deleted.bin"
	sync
	needles "$d/deleted.bin"
	rm -f "$d/deleted.bin"
	sync
	mkdir -p "$d/etc" "$d/data"
	for i in $(seq 1 40); do
		echo "config $i of a server that keeps running" > "$d/etc/file$i.conf"
	done
	head -c $((n / 2 * MiB)) /dev/urandom > "$d/data/random.bin"
	yes "log line of a running server: 0123456789 abcdefghij" |
		head -c $((n / 2 * MiB)) > "$d/data/text.log"
	sync
	sums "$d" "$3"
}

# server_disk PATH OUTDIR: build the disk; OUTDIR gets each filesystem's
# file sums (pN.sha, lv.sha) and the deleted files' needles. Needs root,
# sgdisk, mkfs.*, mtools, ntfs-3g, lvm2.
server_disk() {
	local p=$1 num start size kind l m vg f lv
	SERVER_OUT=$2
	mkdir -p "$SERVER_OUT"
	: > "$SERVER_OUT/needles"
	rm -f "$p"
	truncate -s $((SERVER_DISK_MIB * MiB)) "$p"
	sgdisk -Z "$p" >/dev/null 2>&1
	while read -r num start size kind; do
		sgdisk -n "$num:$((start * 2048)):+$((size * 2048))" "$p" >/dev/null ||
			return 1
	done <<< "$SERVER_PARTS"
	head -c $MiB /dev/urandom | dd of="$p" bs=1M seek=$GAP_MIB conv=notrunc status=none
	m=$(mktemp -d)
	while read -r num start size kind; do
		loop_at "$p" $((start * MiB)) $((size * MiB)) || return 1
		l=$LOOP
		case $kind in
		vfat)
			mkfs.vfat -F 32 -s 1 "$l" >/dev/null || return 1
			blockdev --flushbufs "$l"
			f="$p@@$((start * MiB))"	# mtools reads the image
			head -c $((12 * MiB)) /dev/urandom > "$m.big"
			needles "$m.big"
			mcopy -i "$f" "$m.big" ::/big.bin && mdel -i "$f" ::/big.bin || return 1
			mmd -i "$f" ::/EFI && mcopy -i "$f" /etc/os-release ::/EFI/os-release || return 1
			head -c $((6 * MiB)) /dev/urandom > "$m.big"
			mcopy -i "$f" "$m.big" ::/EFI/grubx64.efi || return 1
			(cd /etc && sha256sum os-release) > "$SERVER_OUT/p$num.sha"
			(cd "${m%/*}" && sha256sum "${m##*/}.big") |
				sed "s|${m##*/}.big|grubx64.efi|" >> "$SERVER_OUT/p$num.sha"
			rm -f "$m.big"
			;;
		ext4|ext4-1k)
			if [ $kind = ext4 ]; then
				mkfs.ext4 -q -F "$l" || return 1
			else
				mkfs.ext4 -q -F -b 1024 "$l" || return 1
			fi
			mount "$l" "$m" && fill "$m" $((size / 4)) p$num; umount "$m" || return 1
			;;
		xfs)
			mkfs.xfs -q -f "$l" || return 1
			mount "$l" "$m" && fill "$m" $((size / 4)) p$num; umount "$m" || return 1
			;;
		ntfs)
			mkntfs -q -F -Q "$l" >/dev/null 2>&1 || return 1
			ntfs-3g "$l" "$m" && fill "$m" $((size / 4)) p$num; umount "$m" || return 1
			;;
		swap)
			head -c $((size * MiB)) /dev/urandom > "$m.swap"
			needles "$m.swap"
			dd if="$m.swap" of="$l" bs=1M status=none && rm -f "$m.swap"
			mkswap "$l" >/dev/null || return 1
			;;
		lvm)
			vg=ferrytest$$
			pvcreate -ff -y "$l" >/dev/null 2>&1 &&
				vgcreate "$vg" "$l" >/dev/null 2>&1 &&
				vgcfgbackup -f "$m.vg" "$vg" >/dev/null 2>&1 || return 1
			python3 - "$m.vg" "$vg" $LV_PE $((LV_MIB / 4)) <<'PY' || return 1
import sys
path, vg, pe, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = open(path).read()
lv = '''
	logical_volumes {
		root {
			id = "ferry0-test-lvid-0000-0000-0000-000000"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = %d
				type = "striped"
				stripe_count = 1
				stripes = [ "pv0", %d ]
			}
		}
	}
''' % (n, pe)
i = s.rindex('}')
open(path, 'w').write(s[:i] + lv + s[i:])
PY
			vgcfgrestore -f "$m.vg" "$vg" >/dev/null 2>&1 || return 1
			rm -f "$m.vg"
			# The LV's bytes: pe_start (1 MiB) + extent 2 of 4 MiB.
			loop_at "$p" $(((start + 1 + LV_PE * 4) * MiB)) $((LV_MIB * MiB)) || return 1
			lv=$LOOP
			mkfs.ext4 -q -F "$lv" || return 1
			mount "$lv" "$m" && fill "$m" $((LV_MIB / 4)) lv; umount "$m" || return 1
			detach "$lv"
			vgchange -an "$vg" >/dev/null 2>&1
			;;
		esac
		detach "$l"
	done <<< "$SERVER_PARTS"
	rmdir "$m"
}

# A running server's disk, for the live tests: live_disk FILE P1_MIB makes
# a 512 MiB GPT disk at FILE with ext4 in p1 (P1_MIB) and XFS in p2 (320
# MiB), attaches it whole (in $dev) and mounts each partition read-write
# through a loop device at its offset, on $T/src/p1 and $T/src/p2 ($T/view/
# p1 and p2 are made for copies). Sets p1off p1len p2off p2len. The test's
# trap calls live_cleanup.
FROZEN=()
live_disk() {
	local p1=$2
	truncate -s $((512 * MiB)) "$1"
	sgdisk -n 1:2048:+${p1}M -n 2:0:+320M "$1" >/dev/null || fail "sgdisk"
	p1off=$((2048 * 512)) p1len=$((p1 * MiB))
	p2off=$(((2048 + p1 * 2048) * 512)) p2len=$((320 * MiB))
	loop_at "$1" 0 $((512 * MiB)) || fail "losetup"
	dev=$LOOP
	mkdir -p "$T/src/p1" "$T/src/p2" "$T/view/p1" "$T/view/p2"
	loop_at "$1" $p1off $p1len && mkfs.ext4 -q -F "$LOOP" &&
		mount "$LOOP" "$T/src/p1" || fail "ext4 on p1"
	loop_at "$1" $p2off $p2len && mkfs.xfs -q -f "$LOOP" &&
		mount "$LOOP" "$T/src/p2" || fail "xfs on p2"
}

# freeze_src / thaw_src: fsfreeze both source filesystems, and back.
freeze_src() {
	local p
	for p in p1 p2; do
		fsfreeze -f "$T/src/$p" || fail "fsfreeze $p"
		FROZEN+=("$T/src/$p")
	done
}
thaw_src() {
	local m
	for m in "${FROZEN[@]}"; do
		fsfreeze -u "$m"
	done
	FROZEN=()
}

live_cleanup() {
	local m
	for m in "${FROZEN[@]}"; do
		fsfreeze -u "$m" 2>/dev/null
	done
	for m in "$T"/src/p* "$T"/view/p*; do
		mountpoint -q "$m" 2>/dev/null && umount "$m"
	done
	detach_loops
}
