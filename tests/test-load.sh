#!/usr/bin/env bash
# Load, bounded in time: 64 concurrent readers of random ranges through a
# mount while hydration runs, and 200 concurrent clients straight at
# ferry-export. Every byte read is compared with the source.
. "$(dirname "$0")/functions.sh"
requires jq cmp python3

LOADGEN="$(dirname "$0")/tools/loadgen.py"
make_disk "$T/disk.img"
start_export disk="$T/disk.img"

# 64 readers, 30 random ranges of up to 1 MiB each, during hydration
# (capped so that it is still running when they are done).
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,prefetch=1,bwlimit=12M,compress=0,chunk=256K,views=raw"
[ "$(status "$T/mnt" disk state)" = syncing ] || fail "hydration is not running: $(cat "$T/mnt/.ferry/status.json")"
timeout 300 python3 "$LOADGEN" files --file "$T/mnt/disk.raw" --ref "$T/disk.img" \
	--threads 64 --reads 30 --max-len $((1024 * 1024)) --seed "$RANDOM" >"$T/files.out" 2>&1 ||
	fail "readers through the mount: $(cat "$T/files.out")"
state=$(status "$T/mnt" disk state)
ok "$(cat "$T/files.out") (hydration running at the start, $state at the end)"
# The rest of the disk hydrates and reads right.
echo bwlimit=0 >"$T/mnt/.ferry/control"
wait_state "$T/mnt" disk complete 240
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "the hydrated disk differs from the source"
unmount_ferry "$T/mnt"
ok "hydrated after the load: equal to the source"

# 200 clients at once, each on its own connection, 5 random ranges of up to
# 256 KiB each.
timeout 300 python3 "$LOADGEN" http --port "${HOSTPORT##*:}" --token "$TOKEN" \
	--disk disk --ref "$T/disk.img" --clients 200 --requests 5 \
	--max-len $((256 * 1024)) --seed "$RANDOM" >"$T/http.out" 2>&1 ||
	fail "200 clients: $(cat "$T/http.out")"
kill -0 "$EXPORT_PID" || fail "ferry-export died under load"
rss=$(awk '/VmRSS/ {print $2}' "/proc/$EXPORT_PID/status")
limit=100000
sanitized "$FERRY_EXPORT" && limit=600000
[ "$rss" -lt "$limit" ] || fail "ferry-export RSS $rss kB after the load (limit $limit)"
ok "$(cat "$T/http.out"); exporter RSS $rss kB"
