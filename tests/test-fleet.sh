#!/usr/bin/env bash
# A fleet in one mount: three exporters on this machine (one with two
# disks) dial one ferryfs --listen. Each gets its own directory by its
# --name; the fleet status lists each with its state and bytes; all data
# reads equal. A source joining mid-read disturbs no other; a second
# exporter under a live source's name is refused ("busy") and the first
# goes on; a source with no --name is named by its hostname.
. "$(dirname "$0")/functions.sh"
requires jq cmp

M=1048576
make_disk "$T/a.img"
truncate -s 64M "$T/b.img"
head -c $((20 * M)) /dev/urandom | dd of="$T/b.img" bs=1M seek=10 conv=notrunc status=none
truncate -s 32M "$T/c0.img" "$T/c1.img"
head -c $((5 * M)) /dev/urandom | dd of="$T/c0.img" conv=notrunc status=none
yes "the second disk of db01" | head -c $((7 * M)) | dd of="$T/c1.img" bs=1M seek=3 conv=notrunc status=none

start_listen "$T/mnt" "cache=$T/cache,bwlimit=12M"
start_source web01 disk0="$T/a.img"
web01=$SRC_PID
start_source web02 disk0="$T/b.img"
for _ in $(seq 100); do
	[ -f "$T/mnt/web01/disk0.raw" ] && break
	sleep 0.1
done
# web01 (capped at 12 MB/s, 87 MB used) is still being read when db01 joins.
timeout 300 cmp "$T/mnt/web01/disk0.raw" "$T/a.img" 2>"$T/cmp.err" &
cmp_pid=$!
sleep 0.5
start_source db01 d0="$T/c0.img" d1="$T/c1.img"
wait_source "$T/mnt" db01 complete 60
wait_source "$T/mnt" web02 complete 60
[ "$(source_field "$T/mnt" web01 state)" != complete ] ||
	fail "web01 was complete before db01 joined; the join was not tested mid-read"
wait "$cmp_pid" || fail "web01 read while db01 joined: $(cat "$T/cmp.err")"
ok "db01 joined while web01 was read; web01's reader saw no error"

[ "$(ls "$T/mnt" | tr '\n' ' ')" = "db01 web01 web02 " ] || fail "directories: $(ls "$T/mnt")"
cmp "$T/mnt/web02/disk0.raw" "$T/b.img" || fail "web02/disk0.raw differs"
cmp "$T/mnt/db01/d0.raw" "$T/c0.img" || fail "db01/d0.raw differs"
cmp "$T/mnt/db01/d1.raw" "$T/c1.img" || fail "db01/d1.raw differs"
for d in web01 web02 db01; do
	[ -f "$T/mnt/$d/.ferry/status.json" ] && [ -e "$T/mnt/$d/.ferry/control" ] ||
		fail "$d has no .ferry/status.json and control of its own"
done
ok "three directories, db01 with two disks; every disk reads equal to its source"

wait_source "$T/mnt" web01 complete 120
S="$T/mnt/.ferry/status.json"
jq -e '.sources | length == 3' "$S" >/dev/null || fail "fleet status: $(cat "$S")"
jq -e '.states.complete == 3 and .states.disconnected == 0' "$S" >/dev/null || fail "fleet states: $(jq -c .states "$S")"
for d in web01 web02 db01; do
	host=$(jq -r .host.hostname "$T/mnt/$d/.ferry/source.json" 2>/dev/null)
	jq -e --arg n "$d" --arg h "$(hostname)" '.sources[] | select(.name == $n) |
		.state == "complete" and .hostname == $h and (.host_id | length) > 0 and
		.used > 0 and .cached == .used and .data_bytes >= .used and .wire_bytes > 0 and
		(.connections | type) == "number" and .address != null and .error == null' "$S" >/dev/null ||
		fail "fleet status of $d (its hostname ${host:-?}): $(jq -c --arg n "$d" '.sources[] | select(.name == $n)' "$S")"
done
jq -e '[.sources[] | select(.name == "db01") | .disks[].name] == ["d0", "d1"]' "$S" >/dev/null ||
	fail "db01's disks: $(jq -c '.sources[] | select(.name == "db01") | .disks' "$S")"
used=$(source_field "$T/mnt" db01 used)
[ "$used" = $((12 * M)) ] || fail "db01 used $used bytes, not the 12 MiB its disks hold"
ok "fleet status: $(jq -c '[.sources[] | {name, state, used, data_bytes}]' "$S")"

# Two exporters under one name: the second is refused while the first
# lives, and says why; the first is undisturbed.
start_source web02 disk0="$T/b.img"
dup=$SRC_PID
for _ in $(seq 100); do
	grep -q busy "$T/export-web02.log" && break
	sleep 0.1
done
grep -q "busy: a source named web02 of this host is connected" "$T/export-web02.log" ||
	fail "a second web02 was not refused as busy: $(tail -3 "$T/export-web02.log")"
kill -0 "$dup" || fail "the refused exporter gave up; busy is worth retrying"
kill "$dup"
jq -e '.sources | length == 3' "$S" >/dev/null || fail "a second web02 made a new source: $(cat "$S")"
[ "$(source_field "$T/mnt" web02 state)" = complete ] || fail "web02 disturbed: $(source_field "$T/mnt" web02 state)"
cmp "$T/mnt/web02/disk0.raw" "$T/b.img" || fail "web02 differs after the busy refusal"
ok "a second exporter named web02 is refused as busy; web02 goes on"

# No --name: the directory is the hostname.
"$FERRY_EXPORT" --connect "@$CONNECT_FILE" disk0="$T/c0.img" 2>"$T/export-noname.log" &
PIDS+=($!)
h=$(hostname)
for _ in $(seq 100); do
	[ -f "$T/mnt/$h/disk0.raw" ] && break
	sleep 0.1
done
cmp "$T/mnt/$h/disk0.raw" "$T/c0.img" || fail "the source without --name: $(ls "$T/mnt")"
ok "a source with no --name is named by its hostname: $h/"
kill "$web01"
wait_source "$T/mnt" web01 disconnected 30
cmp "$T/mnt/web01/disk0.raw" "$T/a.img" || fail "web01's cached data unreadable once it left"
[ "$(jq -r .states.disconnected "$S")" = 1 ] || fail "states after web01 left: $(jq -c .states "$S")"
ok "web01 disconnected: still listed, its cached data still reads equal"
