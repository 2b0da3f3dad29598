#!/usr/bin/env bash
# Refusals at a reverse connection: a wrong token is refused by the
# transit, logged there, and the source exits with a clear error; a wrong
# pin is refused by the source (the transit is an impostor); strangers
# that connect and send nothing, in TCP or after a TLS handshake, are cut
# off by the hello timeout; after 200 junk connections the listener still
# takes the real source, whose data reads equal.
. "$(dirname "$0")/functions.sh"
requires jq cmp python3 openssl

M=1048576
TOOLS=$(dirname "$0")/tools
truncate -s 48M "$T/disk.img"
head -c $((9 * M)) /dev/urandom | dd of="$T/disk.img" bs=1M seek=4 conv=notrunc status=none
start_listen "$T/mnt" "cache=$T/cache"
token=${CONNECT#ferry://}; token=${token%%@*}
rest=${CONNECT#*@}

# A wrong token.
other=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
rc=0
timeout 30 "$FERRY_EXPORT" --connect "ferry://$other@$rest" --name web01 disk="$T/disk.img" \
	>/dev/null 2>"$T/wrongtoken.err" || rc=$?
[ "$rc" = 1 ] || fail "a wrong token: exit $rc: $(cat "$T/wrongtoken.err")"
grep -q "refused this source: wrong token" "$T/wrongtoken.err" || fail "the source's message: $(cat "$T/wrongtoken.err")"
grep -q "source web01 presented a wrong token; refused" "$T/ferryfs.log" || fail "no line on the transit for the wrong token"
jq -e '.sources | length == 0' "$T/mnt/.ferry/status.json" >/dev/null || fail "a refused source is listed"
ok "a wrong token: refused, exit 1: $(grep -m1 "wrong token" "$T/wrongtoken.err")"

# A wrong pin: the source refuses the transit before it says anything.
badpin=$(head -c 32 /dev/urandom | base64)
rc=0
timeout 30 "$FERRY_EXPORT" --connect "ferry://$token@${rest%%\?*}?pin=sha256//$badpin" --name web01 \
	disk="$T/disk.img" >/dev/null 2>"$T/wrongpin.err" || rc=$?
[ "$rc" = 1 ] || fail "a wrong pin: exit $rc: $(cat "$T/wrongpin.err")"
grep -q "is not the transit: its key is" "$T/wrongpin.err" || fail "the source's message: $(cat "$T/wrongpin.err")"
! grep -q "wrong token" "$T/wrongpin.err" || fail "the token went to a transit whose key did not match"
ok "a wrong pin: the source refused the transit, exit 1: $(grep -m1 "not the transit" "$T/wrongpin.err" | cut -c1-100)"

# Strangers that send nothing hold nothing for long (hello timeout 10 s).
for kind in silent tls-silent; do
	took=$(timeout 60 python3 "$TOOLS/stranger.py" "$LISTEN_PORT" "$kind") || fail "stranger $kind: $took"
	[ "$took" != open ] && [ "${took%.*}" -le 15 ] || fail "a $kind stranger held its connection: $took s"
	ok "a $kind stranger is cut off after $took s"
done

# 200 junk connections, then the real source.
seen=$(timeout 120 python3 "$TOOLS/stranger.py" "$LISTEN_PORT" junk 200) || fail "junk: $seen"
kill -0 "$FS_PID" || fail "ferryfs died of junk connections"
jq -e '.sources | length == 0' "$T/mnt/.ferry/status.json" >/dev/null || fail "junk made a source: $(cat "$T/mnt/.ferry/status.json")"
start_source web01 disk="$T/disk.img"
wait_source "$T/mnt" web01 complete 60
cmp "$T/mnt/web01/disk.raw" "$T/disk.img" || fail "web01/disk.raw after the junk differs"
ok "200 junk connections ($seen), then the real source: listed, complete, cmp equal"
