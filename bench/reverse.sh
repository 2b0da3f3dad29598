#!/usr/bin/env bash
# Reverse connections against direct ones, in one run, on one disk: the
# exporter listening and ferryfs dialling (direct), against ferryfs
# listening and the exporter dialling in (ferryfs --listen, ferry-export
# --connect), on loopback.
#
#  - cold sequential read: dd of disk.raw from a fresh cache, hydration off
#  - hydration: a fresh mount with hydration on, until status.json says
#    complete
#
# Each figure is the median of RUNS runs, direct and reverse alternating.
# MB/s are disk bytes (10^6) over wall time; "ratio" is reverse / direct
# (the goal is at least 0.9).
# Usage: bench/reverse.sh [SIZE_MIB=1024]   Env: RUNS (3), COMPRESS (auto)
SIZE_MIB=${1:-1024}
RUNS=${RUNS:-3}
COMPRESS=${COMPRESS:-auto}
. "$(dirname "$0")/lib.sh" dd python3 jq
RPID=
bench_cleanup() {
	[ -n "$RPID" ] && kill "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null || true
}
now() { date +%s.%N; }
wait_file() { for _ in $(seq 400); do [ -s "$1" ] && return 0; sleep 0.05; done; return 1; }
rate() { awk -v b="$1" -v t="$2" 'BEGIN {printf "%.0f", b / t / 1e6}'; }

stripe_disk "$W/disk.img" "$SIZE_MIB"
DISK=$W/disk.img
mkdir -p "$W/mnt"
used=$(python3 -c 'import os,sys; print(os.stat(sys.argv[1]).st_blocks * 512)' "$DISK")

# mount_direct PREFETCH: the exporter listens, ferryfs dials; $RAW is the
# raw view, $STATUS the status file.
mount_direct() {
	rm -rf "$W/cache" "$W/url"
	"$EXPORT" --listen 127.0.0.1:0 --url-file "$W/url" disk="$DISK" \
		>/dev/null 2>>"$W/export.log" &
	EPID=$!
	wait_file "$W/url" || { echo "ferry-export did not start" >&2; exit 1; }
	"$FERRYFS" -f -o cache="$W/cache",prefetch="$1",compress="$COMPRESS" \
		"$(cat "$W/url")" "$W/mnt" 2>>"$W/ferryfs.log" &
	FPID=$!
	for _ in $(seq 200); do [ -e "$W/mnt/disk.raw" ] && break; sleep 0.05; done
	RAW=$W/mnt/disk.raw STATUS=$W/mnt/.ferry/status.json
}
# mount_reverse PREFETCH: ferryfs listens, the exporter dials in.
mount_reverse() {
	rm -rf "$W/cache" "$W/url"
	"$FERRYFS" -f --listen 127.0.0.1:0 --url-file "$W/url" \
		-o cache="$W/cache",prefetch="$1",compress="$COMPRESS" "$W/mnt" \
		>/dev/null 2>>"$W/ferryfs.log" &
	FPID=$!
	wait_file "$W/url" || { echo "ferryfs --listen did not start" >&2; exit 1; }
	"$EXPORT" --connect "@$W/url" --name src disk="$DISK" \
		2>>"$W/export.log" &
	EPID=$!
	for _ in $(seq 400); do [ -e "$W/mnt/src/disk.raw" ] && break; sleep 0.05; done
	RAW=$W/mnt/src/disk.raw STATUS=$W/mnt/src/.ferry/status.json
}
unmount() {
	fusermount3 -u "$W/mnt"
	wait "$FPID" 2>/dev/null || true
	kill "$EPID" 2>/dev/null; wait "$EPID" 2>/dev/null || true
	FPID= EPID=
}
cold_read() {	# mode: prints MB/s
	"mount_$1" 0
	local t0 t1
	t0=$(now)
	dd if="$RAW" of=/dev/null bs=4M status=none
	t1=$(now)
	unmount
	rate "$((SIZE_MIB * M))" "$(echo "$t1 - $t0" | bc -l)"
}
hydrate() {	# mode: prints MB/s of used bytes
	"mount_$1" 1
	local t0 t1
	t0=$(now)
	wait_json "$STATUS" 'j["disks"][0]["state"] == "complete"' 0.1
	t1=$(now)
	unmount
	rate "$used" "$(echo "$t1 - $t0" | bc -l)"
}

echo "disk: $SIZE_MIB MiB, $((used / M)) MiB allocated; compress=$COMPRESS; $RUNS runs each"
declare -A res
for test in cold_read hydrate; do
	for i in $(seq "$RUNS"); do
		for mode in direct reverse; do
			res[$test.$mode]+="$($test $mode) "
		done
	done
done
for test in cold_read hydrate; do
	echo "$test runs: direct ${res[$test.direct]}/ reverse ${res[$test.reverse]}"
done
printf '%-28s %9s %9s %7s\n' "" "direct" "reverse" "ratio"
for test in cold_read hydrate; do
	d=$(echo "${res[$test.direct]}" | tr ' ' '\n' | grep . | median)
	r=$(echo "${res[$test.reverse]}" | tr ' ' '\n' | grep . | median)
	printf '%-28s %7s MB/s %7s MB/s %7s\n' "$test" "$d" "$r" \
		"$(awk -v a="$r" -v b="$d" 'BEGIN {printf "%.2f", a / b}')"
done
