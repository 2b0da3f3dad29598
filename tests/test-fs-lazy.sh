#!/usr/bin/env bash
# Without hydration, reads fetch only what they need: a read in a hole
# fetches nothing, a 4 KiB read in data its own block and then its chunk.
. "$(dirname "$0")/functions.sh"
requires curl jq dd

M=1048576
make_disk "$T/disk.img"
start_export disk="$T/disk.img"
# views=raw: partition views read each disk's first chunk at mount
# (test-fs-views checks that this is all they read).
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,prefetch=0,readahead=0,chunk=1M,views=raw,timeout=2"

sleep 1
[ "$(status "$T/mnt" disk data_bytes)" = 0 ] || fail "fetched without a reader"
ok "nothing fetched at mount"

# 4 KiB in the hole at 20 MiB.
dd if="$T/mnt/disk.raw" of="$T/hole" bs=4096 skip=$((20 * M / 4096)) count=1 status=none ||
	fail "read in hole"
cmp -s "$T/hole" <(head -c 4096 /dev/zero) || fail "hole is not zeros"
[ "$(status "$T/mnt" disk data_bytes)" = 0 ] || fail "a hole read fetched $(status "$T/mnt" disk data_bytes) bytes"
ok "4 KiB read in a hole fetched nothing"

# 4 KiB in data at 44 MiB: answered from its own block (-o smallread=),
# then its chunk follows in the background, prefetch=0 or not.
dd if="$T/mnt/disk.raw" of="$T/data" bs=4096 skip=$((44 * M / 4096)) count=1 status=none ||
	fail "read in data"
cmp "$T/data" <(tail -c +$((44 * M + 1)) "$T/disk.img" | head -c 4096) || fail "data differs"
[ "$(status "$T/mnt" disk small_reads)" = 1 ] && [ "$(status "$T/mnt" disk small_read_bytes)" = 4096 ] ||
	fail "not one small read of 4096 bytes: $(status "$T/mnt" disk small_reads) reads, $(status "$T/mnt" disk small_read_bytes) bytes"
for _ in $(seq 100); do
	[ "$(status "$T/mnt" disk cached)" = "$M" ] && break
	sleep 0.1
done
[ "$(status "$T/mnt" disk cached)" = "$M" ] || fail "its chunk did not follow: cached $(status "$T/mnt" disk cached)"
got=$(status "$T/mnt" disk data_bytes)
[ "$got" -le $((M + 4096)) ] || fail "a 4 KiB data read fetched $got bytes"
[ "$(status "$T/mnt" disk chunks_cached)" = 1 ] || fail "chunks cached: $(status "$T/mnt" disk chunks_cached)"
ok "4 KiB read in data: its block, then its chunk, $got bytes in all"

# ... and then the mount is idle: no thread is left spinning (a worker once
# was, waiting for readers to be quiet).
cpu() { awk '{print $14 + $15}' "/proc/$FS_PID/stat"; }
c0=$(cpu)
sleep 2
c1=$(cpu)
[ $((c1 - c0)) -le 20 ] || fail "ferryfs used $((c1 - c0)) CPU ticks in 2 idle seconds"
ok "idle after the small read: $((c1 - c0)) CPU ticks in 2 s"

# Reading it again fetches nothing more.
dd if="$T/mnt/disk.raw" of=/dev/null bs=4096 skip=$((44 * M / 4096 + 1)) count=1 status=none
[ "$(status "$T/mnt" disk data_bytes)" = "$got" ] || fail "cached chunk fetched again"
ok "cached chunk not fetched again"

# The written-zeros region is data by the source's map, but the short tail
# chunk holds 4000 bytes: a read there fetches only the data in it.
SIZE=$(stat -c %s "$T/disk.img")
before=$(status "$T/mnt" disk data_bytes)
tail -c 4000 "$T/mnt/disk.raw" | cmp - <(tail -c 4000 "$T/disk.img") || fail "tail differs"
after=$(status "$T/mnt" disk data_bytes)
[ $((after - before)) -le "$M" ] || fail "tail read fetched $((after - before))"
ok "short last chunk ($SIZE bytes disk)"

[ "$(status "$T/mnt" disk state)" = syncing ] || fail "state $(status "$T/mnt" disk state)"
[ "$(status "$T/mnt" disk error)" = null ] || fail "error set"
# A small read's chunk follows it in the background: let the tail's land
# (two chunks cached, 44 MiB's and the tail's) before the exporter goes, or
# it may land after 'cached' is taken below.
for _ in $(seq 100); do
	[ "$(status "$T/mnt" disk chunks_cached)" = 2 ] && break
	sleep 0.1
done
[ "$(status "$T/mnt" disk chunks_cached)" = 2 ] ||
	fail "chunks cached before the exporter goes: $(status "$T/mnt" disk chunks_cached), not 2"

# The exporter goes away: a read of an uncached chunk fails with EIO (after
# -o timeout=2 of retries), status says error and why, nothing new is claimed cached,
# and cached data still reads.
cached=$(status "$T/mnt" disk cached)
kill "$EXPORT_PID"; wait "$EXPORT_PID" 2>/dev/null
if timeout 60 dd if="$T/mnt/disk.raw" of=/dev/null bs=4096 skip=$((60 * M / 4096)) count=1 \
	status=none 2>"$T/dd.err"; then
	fail "read of an uncached chunk succeeded with the exporter gone"
fi
grep -q "Input/output error" "$T/dd.err" || fail "not EIO: $(cat "$T/dd.err")"
[ "$(status "$T/mnt" disk state)" = error ] || fail "state $(status "$T/mnt" disk state)"
status "$T/mnt" disk error | grep -qi "connect" || fail "error: $(status "$T/mnt" disk error)"
[ "$(status "$T/mnt" disk cached)" = "$cached" ] || fail "cached changed after a failed fetch"
dd if="$T/mnt/disk.raw" of="$T/data2" bs=4096 skip=$((44 * M / 4096)) count=1 status=none ||
	fail "cached data unreadable with the exporter gone"
cmp "$T/data2" "$T/data" || fail "cached data changed"
ok "exporter gone: EIO, state error ($(status "$T/mnt" disk error)), cache intact"
unmount_ferry "$T/mnt"
