#!/usr/bin/env bash
# A slow disk holds up only its own requests. One exporter with a single
# event loop (--threads 1) serves a fast disk (a file) and a slow one: a
# ferryfs mount's raw view of another exporter's disk, capped at 1 MB/s
# (-o bwlimit=1M), so that an 8 MiB range of it takes 8 s to read. While
# that read runs, requests for the fast disk and the disk list are
# answered at once; and the slow range arrives whole and right.
. "$(dirname "$0")/functions.sh"
requires curl jq cmp

M=1048576
make_disk "$T/slow.img"
head -c $((16 * M)) /dev/urandom > "$T/fast.img"

start_export slowsrc="$T/slow.img"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,prefetch=0,bwlimit=1M,views=raw"

start_export --threads 1 --all-blocks fast="$T/fast.img" slow="$T/mnt/slowsrc.raw"
get() {	# get PATH RANGE OUT: curl's total time
	curl -sk -o "$3" -w '%{time_total}' -H "Authorization: Bearer $TOKEN" \
		-r "$2" "https://$HOSTPORT$1"
}

# 8 MiB of the slow disk: within what the exporter reads whole.
t0=$(date +%s.%N)
get /v1/disks/slow $((40 * M))-$((48 * M - 1)) "$T/slow.part" >"$T/slow.time" &
SLOW=$!
PIDS+=("$SLOW")
sleep 1
running=$(kill -0 "$SLOW" 2>/dev/null && echo yes || echo no)
fast=$(get /v1/disks/fast 0-$((M - 1)) "$T/fast.part")
list=$(curl -sk -o "$T/list.json" -w '%{time_total}' -H "Authorization: Bearer $TOKEN" \
	"https://$HOSTPORT/v1/disks")
wait "$SLOW" || fail "the slow range failed"
slow=$(echo "$(date +%s.%N) - $t0" | bc)

[ "$running" = yes ] || fail "the slow range was over ($slow s) before the fast requests were made: nothing was tested"
cmp -n $M "$T/fast.part" "$T/fast.img" || fail "the fast range is wrong"
jq -e '.disks | length == 2' "$T/list.json" >/dev/null || fail "disk list: $(cat "$T/list.json")"
cmp "$T/slow.part" <(dd if="$T/slow.img" bs=1M skip=40 count=8 status=none) ||
	fail "the slow range is wrong"
[ "$(echo "$fast < 1.5 && $list < 1.5" | bc)" = 1 ] ||
	fail "requests for the fast disk waited behind the slow one: range $fast s, list $list s (the slow range took $slow s)"
[ "$(echo "$slow >= 4" | bc)" = 1 ] || fail "the slow range took $slow s: the disk was not slow"
ok "one event loop: while 8 MiB of a 1 MB/s disk took $slow s, a 1 MiB range of a fast disk took $fast s and the disk list $list s"
kill "$EXPORT_PID"	# it holds the slow disk open
wait "$EXPORT_PID" 2>/dev/null
unmount_ferry "$T/mnt"
echo "PASS"
