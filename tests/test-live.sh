#!/usr/bin/env bash
# A running server, followed to cutover. ext4 and XFS are mounted
# read-write on the source (loop devices at their partitions' offsets)
# while the whole-disk loop device is exported, and a writer creates,
# appends, overwrites, deletes and truncates files during the transfer and
# hydration (new files land in blocks that were free at mount). First,
# blocks taken since the mount are read without error. Then:
#  - a resync while the writer still runs succeeds and the disk completes;
#  - the cutover: writer stopped, sync, fsfreeze, final resync: each
#    partition view passes fsck and holds exactly the files of the source,
#    and the resync fetched about what the writer changed;
#  - three rounds of writes, sync, freeze, resync and ferry-convert
#    --update (raw and qcow2): each time the output is the source with its
#    free space zeroed (compared frozen: a live filesystem writes back its
#    metadata on its own after a sync).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/serverdisk.sh"
requires losetup sgdisk mkfs.ext4 mkfs.xfs fsfreeze e2fsck xfs_repair jq python3 qemu-img
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (loop devices)"; exit 77; }
TOOLS=$(dirname "$0")/tools

WRITERS=()
test_cleanup() {
	local w
	for w in "${WRITERS[@]}"; do
		kill "$w" 2>/dev/null
	done
	live_cleanup
}

disk=$T/disk.img
live_disk "$disk" 160
for p in p1 p2; do
	head -c $((16 * MiB)) /dev/urandom > "$T/src/$p/base.bin"
	mkdir -p "$T/src/$p/etc" "$T/src/$p/w"
	for i in $(seq 50); do echo "setting $i of $p" > "$T/src/$p/etc/f$i"; done
done
sync

# writer DIR SECONDS: create, append, overwrite in place, delete, truncate,
# for SECONDS or until $T/stop exists; the bytes it writes go to DIR.bytes.
writer() {
	local d=$1 end=$((SECONDS + $2)) i=0 bytes=0 n
	while [ $SECONDS -lt $end ] && [ ! -e "$T/stop" ]; do
		i=$((i + 1))
		n=$(( (RANDOM % 256 + 1) * 1024 ))
		head -c $n /dev/urandom > "$d/w/new$i"
		head -c 65536 /dev/urandom >> "$d/w/log"
		dd if=/dev/urandom of="$d/base.bin" bs=4096 seek=$((RANDOM % 4096)) \
			count=4 conv=notrunc status=none
		bytes=$((bytes + n + 65536 + 16384))
		[ $((i % 3)) = 0 ] && rm -f "$d/w/new$((i - 2))"
		[ $((i % 5)) = 0 ] && truncate -s $(( (RANDOM % 64) * 1024 )) "$d/w/new$((i - 1))" 2>/dev/null
		echo "$bytes" > "$d.bytes"
		sleep 0.05
	done
}
start_writers() {	# start_writers SECONDS
	rm -f "$T/stop"
	WRITERS=()
	for p in p1 p2; do
		writer "$T/src/$p" "$1" &
		WRITERS+=($!)
	done
}
stop_writers() {
	touch "$T/stop"
	wait "${WRITERS[@]}"
	WRITERS=()
	sync
}
written() {	# bytes the writers wrote in their last run
	echo $(( $(cat "$T/src/p1.bytes") + $(cat "$T/src/p2.bytes") ))
}
start_export srv="$dev"
mnt=$T/mnt

# Blocks taken after the mount, inside chunks the mount's map calls partly
# hole: such a chunk differs from its digest (which covers them) however
# often it is fetched by the map, so it is fetched whole. Read without
# hydration, nothing may fail; after a resync the view is the source.
mount_ferry "$URL" "$T/mnt0" "cache=$T/cache0,prefetch=0,views=raw"
for i in $(seq 30); do
	head -c 50000 /dev/urandom > "$T/src/p1/w/t$i"
	head -c 50000 /dev/urandom > "$T/src/p2/w/t$i"
done
sync
sleep 1.2	# the exporter's map lifetime: it sees the new blocks
dd if="$T/mnt0/srv.raw" of=/dev/null bs=1M status=none || fail "a read of the live disk failed: $(tail -3 "$T/ferryfs.log")"
m0=$(status "$T/mnt0" srv digest_mismatches)
# (Frozen for the comparison: a live XFS and ext4 write back metadata after
# a sync, on their own schedule.)
freeze_src
echo resync >"$T/mnt0/.ferry/control"
for _ in $(seq 100); do
	[ "$(jq -r .resync.state "$T/mnt0/.ferry/status.json")" = running ] || break
	sleep 0.1
done
dd if="$T/mnt0/srv.raw" of="$T/read0.raw" bs=1M status=none || fail "a read after the resync failed"
python3 "$TOOLS/cmpmap.py" "$T/mnt0/.ferry/map.json" srv "$disk" "$T/read0.raw" >/dev/null ||
	fail "after a resync, the view is not the source with free space zeroed"
thaw_src
rm -f "$T/read0.raw" "$T"/src/p*/w/t*
unmount_ferry "$T/mnt0"
ok "blocks taken since the mount: read without error ($m0 chunks differed from their digests by the map and were fetched whole); after a resync the view equals the source"

start_writers 120
sleep 1
# Capped, so that the writers run during the whole transfer.
mount_ferry "$URL" "$mnt" "cache=$T/cache,views=raw,qcow2,parts,bwlimit=15M"
[ "$(status "$mnt" srv live)" = true ] || fail "a block device is not live: $(status "$mnt" srv)"
used0=$(status "$mnt" srv used)
timeout 300 "$FERRY_CONVERT" -O raw "$mnt/srv.raw" "$T/out.raw" 2>"$T/convert.log" ||
	fail "conversion while the server runs: $(cat "$T/convert.log")"
wait_state "$mnt" srv complete 300
[ -e "$T/stop" ] && fail "the writers stopped before the transfer was done"
mism=$(status "$mnt" srv digest_mismatches)
ok "transfer while writing: $((used0 / MiB)) MiB used at mount, converted and hydrated; $mism chunks changed while fetched"

# A resync while the server still writes: the map follows, it completes.
resync_mount "$mnt" srv 300
ok "live resync: map +$(status "$mnt" srv resync.grew) -$(status "$mnt" srv resync.shrank) bytes, $(status "$mnt" srv resync.changed) chunks changed, $(status "$mnt" srv resync.kept) kept"

# The cutover: stop the services, sync, freeze, final resync.
stop_writers
w=$(written)
for p in p1 p2; do
	(cd "$T/src/$p" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$T/$p.sha"
done
freeze_src
got0=$(status "$mnt" srv data_bytes)
resync_mount "$mnt" srv 300
fetched=$(( $(status "$mnt" srv data_bytes) - got0 ))
used=$(status "$mnt" srv used)
changed=$(status "$mnt" srv resync.changed)
e2fsck -fn "$mnt/srv.p1.raw" >"$T/fsck.log" 2>&1 || fail "e2fsck of the view: $(cat "$T/fsck.log")"
check() {	# check DEV p1|p2 [MOUNT OPTIONS]
	mount ${3:+-o "$3"} "$1" "$T/view/$2" || fail "mount of the $2 copy"
	(cd "$T/view/$2" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$T/$2.copy.sha"
	umount "$T/view/$2"
	cmp -s "$T/$2.sha" "$T/$2.copy.sha" || fail "$2: the files differ from the source's: $(diff "$T/$2.sha" "$T/$2.copy.sha" | head -5)"
}
loop_at "$mnt/srv.p1.raw" 0 $p1len || fail "losetup p1"
check "$LOOP" p1 ro
detach "$LOOP"
# A frozen XFS keeps its log for the next mount to replay: the copy is
# mounted read-write once, as the migrated server will mount it.
cp --sparse=always "$mnt/srv.p2.raw" "$T/p2.img"
loop_at "$T/p2.img" 0 $p2len || fail "losetup p2"
check "$LOOP" p2 nouuid
xfs_repair -n "$LOOP" >"$T/fsck.log" 2>&1 || fail "xfs_repair: $(head -20 "$T/fsck.log")"
detach "$LOOP"
[ "$fetched" -lt $((used / 2)) ] || fail "the final resync fetched $fetched bytes of $used used: a full copy"
[ "$changed" -gt 0 ] || fail "the final resync found no chunk changed after $w bytes written"
ok "cutover: writers wrote $((w / MiB)) MiB in all; the final resync fetched $((fetched / MiB)) MiB ($changed chunks) of $((used / MiB)) MiB used; fsck clean, $(cat "$T"/p1.sha "$T"/p2.sha | wc -l) files equal"
thaw_src

# Three rounds: write, sync, resync, --update; the images follow.
timeout 300 "$FERRY_CONVERT" --update -O raw "$mnt/srv.raw" "$T/out.raw" 2>"$T/convert.log" ||
	fail "--update raw: $(cat "$T/convert.log")"
timeout 300 "$FERRY_CONVERT" -O qcow2 "$mnt/srv.raw" "$T/out.qcow2" 2>"$T/convert.log" ||
	fail "qcow2: $(cat "$T/convert.log")"
for round in 1 2 3; do
	start_writers 3
	wait "${WRITERS[@]}"
	WRITERS=()
	sync
	# Frozen while compared: the filesystems' own writeback after a sync
	# would change the source under the comparison.
	freeze_src
	resync_mount "$mnt" srv 300
	timeout 300 "$FERRY_CONVERT" --update --verify -O raw "$mnt/srv.raw" "$T/out.raw" \
		>"$T/verify.out" 2>"$T/convert.log" || fail "round $round: --update raw: $(cat "$T/convert.log")"
	wrote=$(sed -n 's/.*updated: \([0-9]*\) MiB written.*/\1/p' "$T/convert.log")
	n=$(python3 "$TOOLS/cmpmap.py" "$mnt/.ferry/map.json" srv "$disk" "$T/out.raw") ||
		fail "round $round: the raw image is not the source with free space zeroed"
	timeout 300 "$FERRY_CONVERT" --update -O qcow2 "$mnt/srv.raw" "$T/out.qcow2" 2>"$T/convert.log" ||
		fail "round $round: --update qcow2: $(cat "$T/convert.log")"
	qemu-img compare -q -f qcow2 -F raw "$T/out.qcow2" "$T/out.raw" ||
		fail "round $round: the qcow2 image differs"
	qemu-img compare -q -f qcow2 -F raw "$mnt/srv.qcow2" "$T/out.raw" ||
		fail "round $round: the qcow2 view differs"
	thaw_src
	ok "round $round: $(( $(written) / MiB )) MiB written, map +$(status "$mnt" srv resync.grew) -$(status "$mnt" srv resync.shrank), $(status "$mnt" srv resync.changed) chunks changed; --update wrote $wrote MiB of raw; raw ($((n / MiB)) MiB of data) and qcow2 equal the source with free space zeroed"
done
unmount_ferry "$mnt"

# The disk's image file exported while its filesystems are mounted (through
# loop devices on it): live too, with a generation that a write does not
# change (its mtime does), so a mount hydrates while the server writes.
start_export srv="$disk"
api /v1/disks >/dev/null
jq -e '.disks[0].live == true and (.disks[0].generation | startswith("live-"))' "$T/body" >/dev/null ||
	fail "an image file with mounted filesystems is not live: $(cat "$T/body")"
gen=$(jq -r '.disks[0].generation' "$T/body")
mount_ferry "$URL" "$T/mnt2" "cache=$T/cache2,views=raw,parts,bwlimit=30M"
start_writers 60
wait_state "$T/mnt2" srv complete 300
stop_writers
api /v1/disks >/dev/null
[ "$(jq -r '.disks[0].generation' "$T/body")" = "$gen" ] || fail "a write changed the live file's generation"
freeze_src
resync_mount "$T/mnt2" srv 300
e2fsck -fn "$T/mnt2/srv.p1.raw" >"$T/fsck.log" 2>&1 || fail "e2fsck of the file's view: $(cat "$T/fsck.log")"
dd if="$T/mnt2/srv.raw" of="$T/read2.raw" bs=1M status=none || fail "reading the file's view"
python3 "$TOOLS/cmpmap.py" "$T/mnt2/.ferry/map.json" srv "$disk" "$T/read2.raw" >/dev/null ||
	fail "the image file's view is not the source with free space zeroed"
thaw_src
unmount_ferry "$T/mnt2"
ok "the image file, exported while mounted: live (generation $gen kept across writes), hydrated while writing, resync equal to the source"
echo "PASS"
