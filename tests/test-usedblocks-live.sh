#!/usr/bin/env bash
# Used blocks of a running server: ext4 and XFS mounted read-write on the
# source (through loop devices at their partitions' offsets, as partitions
# can only be reached here) while the whole-disk loop device is exported.
# Their maps come from the kernel (GETFSMAP), follow files written and
# deleted (on-disk bitmaps lag the journal), and after fsfreeze the copy
# passes fsck and holds the source's files.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/serverdisk.sh"
requires losetup sgdisk mkfs.ext4 mkfs.xfs fsfreeze e2fsck xfs_repair jq
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (loop devices)"; exit 77; }

test_cleanup() {
	live_cleanup
}

disk=$T/disk.img
live_disk "$disk" 128
for p in p1 p2; do
	head -c $((40 * MiB)) /dev/urandom > "$T/src/$p/deleted.bin"
	sync
	rm "$T/src/$p/deleted.bin"
	head -c $((10 * MiB)) /dev/urandom > "$T/src/$p/a.bin"
done
sync

start_export srv="$dev"
info() {	# info WHERE FIELD
	api /v1/info >/dev/null
	jq -r --arg w "$1" ".disks[0].volumes[] | select(.where == \$w) | .$2" "$T/body"
}
for p in p1 p2; do
	[ "$(info $p map)" = kernel ] || fail "$p not mapped by the kernel: $(cat "$T/body")"
done
ok "mounted ext4 and xfs are mapped by the kernel (GETFSMAP)"

# The map follows the live filesystems (after the map's 1 s lifetime).
u0=$(info p1 used) x0=$(info p2 used)
for p in p1 p2; do
	head -c $((30 * MiB)) /dev/urandom > "$T/src/$p/b.bin"
done
sync
# A map lives 1 s, or 20 times what it took to compute (longer on a busy
# machine): look again until both have followed, 10 s at most.
for _ in $(seq 30); do
	sleep 0.35
	u1=$(info p1 used) x1=$(info p2 used)
	[ $((u1 - u0)) -ge $((30 * MiB)) ] && [ $((x1 - x0)) -ge $((30 * MiB)) ] && break
done
[ $((u1 - u0)) -ge $((30 * MiB)) ] || fail "ext4 used $u0 -> $u1 after a 30 MiB file"
[ $((x1 - x0)) -ge $((30 * MiB)) ] || fail "xfs used $x0 -> $x1 after a 30 MiB file"
rm "$T/src/p1/b.bin" "$T/src/p2/b.bin"
sync
for _ in $(seq 30); do
	sleep 0.35
	u2=$(info p1 used) x2=$(info p2 used)
	[ $((u1 - u2)) -ge $((29 * MiB)) ] && [ $((x1 - x2)) -ge $((29 * MiB)) ] && break
done
[ $((u1 - u2)) -ge $((29 * MiB)) ] || fail "ext4 used $u1 -> $u2 after deleting it"
[ $((x1 - x2)) -ge $((29 * MiB)) ] || fail "xfs used $x1 -> $x2 after deleting it"
ok "maps follow: ext4 $((u0 / MiB)) -> $((u1 / MiB)) -> $((u2 / MiB)) MiB, xfs $((x0 / MiB)) -> $((x1 / MiB)) -> $((x2 / MiB)) MiB"

# A mounted filesystem the exporter cannot see as mounted (a copy of its
# bytes, here; another mount namespace, on a real host) is not read from
# its lagging on-disk structures: the ext4's journal needs recovery, and the
# XFS's superblock free count disagrees with its AGs.
copy_part() {	# copy_part OFFSET LENGTH FILE
	dd if="$disk" of="$3" bs=1M skip=$(($1 / MiB)) count=$(($2 / MiB)) \
		conv=sparse status=none
}
copy_part $p1off $p1len "$T/p1-live.img"
copy_part $p2off $p2len "$T/p2-live.img"
"$FERRY_EXPORT" --print-map a="$T/p1-live.img" b="$T/p2-live.img" \
	> "$T/live-map.json" 2>>"$T/export.log" || fail "--print-map"
jq -e '.[0].volumes[0] | .map == "unknown" and (.reason | test("journal needs recovery"))' \
	"$T/live-map.json" >/dev/null || fail "live ext4 copy: $(jq -c '.[0].volumes' "$T/live-map.json")"
jq -e '.[1].volumes[0] | .map == "unknown" and (.reason | test("log is not clean"))' \
	"$T/live-map.json" >/dev/null || fail "live xfs copy: $(jq -c '.[1].volumes' "$T/live-map.json")"
ok "copies of the mounted ext4 and xfs are all data (a journal to recover, a log not clean)"

# The cutover: more files, then freeze, then the copy.
for p in p1 p2; do
	mkdir -p "$T/src/$p/etc"
	for i in $(seq 20); do echo "setting $i" > "$T/src/$p/etc/f$i"; done
	head -c $((5 * MiB)) /dev/urandom > "$T/src/$p/c.bin"
	(cd "$T/src/$p" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$T/$p.sha"
done
freeze_src
sleep 1.2
mnt=$T/mnt
mount_ferry "$URL" "$mnt" "cache=$T/cache,views=raw,parts"
wait_state "$mnt" srv complete 120
used=$(status "$mnt" srv used)
[ "$used" -lt $((200 * MiB)) ] || fail "used $used of 512 MiB: free space was sent"
e2fsck -fn "$mnt/srv.p1.raw" >"$T/fsck.log" 2>&1 || fail "e2fsck: $(cat "$T/fsck.log")"
check() {	# check DEV p1|p2 [MOUNT OPTIONS]
	mount ${3:+-o "$3"} "$1" "$T/view/$2" || fail "mount of the $2 copy"
	(cd "$T/view/$2" && sha256sum --quiet -c "$T/$2.sha") >"$T/sums.log" 2>&1 ||
		fail "$2 files differ: $(head -5 "$T/sums.log")"
	umount "$T/view/$2"
}
loop_at "$mnt/srv.p1.raw" 0 $p1len || fail "losetup p1"
check "$LOOP" p1 ro
# A frozen XFS keeps its log (and lazy counters) for the next mount to
# replay, as after a crash: the copy is mounted read-write once, as the
# migrated server will, and then it is clean.
cp --sparse=always "$mnt/srv.p2.raw" "$T/p2.img"
loop_at "$T/p2.img" 0 $p2len || fail "losetup p2"
check "$LOOP" p2 nouuid	# the source is still mounted
xfs_repair -n "$LOOP" >"$T/fsck.log" 2>&1 || fail "xfs_repair: $(head -20 "$T/fsck.log")"
ok "frozen copy: $((used / MiB)) MiB sent of 512; ext4 fsck clean as it is, xfs after its log replay; files equal"
thaw_src
echo "PASS"
