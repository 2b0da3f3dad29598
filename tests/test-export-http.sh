#!/usr/bin/env bash
# ferry-export's HTTP surface as curl sees it: auth, listing, ranges,
# extent map, and the status codes for everything it must refuse.
. "$(dirname "$0")/functions.sh"
requires curl jq

make_disk "$T/disk.img"
echo "another disk" > "$T/secret.txt"
start_export disk="$T/disk.img"
SIZE=$(stat -c %s "$T/disk.img")

# The first line of stdout is the connection string, and only that.
[ "$(head -1 "$T/export.out")" = "$URL" ] || fail "stdout does not start with the URL"
[ "$(wc -l < "$T/export.out")" = 1 ] || fail "stdout has more than one line"
[[ $URL =~ ^ferry://[0-9a-f]{64}@127\.0\.0\.1:[0-9]+/\?pin=sha256//[A-Za-z0-9+/]{43}=$ ]] ||
	fail "connection string looks wrong: $URL"
ok "connection string"

# The pin is the SHA-256 of the server's public key, as curl checks it.
code=$(curl -s -o /dev/null -w '%{http_code}' --insecure --pinnedpubkey "$PIN" \
	-H "Authorization: Bearer $TOKEN" "https://$HOSTPORT/v1/disks")
[ "$code" = 200 ] || fail "pinned request: $code"
curl -s -o /dev/null --insecure \
	--pinnedpubkey "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" \
	"https://$HOSTPORT/v1/disks" && fail "a wrong pin was accepted"
ok "pin"

# Auth: none, wrong, and wrong scheme are 401 everywhere.
for args in "" "-H Authorization:Bearer\ wrong" "-H Authorization:Basic\ $TOKEN"; do
	for p in /v1/disks /v1/disks/disk /v1/disks/disk/extents /nothing; do
		code=$(eval curl -sk -o /dev/null -w '%{http_code}' $args "https://$HOSTPORT$p")
		[ "$code" = 401 ] || fail "$p with [$args]: $code, want 401"
	done
done
ok "401 without the right token"

# Listing.
[ "$(api /v1/disks)" = 200 ] || fail "list"
[ "$(jq -r '.disks[0].name' "$T/body")" = disk ] || fail "list name"
[ "$(jq -r '.disks[0].size' "$T/body")" = "$SIZE" ] || fail "list size"
alloc=$(jq -r '.disks[0].allocated' "$T/body")
du_bytes=$(( $(stat -c %b "$T/disk.img") * 512 ))
[ "$alloc" -le "$du_bytes" ] && [ "$alloc" -gt $((80 * 1024 * 1024)) ] ||
	fail "allocated $alloc vs du $du_bytes"
ok "GET /v1/disks"

# Extent map: covers the disk, and its data ranges hold every non-zero byte
# (holes read as zeros in the source).
[ "$(api /v1/disks/disk/extents)" = 200 ] || fail "extents"
jq -e --argjson s "$SIZE" '.size == $s and
	([.extents[] | .[1]] | add) == $s and
	([.extents[] | select(.[2] == "data") | .[1]] | add) == '"$alloc" \
	"$T/body" >/dev/null || fail "extent map does not cover the disk: $(head -c 300 "$T/body")"
jq -r '.extents[] | select(.[2] == "zero") | "\(.[0]) \(.[1])"' "$T/body" |
while read -r off len; do
	[ "$len" -gt $((4 * 1024 * 1024)) ] && len=$((4 * 1024 * 1024))
	cmp -s -n "$len" <(tail -c +$((off + 1)) "$T/disk.img") /dev/zero ||
		fail "hole at $off is not zeros in the source"
done || fail "extent map claims holes where the source has data"
ok "GET /v1/disks/NAME/extents"

# Ranges: bytes equal the source; 206 with Content-Range.
for r in "0-0" "0-65535" "41943040-42991615" "$((SIZE - 100))-" "-4096" "$((SIZE - 10))-99999999999"; do
	[ "$(api /v1/disks/disk -r "$r" -D "$T/hdr")" = 206 ] || fail "range $r"
	grep -qi "^content-range: bytes .*/$SIZE" "$T/hdr" || fail "range $r: Content-Range"
	first=${r%-*}; last=${r#*-}
	if [ -z "$first" ]; then first=$((SIZE - last)); last=$((SIZE - 1)); fi
	[ -z "$last" ] || [ "$last" -ge "$SIZE" ] && last=$((SIZE - 1))
	cmp -s "$T/body" <(tail -c +$((first + 1)) "$T/disk.img" | head -c $((last - first + 1))) ||
		fail "range $r: wrong bytes"
done
ok "206 ranges carry the source's bytes"

# A whole-disk download (streamed, larger than one reply buffer).
[ "$(api /v1/disks/disk)" = 200 ] || fail "whole download"
cmp "$T/body" "$T/disk.img" || fail "whole download differs"
ok "200 whole download"

# Clients that hang up in the middle of a streamed body do not hurt the
# exporter: it logs the lost connection and serves the next request.
for _ in 1 2 3; do
	curl -sk -H "Authorization: Bearer $TOKEN" "https://$HOSTPORT/v1/disks/disk" |
		head -c 100000 > /dev/null
done
sleep 0.5
kill -0 "$EXPORT_PID" || fail "exporter died after clients hung up"
[ "$(api /v1/disks/disk -r 0-9)" = 206 ] || fail "exporter not serving after hang-ups"
grep -q "connection lost" "$T/export.log" || fail "lost connection not logged"
ok "clients hanging up mid-stream"

# HEAD gives the size without a body.
curl -sk -I -H "Authorization: Bearer $TOKEN" "https://$HOSTPORT/v1/disks/disk" > "$T/hdr"
grep -qi "^content-length: $SIZE" "$T/hdr" || fail "HEAD content-length"

# 416 for ranges outside the disk, with the size.
for r in "$SIZE-" "$((SIZE + 5))-$((SIZE + 10))" "-0"; do
	[ "$(api /v1/disks/disk -H "Range: bytes=$r" -D "$T/hdr")" = 416 ] || fail "range $r not 416"
	grep -qi "^content-range: bytes \*/$SIZE" "$T/hdr" || fail "416 without size"
done
ok "416"

# 400 for malformed requests.
for r in "bytes=5-4" "bytes=abc" "bytes=0-1,4-5" "pages=0-1" "bytes=--1"; do
	[ "$(api /v1/disks/disk -H "Range: $r")" = 400 ] || fail "Range: $r not 400"
done
[ "$(api /v1/disks/disk%00)" = 400 ] || fail "NUL in name not 400"
ok "400"

# 404 for anything not exported, however the path is spelled.
for p in /v1/disks/nope /v1/disks/../.. /v1/disks/.. /v1/disks/%2e%2e /v1/disks/%2e%2e%2f%2e%2e \
	/v1/disks/..%2f..%2fetc%2fpasswd "/v1/disks/$(basename "$T")%2fsecret.txt" \
	/v1/disks/disk/../../disk /v1/disks/disk/extents/x /v1/disks/DISK /v1 / \
	/v1/disks/disk/ /etc/passwd "/v1/disks/%2fetc%2fpasswd" "/v1/disks/disk%2fextents"; do
	[ "$(api "$p")" = 404 ] || fail "$p: $(cat "$T/body"), want 404"
done
ok "404 for paths outside NAME=PATH"

# Only GET and HEAD; nothing can write.
code=$(curl -sk -o /dev/null -w '%{http_code}' -X PUT --data x \
	-H "Authorization: Bearer $TOKEN" "https://$HOSTPORT/v1/disks/disk")
[ "$code" -ge 400 ] || fail "PUT: $code"
ok "PUT refused ($code)"

# Every refusal was logged once, with the peer address.
grep -q "127.0.0.1:[0-9]* GET /v1/disks/nope: 404" "$T/export.log" || fail "no 404 log line"
grep -q "401 missing or wrong token" "$T/export.log" || fail "no 401 log line"

# SIGTERM stops it cleanly.
kill -TERM "$EXPORT_PID"
timeout 10 tail --pid="$EXPORT_PID" -f /dev/null || fail "did not stop on SIGTERM"
wait "$EXPORT_PID" || fail "exit status $? after SIGTERM"
ok "SIGTERM"
