#!/usr/bin/env bash
# A wrong token, a key that does not match the pin, a malformed connection
# string or an unreachable exporter: ferryfs says which, exits non-zero, and
# does not mount.
. "$(dirname "$0")/functions.sh"
requires curl

head -c 1048576 /dev/urandom > "$T/disk.img"
start_export disk="$T/disk.img"
mkdir -p "$T/mnt"

try() {	# try SOURCE EXPECTED-MESSAGE
	local rc=0
	timeout 60 "$FERRYFS" -f -o "cache=$T/cache" "$1" "$T/mnt" 2>"$T/try.log" || rc=$?
	[ "$rc" -ne 0 ] || fail "ferryfs accepted $1"
	[ "$rc" -ne 124 ] || fail "ferryfs hung on $1"
	is_mounted "$T/mnt" && fail "mounted with $1"
	[ "$(wc -l < "$T/try.log")" -le 2 ] || fail "more than a line or two: $(cat "$T/try.log")"
	grep -qi "$2" "$T/try.log" || fail "message for $1 lacks '$2': $(cat "$T/try.log")"
	ok "$2 -> exit $rc: $(head -1 "$T/try.log")"
}

# A token differing in its last character (never equal to the real one).
last=${TOKEN: -1}
[ "$last" = 0 ] && wrong=${TOKEN%?}1 || wrong=${TOKEN%?}0
try "ferry://$wrong@$HOSTPORT/?pin=$PIN" "token"
try "ferry://$TOKEN@$HOSTPORT/?pin=sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" "pin"
try "ferry://$TOKEN@$HOSTPORT/" "pin"
try "ferry://$TOKEN@$HOSTPORT/?pin=sha256//short" "pin"
try "ferry:/nonsense" "connection string"
try "gopher://x" "not a ferry:// connection string"
# A port nothing listens on: bind one, then free it.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 9)
try "ferry://$TOKEN@127.0.0.1:$port/?pin=$PIN" "connect"

# The right one mounts.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "right credentials, wrong bytes"
unmount_ferry "$T/mnt"
ok "right token and pin mount"
