#!/usr/bin/env bash
# Used blocks, in one run (root: loop devices):
# 1. The server disk of tests/test-usedblocks.sh (GPT: FAT, ext4 4K and 1K,
#    XFS, NTFS, swap, ext4 in an LVM2 PV; deleted random files in each),
#    exported as a whole-disk loop device: time to a complete cold mount and
#    bytes on the wire, default against --all-blocks, with partclone's used
#    count of the same filesystems.
# 2. Map computation time and peak RSS of `ferry-export --print-map` on a
#    64 GiB XFS and a 64 GiB ext4 (sparse backing files) holding 2 GiB,
#    unmounted (on-disk structures) and mounted (the kernel's GETFSMAP).
# Usage: bench/usedblocks.sh
bash "$(dirname "$0")/../contrib/install-deps.sh" >&2	# partclone, mtools, ...
. "$(dirname "$0")/lib.sh" losetup sgdisk mkfs.ext4 mkfs.xfs mkntfs mcopy \
	pvcreate partclone.extfs partclone.xfs partclone.ntfs partclone.fat jq \
	python3 bc /usr/bin/time
. tests/serverdisk.sh
[ "$(id -u)" = 0 ] || { echo "needs root (loop devices)" >&2; exit 1; }
bench_cleanup() {
	local m
	for m in "$W"/fs*; do
		mountpoint -q "$m" 2>/dev/null && umount "$m"
	done
	detach_loops
}

now() { date +%s.%N; }

echo "== the server disk ($SERVER_DISK_MIB MiB)"
server_disk "$W/disk.img" "$W/src" >/dev/null
loop_at "$W/disk.img" 0 $((SERVER_DISK_MIB * M))
dev=$LOOP
clone=0
while read -r num start size kind; do
	case $kind in
	vfat) tool=partclone.fat ;; ext4*) tool=partclone.extfs ;;
	xfs) tool=partclone.xfs ;; ntfs) tool=partclone.ntfs ;; *) continue ;;
	esac
	loop_at "$W/disk.img" $((start * M)) $((size * M))
	"$tool" -D -s "$LOOP" -o "$W/dom.$num" -q >/dev/null 2>&1
	detach "$LOOP"
	clone=$((clone + $(awk '$3 == "+" {print $2}' "$W/dom.$num" |
		while read -r x; do echo $((x)); done | paste -sd+ | bc)))
done <<< "$SERVER_PARTS"
lvstart=$(awk '$4 == "lvm" {print $2}' <<< "$SERVER_PARTS")
lvoff=$(((lvstart + 1 + LV_PE * 4) * M))
loop_at "$W/disk.img" $lvoff $((LV_MIB * M))
partclone.extfs -D -s "$LOOP" -o "$W/dom.lv" -q >/dev/null 2>&1
detach "$LOOP"
clone=$((clone + $(awk '$3 == "+" {print $2}' "$W/dom.lv" |
	while read -r x; do echo $((x)); done | paste -sd+ | bc)))

run() {	# run LABEL MOUNT-OPTIONS [EXPORT OPTIONS]: cold mount to complete
	local label=$1 mopts=$2 t0 t1 url wire data
	shift 2
	rm -f "$W/url"
	"$EXPORT" --listen 127.0.0.1:0 --url-file "$W/url" "$@" srv="$dev" \
		>/dev/null 2>>"$W/export.log" &
	EPID=$!
	for _ in $(seq 100); do [ -s "$W/url" ] && break; sleep 0.1; done
	url=$(cat "$W/url")
	mkdir -p "$W/mnt"
	rm -rf "$W/cache"
	t0=$(now)
	"$FERRYFS" -f -o "cache=$W/cache,views=raw$mopts" "$url" "$W/mnt" 2>>"$W/ferryfs.log" &
	FPID=$!
	for _ in $(seq 6000); do
		[ "$(jq -r '.disks[0].state' "$W/mnt/.ferry/status.json" 2>/dev/null)" = complete ] && break
		sleep 0.05
	done
	t1=$(now)
	wire=$(jq '.disks[0].wire_bytes' "$W/mnt/.ferry/status.json")
	data=$(jq '.disks[0].data_bytes' "$W/mnt/.ferry/status.json")
	fusermount3 -u "$W/mnt"; wait "$FPID"; FPID=
	kill "$EPID"; wait "$EPID" 2>/dev/null || true; EPID=
	printf '%-36s %8.2f s %10.1f MiB %10.1f MiB\n' "$label" \
		"$(echo "$t1 - $t0" | bc -l)" "$(echo "$data / $M" | bc -l)" \
		"$(echo "$wire / $M" | bc -l)"
	eval "${label%% *}_wire=$wire"
}
printf '%-36s %10s %14s %14s\n' "" "to complete" "data" "on the wire"
run "default (used blocks)" ""
run "allblocks (--all-blocks)" "" --all-blocks
run "plain (compress=0)" ",compress=0"
run "plainall (compress=0, --all-blocks)" ",compress=0" --all-blocks
printf 'partclone -D counts %.1f MiB in use; wire, default/--all-blocks: %.3f; with compress=0: %.3f\n' \
	"$(echo "$clone / $M" | bc -l)" "$(echo "$default_wire / $allblocks_wire" | bc -l)" \
	"$(echo "$plain_wire / $plainall_wire" | bc -l)"
detach "$dev"

echo
echo "== map computation: 64 GiB filesystems holding 2 GiB"
printf '%-22s %10s %10s %12s\n' "" "seconds" "RSS MiB" "used MiB"
fill_big() {	# DIR: 2 GiB in 2048 files of 1 MiB, in 32 directories
	local d
	for d in $(seq 32); do
		mkdir -p "$1/d$d"
		for f in $(seq 64); do
			head -c $M /dev/urandom > "$1/d$d/f$f"
		done
	done
	sync
}
map_row() {	# LABEL PATH
	/usr/bin/time -f '%e %M' -o "$W/time" "$EXPORT" --print-map big="$2" \
		> "$W/map.json" 2>/dev/null
	read -r secs kb < "$W/time"
	printf '%-22s %10s %10.1f %12.1f\n' "$1" "$secs" "$(echo "$kb / 1024" | bc -l)" \
		"$(echo "$(jq '.[0].used' "$W/map.json") / $M" | bc -l)"
}
for fs in xfs ext4; do
	truncate -s 64G "$W/$fs.img"
	loop_at "$W/$fs.img" 0 $((64 * 1024 * M))
	l=$LOOP
	if [ $fs = xfs ]; then mkfs.xfs -q -f "$l"; else mkfs.ext4 -q -F "$l"; fi
	mkdir -p "$W/fs$fs"
	mount "$l" "$W/fs$fs"
	fill_big "$W/fs$fs"
	map_row "$fs mounted (kernel)" "$l"
	umount "$W/fs$fs"
	map_row "$fs unmounted (disk)" "$l"
	detach "$l"
	rm -f "$W/$fs.img"
done
