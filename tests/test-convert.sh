#!/usr/bin/env bash
# ferry-convert on cold mounts while hydration runs: qcow2, raw and VHD
# images equal to the source (qemu-img compare, cmp), the SHA-256 it prints
# equal to sha256sum's; interrupted by SIGINT and by kill -9, a rerun
# continues with the pieces already written; a block device gets only the
# data ranges; a plain file converts too; bad input is refused.
. "$(dirname "$0")/functions.sh"
requires qemu-img jq cmp sha256sum
M=1048576

CONVERT=$FERRY_CONVERT
make_disk "$T/disk.img"
SUM=$(sha256sum <"$T/disk.img" | cut -d' ' -f1)
start_export disk="$T/disk.img"

# cold_mount NAME [OPTS]: a fresh mount, hydrating at a capped rate so
# that the conversion starts while most data is still to come.
cold_mount() {
	mount_ferry "$URL" "$T/mnt" "cache=$T/cache-$1,prefetch=1,bwlimit=${2:-40M},compress=0"
	[ "$(jq '.disks[0].complete' "$T/mnt/.ferry/map.json")" = false ] ||
		fail "$1: the disk was complete before converting"
}

# Each format, from a cold mount, with --verify.
for f in qcow2 raw vhd; do
	cold_mount "$f"
	timeout 300 "$CONVERT" -O "$f" --verify "$T/mnt/disk.qcow2" "$T/out.$f" >"$T/sum.out" 2>"$T/convert.log" ||
		fail "$f: ferry-convert failed: $(cat "$T/convert.log")"
	unmount_ferry "$T/mnt"
	got=$(cut -d' ' -f1 "$T/sum.out")
	[ "$got" = "$SUM" ] || fail "$f: SHA-256 $got, sha256sum says $SUM"
	fmt=$f
	[ "$f" = vhd ] && fmt=vpc
	qemu-img compare -q -f "$fmt" -F raw "$T/out.$f" "$T/disk.img" || fail "$f: the image differs from the source"
	[ "$f" != qcow2 ] || qemu-img check -q "$T/out.$f" || fail "$f: qemu-img check"
	[ ! -e "$T/out.$f.ferry-convert" ] || fail "$f: journal left behind"
	ok "$f from a cold mount: equal to the source, SHA-256 $got"
done
# The raw output is sparse: no more blocks than the source's data.
alloc=$(du -k "$T/out.raw" | cut -f1)
src_alloc=$(du -k "$T/disk.img" | cut -f1)
[ "$alloc" -le $((src_alloc + 1024)) ] || fail "raw output uses $alloc KiB, the source $src_alloc KiB"
ok "raw output sparse: $alloc KiB allocated, the source $src_alloc KiB"

# Interrupted (SIGINT, then kill -9) and rerun: it continues.
cold_mount interrupt 16M
for sig in INT KILL; do
	rm -f "$T/out.int.qcow2"
	"$CONVERT" -O qcow2 "$T/mnt/disk.raw" "$T/out.int.qcow2" 2>"$T/convert.log" &
	pid=$!
	PIDS+=("$pid")
	sleep 2.5
	kill -"$sig" "$pid"
	rc=0
	wait "$pid" || rc=$?
	if [ "$sig" = INT ]; then
		[ "$rc" = 130 ] || fail "SIGINT: exit $rc, not 130: $(cat "$T/convert.log")"
		grep -q "interrupted" "$T/convert.log" || fail "SIGINT: no message"
	fi
	[ -s "$T/out.int.qcow2.ferry-convert" ] || fail "$sig: no journal"
	timeout 300 "$CONVERT" -O qcow2 --verify "$T/mnt/disk.raw" "$T/out.int.qcow2" >"$T/sum.out" 2>"$T/convert.log" ||
		fail "$sig: the rerun failed: $(cat "$T/convert.log")"
	done_before=$(sed -n 's/.*continuing an interrupted conversion (\([0-9]*\) of.*/\1/p' "$T/convert.log")
	[ -n "$done_before" ] && [ "$done_before" -gt 0 ] || fail "$sig: the rerun started over: $(cat "$T/convert.log")"
	[ "$(cut -d' ' -f1 "$T/sum.out")" = "$SUM" ] || fail "$sig: wrong SHA-256 after the rerun"
	qemu-img compare -q -f qcow2 -F raw "$T/out.int.qcow2" "$T/disk.img" || fail "$sig: the image differs"
	ok "SIG$sig after 2.5 s (exit $rc), rerun continued from $done_before pieces: equal to the source"
	# The next round starts from a cold cache again.
	unmount_ferry "$T/mnt"
	rm -rf "$T/cache-interrupt"
	cold_mount interrupt 16M
done
unmount_ferry "$T/mnt"

# A block device target: only data ranges are written (the rest keeps
# what the device held), unless --zero.
if [ -e /dev/loop-control ] && command -v losetup >/dev/null && [ "$(id -u)" = 0 ]; then
	# A device is whole sectors: the source's size rounded up.
	size=$(( ($(stat -c %s "$T/disk.img") + 511) / 512 * 512 ))
	head -c "$size" /dev/zero | tr '\0' '\252' >"$T/dev.img"
	LOOP=$(losetup -f --show "$T/dev.img") || fail "losetup"
	test_cleanup() { losetup -d "$LOOP" 2>/dev/null; }
	target=$LOOP
	what="loop device"
else
	LOOP=
	target=$T/dev.img
	what="preallocated file"
	head -c "$(stat -c %s "$T/disk.img")" /dev/zero | tr '\0' '\252' >"$target"
fi
cold_mount dev
timeout 300 "$CONVERT" "$T/mnt/disk.raw" "$target" --journal "$T/dev.journal" 2>"$T/convert.log" ||
	fail "to a $what: $(cat "$T/convert.log")"
unmount_ferry "$T/mnt"
python3 - "$T/disk.img" "$target" <<'PY' || fail "the $what holds wrong bytes"
import os, sys
fs, fd = os.open(sys.argv[1], os.O_RDONLY), os.open(sys.argv[2], os.O_RDONLY)
size = os.fstat(fs).st_size
holes, off = 0, 0
while off < size:	# the source file's holes
    d = os.lseek(fs, off, os.SEEK_DATA)
    holes += d - off
    off = os.lseek(fs, d, os.SEEK_HOLE)
untouched, B = 0, 4096
for off in range(0, size, B):
    s = os.pread(fs, B, off)
    t = os.pread(fd, len(s), off)
    if s == t:
        continue
    # Not written: only where the disk holds zeros (a hole, or zeros the
    # exporter found), and then the device kept its 0xAA.
    assert t == b"\xaa" * len(t) and s == bytes(len(s)), f"wrong bytes at {off}"
    untouched += len(t)
assert untouched >= holes, f"only {untouched} bytes left alone, {holes} of holes"
PY
ok "to a $what: the data ranges written, the holes left alone"
# With --zero the rest is written as zeros too.
head -c "$(stat -c %s "$T/dev.img")" /dev/zero | tr '\0' '\252' | dd of="$target" bs=1M conv=notrunc status=none
cold_mount dev-zero
timeout 300 "$CONVERT" --zero "$T/mnt/disk.raw" "$target" --journal "$T/dev-zero.journal" 2>"$T/convert.log" ||
	fail "--zero to a $what: $(cat "$T/convert.log")"
unmount_ferry "$T/mnt"
cmp -n "$(stat -c %s "$T/disk.img")" "$target" "$T/disk.img" || fail "--zero: the $what differs from the source"
ok "to a $what with --zero: equal to the source"

# A plain file converts too (in order, holes skipped).
timeout 300 "$CONVERT" -O qcow2 --verify "$T/disk.img" "$T/plain.qcow2" >"$T/sum.out" 2>"$T/convert.log" ||
	fail "plain file: $(cat "$T/convert.log")"
[ "$(cut -d' ' -f1 "$T/sum.out")" = "$SUM" ] || fail "plain file: wrong SHA-256"
qemu-img compare -q -f qcow2 -F raw "$T/plain.qcow2" "$T/disk.img" || fail "plain file: the image differs"
ok "a plain file to qcow2: equal"

# A partition view converts to the partition alone, in disk-chunk pieces
# that start mid-chunk; --progress=json gives one JSON object a line.
if command -v sfdisk >/dev/null; then
	truncate -s $((64 * M)) "$T/parted.img"
	printf 'label: dos\nstart=2600, size=40000, type=83\n' | sfdisk -q "$T/parted.img" >/dev/null || fail sfdisk
	head -c $((16 * M)) /dev/urandom | dd of="$T/parted.img" bs=512 seek=2700 conv=notrunc status=none
	start_export parted="$T/parted.img"
	mount_ferry "$URL" "$T/mnt" "cache=$T/cache-parted,prefetch=1,bwlimit=8M,views=raw:parts"
	timeout 300 "$FERRY_CONVERT" --progress=json --verify "$T/mnt/parted.p1.raw" "$T/p1.raw" >"$T/sum.out" 2>"$T/progress.json" ||
		fail "partition view: $(cat "$T/progress.json")"
	unmount_ferry "$T/mnt"
	dd if="$T/parted.img" of="$T/p1.want" bs=512 skip=2600 count=40000 status=none
	cmp "$T/p1.raw" "$T/p1.want" || fail "partition view: the output differs from the partition"
	[ "$(cut -d' ' -f1 "$T/sum.out")" = "$(sha256sum <"$T/p1.want" | cut -d' ' -f1)" ] || fail "partition view: wrong SHA-256"
	jq -e -s 'length >= 1 and all(.[]; .convert.total > 0 and (.state | type) == "string") and (last | .convert.done == .convert.total)' \
		"$T/progress.json" >/dev/null || fail "--progress=json: $(head -3 "$T/progress.json")"
	ok "a partition view: equal to the partition; $(wc -l <"$T/progress.json") JSON progress lines"
fi

# Bad input: a clear line and a non-zero exit.
rc=0; "$CONVERT" -O vmdk "$T/disk.img" "$T/x" 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q "unknown format" "$T/err" || fail "bad -O: exit $rc: $(cat "$T/err")"
rc=0; "$CONVERT" "$T/nonexistent" "$T/x" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "No such file" "$T/err" || fail "missing source: exit $rc: $(cat "$T/err")"
rc=0; "$CONVERT" "$T/disk.img" 2>"$T/err" || rc=$?
[ "$rc" = 2 ] || fail "one argument: exit $rc"
"$CONVERT" --help | grep -q "usage: ferry-convert" || fail "--help"
ok "bad input refused (exit 2 for usage, 1 for a missing source)"
