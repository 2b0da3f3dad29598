#!/usr/bin/env bash
# Incremental re-sync: images converted from a mount, then 1% of the
# source's chunks change (written into the exported file while it is
# exported). "resync" in .ferry/control fetches only the changed chunks;
# ferry-convert --update rewrites only what differs in each image; the
# images then equal the new source. Data appearing in a hole cannot be
# followed live: resync says so, and a remount follows it the same way.
. "$(dirname "$0")/functions.sh"
requires qemu-img jq cmp python3

M=1048576
make_disk "$T/disk.img"
start_export disk="$T/disk.img"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,compress=0"
for f in qcow2 raw vhd; do
	timeout 300 "$FERRY_CONVERT" -O "$f" "$T/mnt/disk.raw" "$T/out.$f" 2>"$T/convert.log" ||
		fail "first conversion to $f: $(cat "$T/convert.log")"
done
wait_state "$T/mnt" disk complete 120
ok "converted to qcow2, raw and VHD; the disk is cached"

# 1% of the disk's chunks (3 of 256), inside its data: a few bytes each.
changed=(3 45 100)
for c in "${changed[@]}"; do
	head -c 512 /dev/urandom | dd of="$T/disk.img" bs=1 seek=$((c * M + 4096)) conv=notrunc status=none
done
wire0=$(status "$T/mnt" disk wire_bytes)
echo resync >"$T/mnt/.ferry/control" || fail "resync refused"
for _ in $(seq 100); do
	[ "$(jq -r .resync.state "$T/mnt/.ferry/status.json")" = running ] || break
	sleep 0.1
done
[ "$(jq -r .resync.state "$T/mnt/.ferry/status.json")" = done ] || fail "resync: $(jq -c .resync "$T/mnt/.ferry/status.json")"
wait_state "$T/mnt" disk complete 120
[ "$(status "$T/mnt" disk resync.changed)" = ${#changed[@]} ] ||
	fail "resync saw $(status "$T/mnt" disk resync.changed) changed chunks, not ${#changed[@]}: $(status "$T/mnt" disk resync)"
kept=$(status "$T/mnt" disk resync.kept)
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "after resync the mount differs from the source"
ok "resync: ${#changed[@]} chunks changed and fetched again, $kept kept"

for f in qcow2 raw vhd; do
	timeout 300 "$FERRY_CONVERT" --update -O "$f" "$T/mnt/disk.raw" "$T/out.$f" 2>"$T/convert.log" ||
		fail "--update $f: $(cat "$T/convert.log")"
	written=$(sed -n 's/.*updated: \([0-9]*\) MiB written.*/\1/p' "$T/convert.log")
	[ -n "$written" ] && [ "$written" -le ${#changed[@]} ] || fail "--update $f wrote ${written:-?} MiB for ${#changed[@]} changed chunks: $(cat "$T/convert.log")"
	fmt=$f
	[ "$f" = vhd ] && fmt=vpc
	qemu-img compare -q -f "$fmt" -F raw "$T/out.$f" "$T/disk.img" || fail "--update $f: the image differs from the new source"
	ok "--update $f: $written MiB written, equal to the new source"
done
wire=$(( $(status "$T/mnt" disk wire_bytes) - wire0 ))
[ "$wire" -le $(( (${#changed[@]} + 1) * M )) ] || fail "$wire bytes received for ${#changed[@]} changed chunks"
ok "received $wire bytes for ${#changed[@]} changed 1 MiB chunks"

# Data where the mount has a hole: refused live, followed by a remount.
head -c 4096 /dev/urandom | dd of="$T/disk.img" bs=4096 seek=$((150 * M / 4096)) conv=notrunc status=none
echo resync >"$T/mnt/.ferry/control"
for _ in $(seq 100); do
	[ "$(jq -r .resync.state "$T/mnt/.ferry/status.json")" = running ] || break
	sleep 0.1
done
[ "$(jq -r .resync.state "$T/mnt/.ferry/status.json")" = error ] || fail "a grown allocation was followed live"
jq -r .resync.error "$T/mnt/.ferry/status.json" | grep -q "remount" || fail "no advice to remount: $(jq -c .resync "$T/mnt/.ferry/status.json")"
dd if="$T/mnt/disk.raw" bs=$M skip=150 count=1 status=none | cmp -s - <(head -c $M /dev/zero) ||
	fail "the refused resync changed what the mount shows"
unmount_ferry "$T/mnt"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,compress=0"
wait_state "$T/mnt" disk complete 120
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "after remount the mount differs from the source"
got=$(status "$T/mnt" disk data_bytes)
[ "$got" -le $((2 * M)) ] || fail "the remount fetched $got bytes"
timeout 300 "$FERRY_CONVERT" --update "$T/mnt/disk.raw" "$T/out.raw" 2>"$T/convert.log" || fail "--update after remount: $(cat "$T/convert.log")"
cmp "$T/out.raw" "$T/disk.img" || fail "raw image differs after the remount's update"
timeout 300 "$FERRY_CONVERT" --update -O qcow2 "$T/mnt/disk.raw" "$T/out.qcow2" 2>"$T/convert.log" || fail "--update qcow2 after remount: $(cat "$T/convert.log")"
grep -q "writing it whole" "$T/convert.log" || fail "qcow2 layout change not noticed: $(cat "$T/convert.log")"
qemu-img compare -q -f qcow2 -F raw "$T/out.qcow2" "$T/disk.img" || fail "qcow2 image differs after the remount's update"
unmount_ferry "$T/mnt"
ok "data in a hole: resync refused with advice, the remount fetched $got bytes, raw updated in place, qcow2 rewritten (new layout)"

# Data that became a hole (punched in the source): the cache's old bytes
# there must not show through after a remount.
fallocate -p -o $((50 * M)) -l $((2 * M)) "$T/disk.img" || fail "fallocate -p"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,compress=0"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "after a hole was punched in the source, the mount shows old data"
wait_state "$T/mnt" disk complete 120
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "after hydration, the mount shows old data in the new hole"
unmount_ferry "$T/mnt"
ok "data punched out of the source reads as zeros after a remount"
