#!/usr/bin/env bash
# The transfer engine: zero blocks left out of the map, zstd on the wire
# (always with compress=1, off with compress=0, and where it pays with the
# default compress=auto), the bandwidth caps of both sides (one changed
# while mounted), demand reads ahead of hydration, readahead that follows
# sequential readers only. Every read is compared with the source.
. "$(dirname "$0")/functions.sh"
requires curl jq dd python3

M=1048576
make_disk "$T/disk.img"	# zeros at 168-176 MiB, text at 72-104 MiB
src_alloc=$(python3 - "$T/disk.img" <<'PY'
import os, sys
fd, pos, total = os.open(sys.argv[1], os.O_RDONLY), 0, 0
size = os.fstat(fd).st_size
while pos < size:
    try:
        d = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    total, pos = total + h - d, h
print(total)
PY
)
start_export --scan-zeros disk="$T/disk.img"

# --scan-zeros: the 8 MiB of written zeros leave the map and the listing.
grep -q "disk: scanned .*: 8.0 MiB were zeros" "$T/export.log" ||
	fail "no scan line: $(cat "$T/export.log")"
curl -sk -H "Authorization: Bearer $TOKEN" "https://$HOSTPORT/v1/disks/disk/extents" > "$T/map.json"
jq -e --argjson a $((168 * M)) --argjson b $((176 * M)) \
	'[.extents[] | select(.[2] == "data" and .[0] < $b and .[0] + .[1] > $a)] | length == 0' \
	"$T/map.json" >/dev/null || fail "zeros still data in the map: $(cat "$T/map.json")"
alloc=$(curl -sk -H "Authorization: Bearer $TOKEN" "https://$HOSTPORT/v1/disks" | jq '.disks[0].allocated')
[ "$alloc" = $((src_alloc - 8 * M)) ] || fail "allocated $alloc, source has $src_alloc"
ok "--scan-zeros: 8 MiB of zeros out of the map, $alloc bytes of data left"

# zstd (compress=1): 32 MiB of text cost far less on the wire; random
# data costs at most its size plus framing. No small reads (smallread=0):
# the chunks they leave are fetched in the background, and one that a
# reader then overtakes is given up part-way, its bytes on the wire but
# not in the data (a slow machine does that: the ThreadSanitizer build
# under load), which is not the framing measured here.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,prefetch=0,readahead=0,compress=1,views=raw,smallread=0"
[ "$(status "$T/mnt" disk allocated)" = "$alloc" ] || fail "mount's map differs from the exporter's"
cmp <(dd if="$T/mnt/disk.raw" bs=1M skip=72 count=32 status=none) \
	<(dd if="$T/disk.img" bs=1M skip=72 count=32 status=none) || fail "text region differs"
data=$(status "$T/mnt" disk data_bytes); wire=$(status "$T/mnt" disk wire_bytes)
[ "$data" = $((32 * M)) ] && [ "$wire" -lt $((data / 20)) ] ||
	fail "text: $data bytes of data took $wire on the wire"
ok "zstd: 32 MiB of text took $wire bytes on the wire"
cmp <(dd if="$T/mnt/disk.raw" bs=1M skip=40 count=8 status=none) \
	<(dd if="$T/disk.img" bs=1M skip=40 count=8 status=none) || fail "random region differs"
d2=$(( $(status "$T/mnt" disk data_bytes) - data )); w2=$(( $(status "$T/mnt" disk wire_bytes) - wire ))
# (The kernel's own readahead may bring the next chunk too.)
[ "$d2" -ge $((8 * M)) ] && [ "$d2" -le $((9 * M)) ] && [ "$w2" -le $((d2 + d2 / 1000)) ] ||
	fail "random: $d2 bytes of data took $w2"
ok "zstd: 8 MiB of random data took $w2 bytes (raw frames)"

# Reading all of it fetches exactly the map's data: the zeros never
# travel, and read back as zeros.
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "whole disk differs"
[ "$(status "$T/mnt" disk data_bytes)" = "$alloc" ] || fail "whole read fetched $(status "$T/mnt" disk data_bytes) of $alloc"
ok "whole disk equal; $alloc bytes fetched, none of the zeros"
unmount_ferry "$T/mnt"

# compress=0: the wire carries the data as it is.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache0,prefetch=0,readahead=0,compress=0,views=raw"
cmp <(dd if="$T/mnt/disk.raw" bs=1M skip=72 count=4 status=none) \
	<(dd if="$T/disk.img" bs=1M skip=72 count=4 status=none) || fail "compress=0 differs"
data=$(status "$T/mnt" disk data_bytes); wire=$(status "$T/mnt" disk wire_bytes)
[ "$wire" = "$data" ] && [ "$data" -ge $((4 * M)) ] && [ "$data" -le $((5 * M)) ] ||
	fail "compress=0: $data bytes of data took $wire on the wire"
ok "compress=0: text took as many bytes on the wire as it has ($wire)"

# Readahead: a sequential reader gets data ahead of it; a lone random
# read still fetches only its own chunk.
unmount_ferry "$T/mnt"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache-ra,prefetch=0,compress=0,views=raw"
dd if="$T/mnt/disk.raw" of=/dev/null bs=128K skip=$((90 * M / 131072)) count=1 status=none
sleep 0.5
[ "$(status "$T/mnt" disk data_bytes)" = "$M" ] || fail "a lone read fetched $(status "$T/mnt" disk data_bytes)"
cmp <(dd if="$T/mnt/disk.raw" bs=128K skip=$((40 * M / 131072)) count=24 status=none) \
	<(dd if="$T/disk.img" bs=128K skip=$((40 * M / 131072)) count=24 status=none) || fail "sequential read differs"
for _ in $(seq 50); do
	[ "$(status "$T/mnt" disk data_bytes)" -ge $((10 * M)) ] && break
	sleep 0.1
done
got=$(status "$T/mnt" disk data_bytes)
[ "$got" -ge $((10 * M)) ] && [ "$got" -le $(((1 + 3 + 2 * 64) * M)) ] || fail "readahead fetched $got"
ok "readahead: a 3 MiB sequential read brought $((got / M - 4)) MiB more; a lone read one chunk"
unmount_ferry "$T/mnt"

# -o bwlimit: 3 MiB at 1 MiB/s take about 3 s; lifted through
# .ferry/control, the next 8 MiB take a fraction of that.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache-bw,prefetch=0,readahead=0,compress=0,bwlimit=1M,views=raw"
[ "$(jq .bwlimit "$T/mnt/.ferry/status.json")" = "$M" ] || fail "bwlimit not in status.json"
t0=$(date +%s.%N)
dd if="$T/mnt/disk.raw" of=/dev/null bs=1M skip=40 count=3 status=none || fail "capped read"
t=$(echo "$(date +%s.%N) - $t0" | bc)
[ "$(echo "$t >= 2.5" | bc)" = 1 ] || fail "3 MiB at bwlimit=1M took $t s"
echo bwlimit=0 > "$T/mnt/.ferry/control" || fail "writing .ferry/control"
[ "$(cat "$T/mnt/.ferry/control")" = "bwlimit=0" ] || fail "control reads $(cat "$T/mnt/.ferry/control")"
t0=$(date +%s.%N)
dd if="$T/mnt/disk.raw" of=/dev/null bs=1M skip=48 count=8 status=none || fail "uncapped read"
t2=$(echo "$(date +%s.%N) - $t0" | bc)
[ "$(echo "$t2 < 2" | bc)" = 1 ] || fail "8 MiB with the cap lifted took $t2 s"
if echo "bwlimit=fast" > "$T/mnt/.ferry/control" 2>/dev/null; then
	fail "a bad control line was taken"
fi
grep -q 'cannot apply "bwlimit=fast"' "$T/ferryfs.log" || fail "no log line for a bad control line"
ok "bwlimit=1M: 3 MiB in $t s; lifted by .ferry/control: 8 MiB in $t2 s; bad lines refused"
unmount_ferry "$T/mnt"

# Demand first: with hydration running on a 1 MiB/s link, a read of a
# far chunk takes about one chunk's time (hydration pauses), not a share
# of the link behind 8 MiB hydration runs; then hydration goes on.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache-h,prefetch=1,compress=0,bwlimit=1M,views=raw"
for _ in $(seq 50); do
	[ "$(status "$T/mnt" disk data_bytes)" -gt 0 ] && break
	sleep 0.1
done
sleep 1
t0=$(date +%s.%N)
dd if="$T/mnt/disk.raw" of="$T/far" bs=4096 skip=$((100 * M / 4096)) count=1 status=none || fail "far read"
t=$(echo "$(date +%s.%N) - $t0" | bc)
cmp "$T/far" <(dd if="$T/disk.img" bs=4096 skip=$((100 * M / 4096)) count=1 status=none) || fail "far read differs"
[ "$(echo "$t < 2.2" | bc)" = 1 ] || fail "a demand read during hydration took $t s"
h1=$(status "$T/mnt" disk data_bytes)
sleep 1.5
h2=$(status "$T/mnt" disk data_bytes)
[ "$h2" -gt "$h1" ] || fail "hydration did not go on after the read"
ok "demand read during hydration at 1 MiB/s: $t s; hydration went on"
echo bwlimit=0 > "$T/mnt/.ferry/control"
wait_state "$T/mnt" disk complete 60
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "hydrated disk differs"
ok "hydrated to complete, equal to the source"
unmount_ferry "$T/mnt"

# ferry-export --bwlimit paces what it sends, compressed or not.
kill "$EXPORT_PID"; wait "$EXPORT_PID" 2>/dev/null
start_export --bwlimit 2M disk="$T/disk.img"
t0=$(date +%s.%N)
curl -sk -H "Authorization: Bearer $TOKEN" -r $((40 * M))-$((44 * M - 1)) -o "$T/part" \
	"https://$HOSTPORT/v1/disks/disk" || fail "capped download"
t=$(echo "$(date +%s.%N) - $t0" | bc)
cmp "$T/part" <(dd if="$T/disk.img" bs=1M skip=40 count=4 status=none) || fail "capped download differs"
[ "$(echo "$t >= 1.5" | bc)" = 1 ] || fail "4 MiB at --bwlimit 2M took $t s"
ok "ferry-export --bwlimit 2M: 4 MiB in $t s"

# compress=auto (the default) on that slow link: plain is measured (one
# chunk), zstd moves the text many times faster, so zstd it is, and the
# text costs a fraction of its size on the wire.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache-auto,prefetch=0,readahead=0,chunk=256K,views=raw"
timeout 60 cmp <(dd if="$T/mnt/disk.raw" bs=1M skip=72 count=8 status=none) \
	<(dd if="$T/disk.img" bs=1M skip=72 count=8 status=none) || fail "compress=auto: text differs"
data=$(status "$T/mnt" disk data_bytes); wire=$(status "$T/mnt" disk wire_bytes)
jq -e '.compress | .mode == "auto" and .zstd_now and .rate_plain > 0 and .rate_zstd > 4 * .rate_plain' \
	"$T/mnt/.ferry/status.json" >/dev/null || fail "compress=auto: $(jq -c .compress "$T/mnt/.ferry/status.json")"
[ "$data" -ge $((8 * M)) ] && [ "$wire" -lt $((data / 4)) ] ||
	fail "compress=auto: $data bytes of data took $wire on the wire"
ok "compress=auto on a 2 MB/s link: zstd chosen, $data bytes of text took $wire ($(jq -c .compress "$T/mnt/.ferry/status.json"))"
unmount_ferry "$T/mnt"
