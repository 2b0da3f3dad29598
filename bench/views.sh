#!/usr/bin/env bash
# Image views on a warm mount: how big NAME.qcow2 and NAME.vhd are against
# the allocated bytes of the disk, and how long `qemu-img convert -O qcow2`
# takes reading the qcow2 view versus the raw view of the same disk, once
# the cache is complete (ferry's own converter is a later issue).
# The disk: SIZE with ~40% holes, interleaved in 8 MiB stripes with random
# data, text and written zeros, so clusters and blocks straddle both.
# Usage: bench/views.sh [SIZE_MIB=1024] [RUNS=3]
# Env: OUT=DIR for the converted images (default /dev/shm, so the disk
# that receives them is not what is measured); FERRY_BUILD=build dir.
SIZE_MIB=${1:-1024}
RUNS=${2:-3}
OUT=${OUT:-/dev/shm}
. "$(dirname "$0")/lib.sh" qemu-img jq python3 bc
O=$(mktemp -d "$OUT/ferry-bench-out.XXXXXX")
bench_cleanup() { rm -rf "$O"; }

# Stray bits of data before each hole, so clusters and blocks straddle.
stripe_disk "$W/disk.img" "$SIZE_MIB" 1

"$EXPORT" --listen 127.0.0.1:0 --url-file "$W/url" disk="$W/disk.img" 2>"$W/export.log" >/dev/null &
EPID=$!
for _ in $(seq 100); do [ -s "$W/url" ] && break; sleep 0.1; done
mkdir -p "$W/mnt"
"$FERRYFS" -f -o cache="$W/cache" "$(cat "$W/url")" "$W/mnt" 2>"$W/fs.log" &
FPID=$!
for _ in $(seq 100); do [ -f "$W/mnt/.ferry/status.json" ] && break; sleep 0.1; done
for _ in $(seq 600); do
	[ "$(jq -r '.disks[0].state' "$W/mnt/.ferry/status.json")" = complete ] && break
	sleep 0.5
done
[ "$(jq -r '.disks[0].state' "$W/mnt/.ferry/status.json")" = complete ] || { echo "hydration did not finish" >&2; exit 1; }

alloc=$(jq '.disks[0].allocated' "$W/mnt/.ferry/status.json")
printf "disk: %d MiB, allocated %d bytes (%.1f%%)\n\n" "$SIZE_MIB" "$alloc" \
	"$(echo "100 * $alloc / ($SIZE_MIB * $M)" | bc -l)"
printf "%-16s %14s %10s\n" view "file bytes" "/ alloc"
for f in raw qcow2 vhd fixed.vhd; do
	s=$(stat -c %s "$W/mnt/disk.$f")
	printf "%-16s %14d %10.3f\n" "disk.$f" "$s" "$(echo "$s / $alloc" | bc -l)"
done
echo

convert() {	# FORMAT FILE: seconds of one qemu-img convert -O qcow2
	local t0 t1
	rm -f "$O/out.qcow2"
	t0=$(date +%s.%N)
	qemu-img convert -f "$1" -O qcow2 "$2" "$O/out.qcow2"
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}
# Warm the kernel's page cache of both views first.
cat "$W/mnt/disk.raw" "$W/mnt/disk.qcow2" > /dev/null
printf "%-34s %9s %9s\n" "qemu-img convert -O qcow2 from" "seconds" "MB/s"
for v in "raw raw" "qcow2 qcow2" "vpc vhd"; do
	set -- $v
	t=$(for _ in $(seq "$RUNS"); do convert "$1" "$W/mnt/disk.$2"; done | median)
	qemu-img compare -f raw -F qcow2 "$W/disk.img" "$O/out.qcow2" >/dev/null || { echo "convert from disk.$2 differs" >&2; exit 1; }
	printf "%-34s %9.2f %9.0f\n" "disk.$2 (warm)" "$t" "$(echo "$SIZE_MIB * $M / $t / 1000000" | bc -l)"
done
t=$(for _ in $(seq "$RUNS"); do convert raw "$W/disk.img"; done | median)
printf "%-34s %9.2f %9.0f\n" "the source file itself" "$t" "$(echo "$SIZE_MIB * $M / $t / 1000000" | bc -l)"
