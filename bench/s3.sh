#!/usr/bin/env bash
# An image into S3 while data arrives, against a real Ceph RGW on
# 127.0.0.1 (root: tests/ceph-rgw.sh starts one), on a cold mount capped
# at RATE, in one run on one disk:
#   1. plain hydration: mount, wait until every chunk is cached
#   2. ferry-convert -O qcow2 from a cold mount straight to s3:// (time to
#      a finished object)
#   3. the classic: hydrate, ferry-convert to a file, then s3cmd put
# and prints each time and its ratio to plain hydration (goal for 2: at
# most 1.1). Then, on a warm mount, the upload alone for part sizes 8M to
# 64M (what the default is chosen by), and row 2 against its floor here:
# the slower of plain hydration and the upload alone at the default part
# size (8M), which on this machine's RGW may be the slower.
# Before the rows, an untimed upload of 64 MiB warms the new RGW up: its
# first PUTs take seconds (a 64 MiB upload 3.4 s, the next 0.5 s), which
# row 2, the first timed upload, paid alone.
# Usage: bench/s3.sh [SIZE_MIB=1024] [RATE=100M]   Env: PARALLEL (4)
SIZE_MIB=${1:-1024}
RATE=${2:-100M}
PARALLEL=${PARALLEL:-4}
. "$(dirname "$0")/lib.sh" qemu-img jq python3 bc s3cmd radosgw
[ "$(id -u)" = 0 ] || { echo "needs root (Ceph daemons)" >&2; exit 1; }
CONVERT=$B/tools/convert/ferry-convert
# tests/ceph-rgw.sh's conventions: $T, PIDS, fail.
T=$W
PIDS=()
fail() { echo "bench/s3.sh: $*" >&2; exit 1; }
bench_cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null; done
}
. tests/ceph-rgw.sh
RGW_MEMSTORE_BYTES=$((6 << 30)) rgw_start
s3cmd_ mb s3://bench >/dev/null || fail "s3cmd mb"
head -c $((64 << 20)) /dev/urandom >"$W/warm.raw"
"$CONVERT" -O qcow2 --journal "$W/jw" "$W/warm.raw" s3://bench/warm.qcow2 2>>"$W/convert.log" ||
	fail "the warm-up upload: $(tail -2 "$W/convert.log")"
s3cmd_ del -q s3://bench/warm.qcow2 >/dev/null 2>&1 || true
rm -f "$W/warm.raw"

stripe_disk "$W/disk.img" "$SIZE_MIB"
export_local --scan-zeros disk="$W/disk.img"

now() { date +%s.%N; }
row() { printf '%-58s %8.1f s %6.2f x\n' "$1" "$2" "$(echo "$2 / $BASE" | bc -l)"; }

data=$(python3 -c "import os; print(os.stat('$W/disk.img').st_blocks * 512 >> 20)")
printf 'disk %d MiB, %d MiB allocated; ferryfs -o bwlimit=%s; RGW (memstore) on 127.0.0.1; --parallel %s\n\n' \
	"$SIZE_MIB" "$data" "$RATE" "$PARALLEL"

mount_cold "bwlimit=$RATE"
t0=$(now); wait_complete; BASE=$(echo "$(now) - $t0" | bc -l)
unmount
row "plain hydration (mount until complete)" "$BASE"

mount_cold "bwlimit=$RATE"
t0=$(now)
"$CONVERT" -O qcow2 --parallel "$PARALLEL" --journal "$W/j1" "$W/mnt/disk.raw" s3://bench/ferry.qcow2 2>>"$W/convert.log" ||
	fail "ferry-convert to s3://: $(tail -2 "$W/convert.log")"
DT=$(echo "$(now) - $t0" | bc -l)
row "ferry-convert -O qcow2 s3://, cold mount" "$DT"
COLD=$DT
unmount

mount_cold "bwlimit=$RATE"
t0=$(now)
wait_complete
"$CONVERT" -O qcow2 "$W/mnt/disk.raw" "$W/classic.qcow2" 2>>"$W/convert.log"
s3cmd_ put -q "$W/classic.qcow2" s3://bench/classic.qcow2 >"$W/s3cmd.log" 2>&1 ||
	fail "s3cmd put: $(tail -3 "$W/s3cmd.log")"
DT=$(echo "$(now) - $t0" | bc -l)
row "hydrate, then ferry-convert to a file, then s3cmd put" "$DT"
s3cmd_ get -q --force s3://bench/ferry.qcow2 "$W/got.qcow2" || fail "s3cmd get"
cmp "$W/got.qcow2" "$W/classic.qcow2" || echo "  (the two objects differ!)"
rm -f "$W/got.qcow2"

# The upload alone (warm mount), by part size.
echo
for part in 8M 16M 32M 64M; do
	t0=$(now)
	"$CONVERT" -O qcow2 --parallel "$PARALLEL" --part-size "$part" --journal "$W/j-$part" \
		"$W/mnt/disk.raw" "s3://bench/part-$part.qcow2" 2>>"$W/convert.log" || fail "part $part"
	DT=$(echo "$(now) - $t0" | bc -l)
	[ "$part" != 8M ] || UP=$DT
	printf 'upload alone, warm mount, --part-size %-4s %8.1f s %6.0f MB/s\n' "$part" "$DT" \
		"$(echo "$(stat -c %s "$W/classic.qcow2") / $DT / 1000000" | bc -l)"
	s3cmd_ del -q "s3://bench/part-$part.qcow2" >/dev/null 2>&1 || true
done
unmount
FLOOR=$(echo "if ($UP > $BASE) $UP else $BASE" | bc -l)
printf '\nfloor of the cold row: the slower of hydration (%.1f s) and the upload alone (%.1f s) = %.1f s; the cold row %.2f x that\n' \
	"$BASE" "$UP" "$FLOOR" "$(echo "$COLD / $FLOOR" | bc -l)"
