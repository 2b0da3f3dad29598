#!/usr/bin/env bash
# Hostile clients against ferry-export: malformed and oversized requests,
# slowloris headers, a flood of connections, ranges that overflow, path
# tricks and token guessing. Each gets a clear 4xx/503 or a closed
# connection; the exporter stays up, small, and serves a good client
# throughout.
. "$(dirname "$0")/functions.sh"
requires curl jq python3

RAW="$(dirname "$0")/tools/rawhttp.py"
head -c $((4 * 1048576)) /dev/urandom > "$T/disk.img"
start_export --max-connections 40 --header-timeout 2 disk="$T/disk.img"
PORT=${HOSTPORT##*:}

good() {	# a good client still gets the right bytes
	curl -sk -H "Authorization: Bearer $TOKEN" -r 4096-8191 \
		"https://$HOSTPORT/v1/disks/disk" | cmp - <(tail -c +4097 "$T/disk.img" | head -c 4096) ||
		fail "a good client failed after: $1"
}

send() {	# send TEXT (printf format): the status code, or closed
	printf "$1" > "$T/req"
	timeout 20 python3 "$RAW" "$PORT" send "$T/req"
}

# Malformed and oversized requests.
code=$(send 'GARBAGE\r\n\r\n'); [ "$code" = 400 ] || [ "$code" = closed ] || fail "garbage line: $code"
code=$(send 'GET /v1/disks HTTP/9.9\r\nHost: x\r\n\r\n'); [ "$code" != 200 ] || fail "HTTP/9.9 accepted"
big=$(head -c 40000 /dev/zero | tr '\0' a)
code=$(send "GET /v1/disks HTTP/1.1\r\nHost: x\r\nX-Big: $big\r\n\r\n")
case $code in 4*|closed) ;; *) fail "40 KB header: $code" ;; esac
code=$(send "GET /$big HTTP/1.1\r\nHost: x\r\n\r\n")
case $code in 4*|closed) ;; *) fail "40 KB request line: $code" ;; esac
code=$(send "POST /v1/disks HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
case $code in 4*|closed) ;; *) fail "a huge body: $code" ;; esac
good "malformed requests"
ok "malformed, oversized requests and bodies: refused"

# Ranges: huge, inverted, overflowing, many.
for r in "bytes=5-4" "bytes=99999999999999999999-" "bytes=-99999999999999999999x" \
	 "bytes=0-1,5-6" "bytes=18446744073709551615-18446744073709551615" "items=0-1" "bytes=--1"; do
	code=$(api /v1/disks/disk -H "Range: $r")
	case $code in 400|416) ;; *) fail "Range: $r gave $code" ;; esac
done
code=$(api /v1/disks/disk -H "Range: bytes=0-99999999999999999999999")
[ "$code" = 206 ] || fail "an overlong end is clipped, got $code"
good "bad ranges"
ok "bad ranges: 400/416"

# Path tricks: only names given on the command line are reachable.
for p in "/v1/disks/..%2f..%2fetc%2fpasswd" "/v1/disks/../../etc/passwd" "/v1/disks/%2e%2e" \
	 "/v1/disks/disk%00.img" "/v1/disks/disk/../disk" "/v1/disks/DISK" "/v1/disks//disk" \
	 "/v1/disks/disk/extents/x" "/v1/disks/disk/digests?chunk=1&first=0&count=1" \
	 "/v1/disks/disk/digests?chunk=4096&first=0&count=999999999" \
	 "/v1/disks/disk/digests?chunk=4096&first=18446744073709551615&count=1"; do
	code=$(api "$p")
	case $code in 400|404|416) ;; *) fail "$p gave $code: $(cat "$T/body")" ;; esac
done
good "path tricks"
ok "path tricks: 400/404"

# Slowloris: headers a byte at a time are cut off at --header-timeout.
t=$(timeout 60 python3 "$RAW" "$PORT" slowloris)
[ "$t" != "never closed" ] || fail "a slowloris client was never cut off"
[ "$(echo "$t <= 6" | bc)" = 1 ] || fail "slowloris cut off after $t s (header timeout 2)"
good "slowloris"
ok "slowloris cut off after $t s"

# A flood of connections beyond --max-connections 40: the extra ones get
# 503, the first ones are served.
res=$(timeout 120 python3 "$RAW" "$PORT" flood 120 "$TOKEN")
echo "flood: $res"
served=$(echo "$res" | tr ' ' '\n' | sed -n 's/^200=//p')
refused=$(echo "$res" | tr ' ' '\n' | sed -n 's/^503=//p')
[ "${served:-0}" -ge 30 ] && [ "${served:-0}" -le 40 ] || fail "flood: $served served (cap 40): $res"
[ "${refused:-0}" -ge 70 ] || fail "flood: $refused got 503: $res"
grep -q "max-connections" "$T/export.log" || fail "no log line for the refused connections"
sleep 0.5
good "the flood"
ok "flood of 120 connections: $served served, $refused refused with 503"

# Token guessing: all 401, the log a line a second at most.
before=$(grep -c " 401 " "$T/export.log")
t0=$(date +%s)
n=$(timeout 120 python3 "$RAW" "$PORT" badtokens 300)
secs=$(( $(date +%s) - t0 + 1 ))
lines=$(( $(grep -c " 401 " "$T/export.log") - before ))
[ "$n" = 300 ] || fail "only $n of 300 wrong tokens got 401"
[ "$lines" -le $((secs + 1)) ] || fail "$lines log lines for 300 wrong tokens in $secs s"
good "token guessing"
ok "300 wrong tokens: all 401, $lines log lines in $secs s"

# Still up, and small.
kill -0 "$EXPORT_PID" || fail "the exporter died"
rss=$(awk '/VmRSS/ {print $2}' "/proc/$EXPORT_PID/status")
[ "$rss" -lt 200000 ] || fail "exporter RSS $rss kB after the abuse"
ok "exporter alive, RSS $rss kB"
