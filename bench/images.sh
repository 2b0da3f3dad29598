#!/usr/bin/env bash
# Image formats as sources: for each format qemu-img makes from one raw
# disk, the read throughput of the raw view of a local mount (file://,
# -o cache=none) against reading the raw original, whether an allocation
# map was used (the mount's allocated bytes against the disk size), and the
# same through ferry-export and a cold ferryfs mount.
# The disk: SIZE, 40% holes, in 8 MiB stripes of holes, random data, text
# and written zeros.
# Usage: bench/images.sh [SIZE_MIB=1024]
SIZE_MIB=${1:-1024}
. "$(dirname "$0")/lib.sh" qemu-img jq python3 bc

stripe_disk "$W/disk.img" "$SIZE_MIB"
cd "$W"
qemu-img convert -O qcow2 disk.img disk.qcow2
qemu-img convert -c -O qcow2 disk.img comp.qcow2
qemu-img convert -O vpc disk.img dyn.vhd
qemu-img convert -O vpc -o subformat=fixed disk.img fixed.vhd
qemu-img convert -O vhdx disk.img disk.vhdx
qemu-img convert -O vmdk disk.img sparse.vmdk
qemu-img convert -O vmdk -o subformat=monolithicFlat disk.img flat.vmdk
cd - >/dev/null
S=$((SIZE_MIB * M))

now() { date +%s.%N; }
rate() { echo "$S / ($2 - $1) / 1000000" | bc -l; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
dd_time() {	# file -> seconds to read SIZE bytes of it
	local t0
	cold
	t0=$(now)
	dd if="$1" of=/dev/null bs=1M count="$SIZE_MIB" status=none
	echo "$(now) - $t0" | bc -l
}
mount_it() {	# source options
	mkdir -p "$W/mnt"
	"$FERRYFS" -f -o "$2" "$1" "$W/mnt" 2>>"$W/ferryfs.log" &
	FPID=$!
	for _ in $(seq 100); do [ -f "$W/mnt/.ferry/status.json" ] && break; sleep 0.1; done
}
unmount_it() { fusermount3 -u "$W/mnt"; wait "$FPID" || true; FPID=; }

base=$(dd_time "$W/disk.img")
printf 'disk %d MiB, %d MiB allocated; dd bs=1M of the raw original: %.0f MB/s\n\n' \
	"$SIZE_MIB" "$(( $(stat -c %b "$W/disk.img") * 512 / M ))" "$(echo "$S / $base / 1000000" | bc -l)"
printf '%-14s %10s %12s %10s %12s %10s\n' format "map MiB" "local MB/s" "x raw" "export MB/s" "x raw"
"$EXPORT" --listen 127.0.0.1:0 --url-file "$W/url" \
	q=$W/disk.qcow2 c=$W/comp.qcow2 d=$W/dyn.vhd f=$W/fixed.vhd x=$W/disk.vhdx s=$W/sparse.vmdk m=$W/flat.vmdk \
	2>"$W/export.log" >/dev/null &
EPID=$!
for _ in $(seq 100); do [ -s "$W/url" ] && break; sleep 0.1; done
URL=$(cat "$W/url")
for pair in q:disk.qcow2 c:comp.qcow2 d:dyn.vhd f:fixed.vhd x:disk.vhdx s:sparse.vmdk m:flat.vmdk; do
	name=${pair%%:*} file=${pair#*:}
	mount_it "file://$W/$file" cache=none,views=raw
	raw=$(ls "$W/mnt" | grep '\.raw$')
	alloc=$(jq '.disks[0].allocated / 1048576 | floor' "$W/mnt/.ferry/status.json")
	t=$(dd_time "$W/mnt/$raw")
	unmount_it
	rm -rf "$W/cache"
	mount_it "$URL" "cache=$W/cache,views=raw,prefetch=0"
	t2=$(dd_time "$W/mnt/$name.raw")
	unmount_it
	printf '%-14s %10s %12.0f %10.2f %12.0f %10.2f\n' "$file" "$alloc" \
		"$(echo "$S / $t / 1000000" | bc -l)" "$(echo "$base / $t" | bc -l)" \
		"$(echo "$S / $t2 / 1000000" | bc -l)" "$(echo "$base / $t2" | bc -l)"
done
