#!/usr/bin/env bash
# Converting while data arrives: on a cold mount capped at RATE (so the link,
# not the CPU, sets the pace), in one run on one disk:
#   1. plain hydration: mount, wait until every chunk is cached
#   2. ferry-convert -O qcow2 from a cold mount (hydration on)
#   3. qemu-img convert -O qcow2 from a cold mount (hydration on)
#   4. resync after 1% of the chunks changed, then ferry-convert --update
# and prints each time and its ratio to plain hydration (goal for 2: at
# most 1.1). The disk: SIZE with 40% holes, in 8 MiB stripes of holes,
# random data, text and written zeros.
# Usage: bench/convert.sh [SIZE_MIB=1024] [RATE=100M]
# Env: OUT=DIR for the images (default /dev/shm); FERRY_BUILD=build dir;
#      FERRY_OPTS=more ferryfs options (e.g. compress=0: RATE is then the
#      data rate, not the wire rate).
SIZE_MIB=${1:-1024}
RATE=${2:-100M}
OUT=${OUT:-/dev/shm}
. "$(dirname "$0")/lib.sh" qemu-img jq python3 bc
CONVERT=$B/tools/convert/ferry-convert
O=$(mktemp -d "$OUT/ferry-bench-out.XXXXXX")
bench_cleanup() { rm -rf "$O"; }

stripe_disk "$W/disk.img" "$SIZE_MIB"
# --scan-zeros: every mount sees the same map (without it, zeros learnt
# while serving the first mount would shrink the later ones).
export_local --scan-zeros disk="$W/disk.img"
MOPTS=bwlimit=$RATE${FERRY_OPTS:+,$FERRY_OPTS}

now() { date +%s.%N; }
row() { printf '%-52s %8.1f s %6.2f x\n' "$1" "$2" "$(echo "$2 / $BASE" | bc -l)"; }

data=$(python3 -c "import os; print(os.stat('$W/disk.img').st_blocks * 512 >> 20)")
printf 'disk %d MiB, %d MiB allocated; ferryfs -o %s\n\n' "$SIZE_MIB" "$data" "$MOPTS"

mount_cold "$MOPTS"
t0=$(now); wait_complete; BASE=$(echo "$(now) - $t0" | bc -l)
unmount
row "plain hydration (mount until complete)" "$BASE"

mount_cold "$MOPTS"
t0=$(now)
"$CONVERT" -O qcow2 "$W/mnt/disk.raw" "$O/ferry.qcow2" 2>>"$W/convert.log"
T=$(echo "$(now) - $t0" | bc -l)
row "ferry-convert -O qcow2, cold mount" "$T"
qemu-img compare -q -F raw "$O/ferry.qcow2" "$W/disk.img" || echo "  (the image differs!)"

# The same with qemu-img reading the mount in offset order.
unmount
mount_cold "$MOPTS"
t0=$(now)
qemu-img convert -O qcow2 "$W/mnt/disk.raw" "$O/qemu.qcow2"
T=$(echo "$(now) - $t0" | bc -l)
row "qemu-img convert -O qcow2, cold mount" "$T"
rm -f "$O/qemu.qcow2"
wait_complete

# Cutover: 1% of the 1 MiB chunks change, resync, --update.
python3 - "$W/disk.img" <<'PY'
import os, random, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
size = os.fstat(fd).st_size
S = 8 << 20
chunks = [c for c in range(size >> 20) if (c * (1 << 20) // S) % 5 in (2, 3)]
for c in random.Random(7).sample(chunks, max(1, (size >> 20) // 100)):
    os.pwrite(fd, os.urandom(4096), c * (1 << 20) + 8192)
os.close(fd)
PY
wire0=$(jq '.disks[0].wire_bytes' "$W/mnt/.ferry/status.json")
t0=$(now)
echo resync >"$W/mnt/.ferry/control"
wait_json "$W/mnt/.ferry/status.json" 'j["resync"]["state"] != "running"'
"$CONVERT" --update -O qcow2 "$W/mnt/disk.raw" "$O/ferry.qcow2" 2>"$W/update.log"
T=$(echo "$(now) - $t0" | bc -l)
wire=$(( $(jq '.disks[0].wire_bytes' "$W/mnt/.ferry/status.json") - wire0 ))
row "resync + ferry-convert --update (1% of chunks changed)" "$T"
printf '  %s; %d KiB received\n' "$(sed -n 's/.*updated: //p' "$W/update.log")" $((wire / 1024))
qemu-img compare -q -F raw "$O/ferry.qcow2" "$W/disk.img" || echo "  (the updated image differs!)"
unmount
