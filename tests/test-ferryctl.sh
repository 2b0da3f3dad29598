#!/usr/bin/env bash
# ferryctl on live mounts: status (plain, on a terminal, --json, --watch,
# every mount when none is named) checked against status.json; bwlimit,
# resync and verify followed to their outcome; a fleet; bad input refused
# with exit 1 or 2 and the reason.
. "$(dirname "$0")/functions.sh"
requires jq cmp script
CTL=${FERRYCTL:?}

M=1048576
make_disk "$T/disk.img"
start_export disk="$T/disk.img"

# No hydration: the cache holds what was read, so the figures hold still
# between ferryctl and status.json.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,prefetch=0"
dd if="$T/mnt/disk.raw" of=/dev/null bs=1M count=6 status=none
sleep 1.2
"$CTL" status "$T/mnt" >"$T/st.txt" 2>"$T/st.err" || fail "ferryctl status: $(cat "$T/st.err")"
cp "$T/mnt/.ferry/status.json" "$T/st.json"
row=$(awk '$1 == "disk"' "$T/st.txt")
[ -n "$row" ] || fail "no row for disk: $(cat "$T/st.txt")"
read -r _ state pct cu recv _ _ eta link <<<"$row"
used=$(jq .disks[0].used "$T/st.json")
cached=$(jq .disks[0].cached "$T/st.json")
[ "$state" = "$(jq -r .disks[0].state "$T/st.json")" ] || fail "state $state, status.json $(jq -r .disks[0].state "$T/st.json")"
[ "$state" = syncing ] || fail "a mount with 6 MiB read is $state"
[ "$pct" = "$((cached * 100 / used))%" ] || fail "percent $pct, status.json $cached of $used"
[ "$cached" -lt "$used" ] && [ "$pct" != 100% ] || fail "100% while $cached of $used are cached"
exp_cu=$(awk -v c="$cached" -v u="$used" 'function h(n) { split("B KiB MiB GiB", U); i = 1; while (n >= 1024 && i < 4) { n /= 1024; i++ } return i == 1 ? n "B" : sprintf("%.1f%s", n, U[i]) } BEGIN { print h(c) "/" h(u) }')
[ "$cu" = "$exp_cu" ] || fail "cached/used $cu, status.json says $exp_cu"
[ "$link" = "$(jq -r .link.state "$T/st.json")" ] || fail "link $link"
[ "$eta" = - ] || [ "$(jq .disks[0].rate "$T/st.json")" != 0 ] || fail "ETA $eta with no rate"
ok "status: $state $pct $cu, link $link, ETA $eta (as status.json says)"

"$CTL" status --json "$T/mnt" >"$T/st2.json" || fail "status --json"
jq -e '.version == 1 and (.mounts | length) == 1' "$T/st2.json" >/dev/null || fail "--json: $(head -c 300 "$T/st2.json")"
[ "$(jq -r '.mounts[0].mount' "$T/st2.json")" = "$T/mnt" ] || fail "--json names another mount"
[ "$(jq '.mounts[0].status.disks[0].cached' "$T/st2.json")" = "$cached" ] || fail "--json cached differs from status.json"
ok "status --json: valid, the mount's status.json inside"

# No MOUNT: every ferry mount, ours among them (others may be from tests
# running alongside).
"$CTL" status >"$T/all.txt" || fail "ferryctl status with no mount"
grep -q "^$T/mnt  link " "$T/all.txt" || fail "status with no MOUNT does not list $T/mnt: $(cat "$T/all.txt")"
"$CTL" status --json | jq -e --arg m "$T/mnt" '[.mounts[].mount] | index($m) != null' >/dev/null ||
	fail "status --json with no MOUNT lacks $T/mnt"
ok "status with no MOUNT finds the mount in /proc/self/mountinfo"

# On a terminal: bars. --watch, piped: a table again and again.
script -qec "$CTL status $T/mnt" /dev/null >"$T/tty.txt" || fail "status on a terminal"
grep -q "disk .*\[#*\.*\] *$((cached * 100 / used))%" "$T/tty.txt" || fail "no bar on a terminal: $(cat "$T/tty.txt")"
timeout 2.5 "$CTL" status --watch=0.5 "$T/mnt" >"$T/watch.txt"
n=$(grep -c "^$T/mnt  link" "$T/watch.txt")
[ "$n" -ge 3 ] || fail "--watch=0.5 printed $n tables in 2.5 s"
ok "a bar on a terminal; --watch=0.5 printed $n tables in 2.5 s"

# bwlimit: set, read back; bad rates and non-mounts refused.
out=$("$CTL" bwlimit 3M "$T/mnt") || fail "bwlimit 3M"
[ "$(cat "$T/mnt/.ferry/control")" = bwlimit=3145728 ] || fail "control after bwlimit 3M: $(cat "$T/mnt/.ferry/control")"
[ "$(jq .bwlimit "$T/mnt/.ferry/status.json")" = 3145728 ] || fail "status.json bwlimit"
rc=0; "$CTL" bwlimit 3Q "$T/mnt" 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q "not a rate" "$T/err" || fail "bwlimit 3Q: exit $rc: $(cat "$T/err")"
rc=0; "$CTL" status "$T" 2>"$T/err" >/dev/null || rc=$?
[ "$rc" = 1 ] && grep -q "not a ferry mount" "$T/err" || fail "status of a plain directory: exit $rc: $(cat "$T/err")"
rc=0; "$CTL" frobnicate "$T/mnt" 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q 'no command "frobnicate"' "$T/err" || fail "an unknown command: exit $rc"
"$CTL" bwlimit 0 "$T/mnt" >/dev/null || fail "bwlimit 0"
ok "bwlimit: '$out'; 3Q refused (exit 2), a plain directory refused (exit 1)"
unmount_ferry "$T/mnt"

# With hydration: complete, then a change at the source followed by
# ferryctl resync, then ferryctl verify.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache"
wait_state "$T/mnt" disk complete 120
"$CTL" status "$T/mnt" | awk '$1 == "disk"' | grep -q " complete  *100% " || fail "complete disk: $("$CTL" status "$T/mnt")"
for c in 3 50 75; do
	head -c 900 /dev/urandom | dd of="$T/disk.img" bs=1 seek=$((c * M + 77)) conv=notrunc status=none
done
timeout 120 "$CTL" resync "$T/mnt" >"$T/resync.out" 2>"$T/resync.err" || fail "ferryctl resync: $(cat "$T/resync.err")"
grep -q "^resync done: 3 chunks changed" "$T/resync.out" || fail "resync said: $(cat "$T/resync.out")"
[ "$(status "$T/mnt" disk state)" = complete ] || fail "ferryctl resync returned before the disk was complete"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "after ferryctl resync disk.raw differs"
ok "ferryctl resync: $(tail -1 "$T/resync.out"); cmp equal"

timeout 120 "$CTL" verify "$T/mnt" >"$T/verify.out" 2>"$T/verify.err" || fail "ferryctl verify: $(cat "$T/verify.err")"
n=$(status "$T/mnt" disk chunks_cached)
grep -q "^verify done: $n chunks checked, 0 differed" "$T/verify.out" || fail "verify said: $(cat "$T/verify.out") ($n cached)"
ok "ferryctl verify: $(tail -1 "$T/verify.out")"
unmount_ferry "$T/mnt"

# A fleet: a line per source and its disks; commands act on one source.
start_listen "$T/fleet" "cache=$T/fcache"
start_source web01 disk="$T/disk.img"
wait_source "$T/fleet" web01 complete 120
"$CTL" status "$T/fleet" >"$T/fleet.txt" || fail "status of a fleet"
grep -q "^  source web01 (.*) complete from 127.0.0.1" "$T/fleet.txt" || fail "fleet status: $(cat "$T/fleet.txt")"
grep -q "^    web01  link ok" "$T/fleet.txt" && awk '$1 == "disk" && $2 == "complete"' "$T/fleet.txt" | grep -q . ||
	fail "fleet status lacks web01's disk: $(cat "$T/fleet.txt")"
"$CTL" status --json "$T/fleet" | jq -e '.mounts[0].sources.web01.disks[0].state == "complete"' >/dev/null ||
	fail "fleet --json lacks web01's status"
rc=0; "$CTL" resync "$T/fleet" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "is a fleet.*sources: web01" "$T/err" || fail "resync of a fleet's top: exit $rc: $(cat "$T/err")"
timeout 120 "$CTL" resync "$T/fleet/web01" >"$T/resync2.out" || fail "resync of web01"
grep -q "^resync done: 0 chunks changed" "$T/resync2.out" || fail "fleet resync said: $(cat "$T/resync2.out")"
ok "fleet: web01 listed with its disk; resync of the top refused, of web01 done"
