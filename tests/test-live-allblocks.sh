#!/usr/bin/env bash
# A live block device served --all-blocks (forensic work) or --scan-zeros:
# blocks read as zeros must not be learnt as holes, since the running
# server may write them later. The free space of a mounted ext4 is read
# (hydration), a file is then written there on the source, and after the
# cutover's freeze and a resync the copy holds the file: e2fsck clean, the
# file's checksum the source's.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/serverdisk.sh"
requires losetup sgdisk mkfs.ext4 mkfs.xfs fsfreeze e2fsck jq sha256sum
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (loop devices)"; exit 77; }

test_cleanup() {
	live_cleanup
}

live_disk "$T/disk.img" 128
head -c $((2 * MiB)) /dev/urandom > "$T/src/p1/before.bin"
sync

for mode in --all-blocks --scan-zeros; do
	start_export "$mode" srv="$dev"
	grep -q "srv: live" "$T/export.log" ||
		fail "$mode on a live device: no line saying zero blocks are not learnt: $(cat "$T/export.log")"
	mnt=$T/mnt
	rm -rf "$T/cache"
	mount_ferry "$URL" "$mnt" "cache=$T/cache,views=raw,parts"
	# Hydration reads every block of the disk, its free space too.
	wait_state "$mnt" srv complete 120
	used0=$(status "$mnt" srv used)

	# The running server writes where the copy read zeros: a file's data
	# in free space, and inodes in inode table blocks still zero (600
	# files: past the first 64 KiB of the table).
	head -c $((24 * MiB)) /dev/urandom > "$T/src/p1/after.bin"
	mkdir -p "$T/src/p1/many"
	for i in $(seq 600); do echo "file $i" > "$T/src/p1/many/f$i"; done
	(cd "$T/src/p1" && find . -type f ! -path ./lost+found -print0 | sort -z | xargs -0 sha256sum) > "$T/p1.sha"
	freeze_src
	resync_mount "$mnt" srv
	[ "$(status "$mnt" srv resync.pending)" = 0 ] ||
		fail "$mode: resync left $(status "$mnt" srv resync.pending) chunks pending"
	used1=$(status "$mnt" srv used)
	if [ "$mode" = --all-blocks ]; then
		[ "$used0" = $((512 * MiB)) ] && [ "$used1" = $((512 * MiB)) ] ||
			fail "$mode: the map of a live disk of $((512 * MiB)) bytes says $used0, then $used1 used"
	fi
	e2fsck -fn "$mnt/srv.p1.raw" >"$T/fsck.log" 2>&1 ||
		fail "$mode: e2fsck of the copy: $(head -20 "$T/fsck.log")"
	loop_at "$mnt/srv.p1.raw" 0 $p1len || fail "losetup p1"
	mount -o ro "$LOOP" "$T/view/p1" || fail "mount of the p1 copy"
	(cd "$T/view/p1" && sha256sum --quiet -c "$T/p1.sha") >"$T/sums.log" 2>&1 ||
		fail "$mode: files of the copy differ: $(cat "$T/sums.log")"
	umount "$T/view/p1"
	detach "$LOOP"
	thaw_src
	unmount_ferry "$mnt"
	kill "$EXPORT_PID"
	wait "$EXPORT_PID" 2>/dev/null
	ok "$mode: used $((used0 / MiB)) -> $((used1 / MiB)) MiB; a file and 600 inodes written on the live source where the copy had read zeros is in the copy after resync (e2fsck clean, checksums equal)"
	rm -r "$T/src/p1/after.bin" "$T/src/p1/many"
	sync
	: >"$T/export.log"
done
echo "PASS"
