#!/usr/bin/env bash
# Incremental re-sync: images converted from a mount, then 1% of the
# source's chunks change (written into the exported file while it is
# exported). "resync" in .ferry/control fetches only the changed chunks;
# ferry-convert --update rewrites only what differs in each image; the
# images then equal the new source. Data appearing in a hole, and data
# punched out, are followed live too: the map grows and shrinks.
. "$(dirname "$0")/functions.sh"
requires qemu-img jq cmp python3

M=1048576
TOOLS=$(dirname "$0")/tools
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
resync_mount "$T/mnt" disk
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
# 512 bytes changed in each: one or two 64 KiB blocks of it travel.
[ "$wire" -le $(( ${#changed[@]} * 2 * 65536 )) ] || fail "$wire bytes received for ${#changed[@]} changed chunks (512 bytes each)"
ok "received $wire bytes for ${#changed[@]} changed 1 MiB chunks (512 bytes changed in each; mended by 64 KiB block)"

# Data where the mount has a hole: followed live. The map grows, the raw
# view shows the new data at once, the qcow2 view is laid out afresh.
q0=$(stat -c %s "$T/mnt/disk.qcow2")
got0=$(status "$T/mnt" disk data_bytes)
cp "$T/mnt/disk.qcow2" "$T/old.qcow2"
# A reader holds the qcow2 view open across the resync.
python3 "$TOOLS/viewreader.py" read "$T/mnt/disk.qcow2" 60 "$T/reads.log" "$T/stop" &
READER=$!
PIDS+=("$READER")
sleep 1
head -c 4096 /dev/urandom | dd of="$T/disk.img" bs=4096 seek=$((150 * M / 4096)) conv=notrunc status=none
resync_mount "$T/mnt" disk
sleep 1
touch "$T/stop"
wait "$READER" || fail "the reader of the qcow2 view failed"
cp "$T/mnt/disk.qcow2" "$T/new.qcow2"
reads=$(python3 "$TOOLS/viewreader.py" check "$T/reads.log" "$T/old.qcow2" "$T/new.qcow2") ||
	fail "a read across the resync mixed layouts: $reads"
ok "a reader holding the qcow2 view open across the resync: $(wc -l < "$T/reads.log") reads, each the old or the new image ($reads)"
[ "$(status "$T/mnt" disk resync.grew)" = 4096 ] || fail "map growth: $(status "$T/mnt" disk resync)"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "after a resync that grew the map, the mount differs from the source"
q1=$(stat -c %s "$T/mnt/disk.qcow2")
[ "$q1" -gt "$q0" ] || fail "the qcow2 view kept its size ($q0 -> $q1) for a grown map"
qemu-img compare -q -f qcow2 -F raw "$T/mnt/disk.qcow2" "$T/disk.img" || fail "the qcow2 view after a grown map differs from the source"
got=$(( $(status "$T/mnt" disk data_bytes) - got0 ))
[ "$got" -le $((2 * M)) ] || fail "the resync fetched $got bytes for 4 KiB of new data"
timeout 300 "$FERRY_CONVERT" --update "$T/mnt/disk.raw" "$T/out.raw" 2>"$T/convert.log" || fail "--update after growth: $(cat "$T/convert.log")"
cmp "$T/out.raw" "$T/disk.img" || fail "raw image differs after the update of a grown map"
timeout 300 "$FERRY_CONVERT" --update -O qcow2 "$T/mnt/disk.raw" "$T/out.qcow2" 2>"$T/convert.log" || fail "--update qcow2 after growth: $(cat "$T/convert.log")"
grep -q "writing it whole" "$T/convert.log" || fail "qcow2 layout change not noticed: $(cat "$T/convert.log")"
qemu-img compare -q -f qcow2 -F raw "$T/out.qcow2" "$T/disk.img" || fail "qcow2 image differs after the update of a grown map"
ok "data in a hole: resync grew the map by 4 KiB live ($got bytes fetched), qcow2 view $q0 -> $q1 bytes, raw updated in place, qcow2 rewritten (new layout)"

# Data that became a hole (punched in the source): a resync shrinks the
# map, and neither the mount nor a remount shows the old bytes.
fallocate -p -o $((50 * M)) -l $((2 * M)) "$T/disk.img" || fail "fallocate -p"
resync_mount "$T/mnt" disk
[ "$(status "$T/mnt" disk resync.shrank)" = $((2 * M)) ] || fail "map shrinkage: $(status "$T/mnt" disk resync)"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "after a hole was punched in the source and a resync, the mount shows old data"
# Whole chunks became free: none of them is left to check, the cache takes
# the new generation, and ferryctl resync returns.
[ "$(status "$T/mnt" disk resync.pending)" = 0 ] ||
	fail "a resync that freed whole chunks left $(status "$T/mnt" disk resync.pending) pending"
api /v1/disks >/dev/null
gen=$(jq -r '.disks[0].generation' "$T/body")
for _ in $(seq 50); do
	[ "$(jq -r .generation "$T/cache/disk.json")" = "$gen" ] && break
	sleep 0.1
done
[ "$(jq -r .generation "$T/cache/disk.json")" = "$gen" ] ||
	fail "the cache's metadata kept generation $(jq -r .generation "$T/cache/disk.json"), not the source's $gen"
timeout 60 "${FERRYCTL:?}" resync "$T/mnt" >"$T/ctl.out" 2>&1 ||
	fail "ferryctl resync after a resync that freed whole chunks: exit $? $(cat "$T/ctl.out")"
ok "a resync that freed whole chunks: pending 0, the cache of generation $gen, ferryctl resync returns"
timeout 300 "$FERRY_CONVERT" --update "$T/mnt/disk.raw" "$T/out.raw" 2>"$T/convert.log" || fail "--update after shrinking: $(cat "$T/convert.log")"
cmp "$T/out.raw" "$T/disk.img" || fail "raw image keeps old data where the source is a hole now"
unmount_ferry "$T/mnt"
fallocate -p -o $((60 * M)) -l $((1 * M)) "$T/disk.img" || fail "fallocate -p"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,compress=0"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "after a hole was punched in the source, the remount shows old data"
wait_state "$T/mnt" disk complete 120
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "after hydration, the mount shows old data in the new hole"
unmount_ferry "$T/mnt"
ok "data punched out of the source reads as zeros after a resync (map -2 MiB) and after a remount"

# A resync under a running conversion: it stops and says so; --update then
# finishes it equal to the source.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache3,compress=0,prefetch=0,bwlimit=8M"
timeout 300 "$FERRY_CONVERT" -O raw "$T/mnt/disk.raw" "$T/out3.raw" 2>"$T/convert.log" &
CPID=$!
sleep 2
head -c 4096 /dev/urandom | dd of="$T/disk.img" bs=4096 seek=$((160 * M / 4096)) conv=notrunc status=none
echo resync >"$T/mnt/.ferry/control" || fail "resync refused"
rc=0
wait "$CPID" || rc=$?
[ "$rc" = 1 ] && grep -q "changed under the conversion" "$T/convert.log" ||
	fail "a conversion across a resync did not stop (exit $rc): $(cat "$T/convert.log")"
timeout 300 "$FERRY_CONVERT" --update "$T/mnt/disk.raw" "$T/out3.raw" 2>"$T/convert.log" ||
	fail "--update after the stopped conversion: $(cat "$T/convert.log")"
cmp "$T/out3.raw" "$T/disk.img" || fail "the conversion finished by --update differs from the source"
unmount_ferry "$T/mnt"
ok "a resync under a running conversion stops it with a message; --update then finishes it equal to the source"
