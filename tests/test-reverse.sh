#!/usr/bin/env bash
# Reverse connections end to end: ferryfs --listen, and a ferry-export
# --connect that opens no listening socket and dials in. The raw view
# reads equal to the source, the qcow2 view compares equal, a resync
# follows a change, ferry-convert works from the source's directory; the
# exporter killed with -9 mid-read and restarted, the reader goes on with
# no error; ferryfs restarted on the same cache, the exporter reconnects
# by itself and the cache is used again.
. "$(dirname "$0")/functions.sh"
requires qemu-img jq cmp ss

M=1048576
make_disk "$T/disk.img"
# A cap, so that a read is still under way when the exporter is killed:
# the disk has 43 MiB that does not compress, 5 s at 8 MiB/s.
start_listen "$T/mnt" "cache=$T/cache,bwlimit=8M"
start_source web01 disk="$T/disk.img"
for _ in $(seq 100); do
	[ -f "$T/mnt/web01/disk.raw" ] && break
	sleep 0.1
done
[ -f "$T/mnt/web01/disk.raw" ] || fail "no web01/disk.raw: $(ls -R "$T/mnt")"
[ "$(stat -c %s "$T/mnt/web01/disk.raw")" = "$(stat -c %s "$T/disk.img")" ] || fail "web01/disk.raw has the wrong size"

# No listening socket on the exporter: only connections it dialled.
[ -z "$(tcp_listening "$SRC_PID")" ] || fail "ferry-export --connect listens: $(tcp_listening "$SRC_PID")"
est=$(ss -Htnp state established "( dport = :$LISTEN_PORT )" | grep -c "pid=$SRC_PID,")
[ "$est" -ge 1 ] || fail "ferry-export has no connection to the transit's port $LISTEN_PORT"
ok "ferry-export --connect listens on no TCP port; $est connections dialled to :$LISTEN_PORT"

# kill -9 mid-read, then restart: the reader goes on.
timeout 300 cmp "$T/mnt/web01/disk.raw" "$T/disk.img" 2>"$T/cmp.err" &
cmp_pid=$!
for _ in $(seq 200); do
	[ "$(source_field "$T/mnt" web01 cached)" -ge $((12 * M)) ] && break
	sleep 0.1
done
kill -0 "$cmp_pid" 2>/dev/null || fail "the read ended before the kill; the cap did not hold"
{ kill -9 "$SRC_PID"; wait "$SRC_PID"; } 2>/dev/null
wait_source "$T/mnt" web01 disconnected 30
cached=$(source_field "$T/mnt" web01 cached)
kill -0 "$cmp_pid" 2>/dev/null || fail "the reader stopped while the source was away: $(cat "$T/cmp.err")"
sleep 1
start_source web01 disk="$T/disk.img"
wait "$cmp_pid" || fail "cmp after kill -9 and restart: $(cat "$T/cmp.err")"
grep -q "source web01: back" "$T/ferryfs.log" ||
	fail "ferryfs logged no return of web01"
! grep -q "does not match the pin" "$T/ferryfs.log" ||
	fail "the restarted exporter's new key was taken for an impostor's"
ok "exporter killed with -9 at $((cached / M)) MiB read and restarted: the reader went on, cmp equal"

echo bwlimit=0 >"$T/mnt/web01/.ferry/control" || fail "bwlimit=0 refused"
timeout 300 qemu-img compare -q -f qcow2 -F raw "$T/mnt/web01/disk.qcow2" "$T/disk.img" ||
	fail "qemu-img compare of web01/disk.qcow2 with the source"
ok "web01/disk.qcow2 compares equal to the source (qemu-img compare)"

# A change on the source, followed by a resync in the source's directory.
for c in 5 60 77; do
	head -c 700 /dev/urandom | dd of="$T/disk.img" bs=1 seek=$((c * M + 999)) conv=notrunc status=none
done
resync_mount "$T/mnt/web01" disk
[ "$(status "$T/mnt/web01" disk resync.changed)" = 3 ] ||
	fail "resync saw $(status "$T/mnt/web01" disk resync.changed) changed chunks, not 3"
cmp "$T/mnt/web01/disk.raw" "$T/disk.img" || fail "after the resync web01/disk.raw differs"
ok "resync over reverse connections: 3 changed chunks fetched again, cmp equal"

timeout 300 "$FERRY_CONVERT" -O vhd "$T/mnt/web01/disk.raw" "$T/out.vhd" 2>"$T/convert.log" ||
	fail "ferry-convert from web01: $(cat "$T/convert.log")"
qemu-img compare -q -f vpc -F raw "$T/out.vhd" "$T/disk.img" || fail "ferry-convert's VHD differs from the source"
ok "ferry-convert from web01/disk.raw to VHD: equal to the source"

# ferryfs restarted on the same cache, on the same port: the exporter
# dials again by itself, and the source's directory comes back from the
# cache, nothing fetched again.
wait_source "$T/mnt" web01 complete 120
unmount_ferry "$T/mnt"
start_listen "$T/mnt" "cache=$T/cache"
wait_source "$T/mnt" web01 complete 60
cmp "$T/mnt/web01/disk.raw" "$T/disk.img" || fail "after the ferryfs restart web01/disk.raw differs"
data=$(status "$T/mnt/web01" disk data_bytes)
[ "$data" -le $((2 * M)) ] || fail "after the restart $data bytes were fetched again; the cache was not used"
kill -0 "$SRC_PID" || fail "the exporter exited when the transit went away"
ups=$(grep -c "connected to the transit" "$T/export-web01.log")
[ "$ups" -ge 3 ] && grep -q "; retrying" "$T/export-web01.log" ||
	fail "the exporter logged no state change: $(tail -5 "$T/export-web01.log")"
ok "ferryfs restarted on its cache: the exporter reconnected by itself; $data bytes fetched again"
