#!/usr/bin/env bash
# A cold mount reads back the exported disk byte for byte, and qemu-img
# converts from it to a qcow2 that qemu-img says equals the source.
. "$(dirname "$0")/functions.sh"
requires curl jq qemu-img cmp

make_disk "$T/disk.img"
start_export disk="$T/disk.img"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,prefetch=0"

ls "$T/mnt" | grep -qx disk.raw || fail "no disk.raw in $(ls -a "$T/mnt")"
[ "$(stat -c %s "$T/mnt/disk.raw")" = "$(stat -c %s "$T/disk.img")" ] || fail "size differs"
[ "$(stat -c %A "$T/mnt/disk.raw")" = "-r--r--r--" ] || fail "not read-only"
echo x 2>/dev/null > "$T/mnt/disk.raw" && fail "writing to disk.raw worked"
ok "disk.raw is read-only with the exact size"

timeout 300 cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "raw view differs from the source"
ok "cmp raw view == source"

# Holes never crossed the wire: what was received is the allocated data.
alloc=$(status "$T/mnt" disk allocated)
got=$(status "$T/mnt" disk data_bytes)
[ "$got" -le "$alloc" ] || fail "received $got > allocated $alloc"
[ "$(status "$T/mnt" disk state)" = complete ] || fail "not complete after a full read"
[ "$(status "$T/mnt" disk cached)" = "$alloc" ] || fail "cached != allocated"
ok "received $got bytes for $alloc allocated ($(stat -c %s "$T/disk.img") size)"

timeout 300 qemu-img convert -f raw -O qcow2 "$T/mnt/disk.raw" "$T/out.qcow2" || fail "qemu-img convert"
qemu-img compare -f raw -F qcow2 "$T/disk.img" "$T/out.qcow2" || fail "qemu-img compare"
qemu-img check -q "$T/out.qcow2" || fail "qemu-img check"
ok "qemu-img convert from the mount equals the source"

# Concurrent readers of different regions of a cold cache get the right
# bytes: remount on a fresh cache.
unmount_ferry "$T/mnt"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache2,prefetch=0"
readers=()
for off in 0 40 72 200; do
	cmp <(dd if="$T/mnt/disk.raw" bs=1M skip=$off count=8 status=none) \
		<(dd if="$T/disk.img" bs=1M skip=$off count=8 status=none) &
	readers+=($!)
done
for j in "${readers[@]}"; do wait "$j" || fail "concurrent reader"; done
ok "concurrent readers"

# status.json's format: versioned, and the first format's name of
# data_bytes kept beside it.
jq -e '.version == 1 and (.disks | length) > 0 and
	all(.disks[]; .bytes_received == .data_bytes and .data_bytes > 0)' "$T/mnt/.ferry/status.json" >/dev/null ||
	fail "status.json version/bytes_received: $(jq -c '{version, disks: [.disks[] | {data_bytes, bytes_received}]}' "$T/mnt/.ferry/status.json")"
ok "status.json: version 1, bytes_received = data_bytes"

unmount_ferry "$T/mnt"
ok "clean unmount"
