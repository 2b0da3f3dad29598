#!/usr/bin/env bash
# A running server to cutover, in one run (root: loop devices). The source
# is a GPT disk whose ext4 and XFS are mounted read-write (loop devices at
# their offsets) while the whole-disk loop device is exported; each holds
# files of random data.
# 1. The transfer with a writer running: a cold mount capped at 100 MB/s
#    to complete, while a writer appends and overwrites; then a live
#    resync: its wire bytes against what the writer wrote meanwhile.
# 2. The final sync's downtime for 1%, 5% and 20% of the used data changed
#    (64 KiB overwrites spread over the files): from the services stopping
#    (sync) to the final resync and `ferry-convert --update -O qcow2` done,
#    and what `--verify` adds; with the resync's bytes against the bytes
#    written.
# Usage: bench/livesync.sh [DATA_MIB per filesystem, default 400]
. "$(dirname "$0")/lib.sh" losetup sgdisk mkfs.ext4 mkfs.xfs jq python3
. tests/serverdisk.sh
[ "$(id -u)" = 0 ] || { echo "needs root (loop devices)" >&2; exit 1; }
CONVERT=$B/tools/convert/ferry-convert
DATA=${1:-400}
WPID=
bench_cleanup() {
	[ -n "$WPID" ] && kill "$WPID" 2>/dev/null
	for m in "$W"/src/p*; do
		mountpoint -q "$m" 2>/dev/null && umount "$m"
	done
	detach_loops
}
now() { date +%s.%N; }
mib() { echo "scale=1; $1 / 1048576" | bc; }

size=$((2 * DATA + 300))
p1=$((DATA + 120)) p2=$((DATA + 150))
truncate -s $((size * M)) "$W/disk.img"
sgdisk -n 1:2048:+${p1}M -n 2:0:+${p2}M "$W/disk.img" >/dev/null
p1off=$((2048 * 512)) p2off=$(((2048 + p1 * 2048) * 512))
loop_at "$W/disk.img" 0 $((size * M)); dev=$LOOP
mkdir -p "$W/src/p1" "$W/src/p2"
loop_at "$W/disk.img" $p1off $((p1 * M)); mkfs.ext4 -q -F "$LOOP"; mount "$LOOP" "$W/src/p1"
loop_at "$W/disk.img" $p2off $((p2 * M)); mkfs.xfs -q -f "$LOOP"; mount "$LOOP" "$W/src/p2"
for p in p1 p2; do
	for i in $(seq $((DATA / 16))); do
		head -c $((16 * M)) /dev/urandom > "$W/src/$p/f$i"
	done
done
sync

# overwrite PERCENT: 64 KiB random overwrites, PERCENT of the files' bytes,
# spread over all files; prints the bytes written.
overwrite() {
	python3 - "$1" "$W/src/p1" "$W/src/p2" <<'PY'
import os, random, sys
pct, dirs = float(sys.argv[1]), sys.argv[2:]
files = [os.path.join(d, f) for d in dirs for f in os.listdir(d) if f.startswith("f")]
total = sum(os.path.getsize(f) for f in files)
n = int(total * pct / 100) // 65536
for _ in range(n):
    f = random.choice(files)
    with open(f, "r+b") as h:
        h.seek(random.randrange(os.path.getsize(f) // 65536) * 65536)
        h.write(os.urandom(65536))
print(n * 65536)
PY
}
# A writer: appends 256 KiB and overwrites 64 KiB ten times a second.
writer() {
	local bytes=0
	while :; do
		head -c 262144 /dev/urandom >> "$W/src/p1/log"
		head -c 262144 /dev/urandom >> "$W/src/p2/log"
		dd if=/dev/urandom of="$W/src/p1/f1" bs=64k seek=$((RANDOM % 256)) count=1 conv=notrunc status=none
		bytes=$((bytes + 3 * 262144))
		echo $bytes > "$W/writer.bytes"
		sleep 0.1
	done
}
resync() {
	echo resync > "$W/mnt/.ferry/control"
	wait_json "$W/mnt/.ferry/status.json" 'j["resync"]["state"] != "running"'
	[ "$(jq -r .resync.state "$W/mnt/.ferry/status.json")" = done ] || { jq .resync "$W/mnt/.ferry/status.json"; exit 1; }
	wait_complete
}
st() { jq -r ".disks[0].$1" "$W/mnt/.ferry/status.json"; }

"$EXPORT" --listen 127.0.0.1:0 --url-file "$W/url" srv="$dev" >/dev/null 2>"$W/export.log" & EPID=$!
for _ in $(seq 100); do [ -s "$W/url" ] && break; sleep 0.1; done
mkdir -p "$W/mnt"

echo "== 1. transfer with a writer running ($((2 * DATA)) MiB of files, ${size} MiB disk, cap 100 MB/s)"
writer & WPID=$!
t0=$(now)
"$FERRYFS" -f -o "cache=$W/cache,bwlimit=100M" "$(cat "$W/url")" "$W/mnt" 2>"$W/fs.log" & FPID=$!
for _ in $(seq 100); do [ -f "$W/mnt/.ferry/status.json" ] && break; sleep 0.1; done
"$CONVERT" -O qcow2 "$W/mnt/srv.raw" "$W/out.qcow2" 2>"$W/convert.log"
while [ "$(st state)" != complete ]; do sleep 0.05; done
t1=$(now)
printf '%-44s %8s s  data %7s MiB  wire %7s MiB  used %7s MiB\n' "cold mount + convert, writer running" \
	"$(echo "$t1 - $t0" | bc)" "$(mib "$(st data_bytes)")" "$(mib "$(st wire_bytes)")" "$(mib "$(st used)")"
w0=$(cat "$W/writer.bytes"); d0=$(st data_bytes); x0=$(st wire_bytes)
sleep 5
sync
w1=$(cat "$W/writer.bytes")
t0=$(now); resync; t1=$(now)
printf '%-44s %8s s  data %7s MiB  wire %7s MiB  written %5s MiB  changed %s chunks, map +%s MiB since the mount\n' \
	"live resync after 5 s of writing" \
	"$(echo "$t1 - $t0" | bc)" "$(mib $(( $(st data_bytes) - d0 )))" "$(mib $(( $(st wire_bytes) - x0 )))" \
	"$(mib $((w1 - w0)))" "$(st resync.changed)" "$(mib "$(st resync.grew)")"
kill "$WPID"; wait "$WPID" 2>/dev/null || true; WPID=
# What the writer left after that resync, so that each row below measures
# its own changes alone.
sync; resync
"$CONVERT" --update -O qcow2 "$W/mnt/srv.raw" "$W/out.qcow2" 2>"$W/convert.log"

echo "== 2. final sync downtime: services stop (sync) -> final resync -> --update (-> --verify)"
printf '%-8s %8s %8s %8s %9s %9s %9s %10s %10s  %s\n' changed written data wire resync_s update_s verify_s downtime_s +verify_s qcow2
for pct in 1 5 20; do
	wrote=$(overwrite "$pct")
	d0=$(st data_bytes); x0=$(st wire_bytes)
	t0=$(now)
	sync
	resync
	t1=$(now)
	"$CONVERT" --update -O qcow2 "$W/mnt/srv.raw" "$W/out.qcow2" 2>"$W/convert.log" ||
		{ cat "$W/convert.log"; exit 1; }
	t2=$(now)
	layout="updated in place"
	grep -q "writing it whole" "$W/convert.log" && layout="rewritten (new layout)"
	# The same again with --verify: nothing left to write, so this is
	# what --verify adds (the disk hashed, the image read back past the
	# page cache).
	"$CONVERT" --update --verify -O qcow2 "$W/mnt/srv.raw" "$W/out.qcow2" >/dev/null 2>"$W/convert.log" ||
		{ cat "$W/convert.log"; exit 1; }
	t3=$(now)
	printf '%-8s %8s %8s %8s %9.2f %9.2f %9.2f %10.2f %10.2f  %s\n' "$pct%" "$(mib "$wrote")" \
		"$(mib $(( $(st data_bytes) - d0 )))" "$(mib $(( $(st wire_bytes) - x0 )))" \
		"$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)" \
		"$(echo "$t2 - $t0" | bc)" "$(echo "$t3 - $t0" | bc)" "$layout"
done
echo "(MiB; data: disk bytes the resync fetched, wire: as they travelled)"
fusermount3 -u "$W/mnt"; wait "$FPID" 2>/dev/null || true; FPID=
