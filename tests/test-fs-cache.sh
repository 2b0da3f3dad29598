#!/usr/bin/env bash
# Background hydration completes alone; a remount resumes from the cache
# without fetching again; a cache of another disk is reset, never mixed.
. "$(dirname "$0")/functions.sh"
requires curl jq cmp

make_disk "$T/disk.img"
start_export disk="$T/disk.img"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,chunk=256K"

wait_state "$T/mnt" disk complete 240
alloc=$(status "$T/mnt" disk allocated)
[ "$(status "$T/mnt" disk cached)" = "$alloc" ] || fail "complete but cached != allocated"
unmount_ferry "$T/mnt"
# The cache file itself equals the source (holes read as zeros).
cmp "$T/cache/disk.data" "$T/disk.img" || fail "hydrated cache differs from the source"
ok "hydration alone reached complete; cache == source"

# Remount on the same cache: nothing is fetched to read it all.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,chunk=256K,prefetch=0"
[ "$(status "$T/mnt" disk state)" = complete ] || fail "remount not complete"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "remounted view differs"
got=$(status "$T/mnt" disk data_bytes)
[ "$got" -lt 1048576 ] || fail "remount fetched $got bytes again"
unmount_ferry "$T/mnt"
ok "remount reused the cache (received $got bytes)"

# Another disk under the same name (the exporter restarted on another
# file): the cache is reset with a log line, and the view is right.
kill "$EXPORT_PID"; wait "$EXPORT_PID" 2>/dev/null
head -c $((5 * 1048576)) /dev/urandom > "$T/other.img"
start_export disk="$T/other.img"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,chunk=256K,prefetch=0"
cmp "$T/mnt/disk.raw" "$T/other.img" || fail "view of the new disk differs"
grep -q "does not match this disk" "$T/ferryfs.log" || fail "no log line about the reset"
unmount_ferry "$T/mnt"
ok "cache of another disk was reset"

# A changed chunk size is not mixed either.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,chunk=64K,prefetch=0"
cmp "$T/mnt/disk.raw" "$T/other.img" || fail "view after chunk change differs"
unmount_ferry "$T/mnt"
ok "chunk size change resets"

# Two mounts cannot share one cache.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,prefetch=0"
mkdir -p "$T/mnt2"
if "$FERRYFS" -f -o "cache=$T/cache" "$URL" "$T/mnt2" 2>"$T/second.log"; then
	fail "a second ferryfs mounted the same cache"
fi
grep -q "in use" "$T/second.log" || fail "no clear message: $(cat "$T/second.log")"
unmount_ferry "$T/mnt"
ok "cache lock"
