#!/usr/bin/env bash
# A wrong token, a key that does not match the pin, a malformed connection
# string or an unreachable exporter: ferryfs says which, exits non-zero, and
# does not mount.
. "$(dirname "$0")/functions.sh"
requires curl

head -c 1048576 /dev/urandom > "$T/disk.img"
start_export disk="$T/disk.img"
# A token differing in its last character (never equal to the real one).
last=${TOKEN: -1}
[ "$last" = 0 ] && wrong=${TOKEN%?}1 || wrong=${TOKEN%?}0
expect_refused "ferry://$wrong@$HOSTPORT/?pin=$PIN" "cache=$T/cache" "token"
expect_refused "ferry://$TOKEN@$HOSTPORT/?pin=sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" "cache=$T/cache" "pin"
expect_refused "ferry://$TOKEN@$HOSTPORT/" "cache=$T/cache" "pin"
expect_refused "ferry://$TOKEN@$HOSTPORT/?pin=sha256//short" "cache=$T/cache" "pin"
expect_refused "ferry:/nonsense" "cache=$T/cache" "connection string"
expect_refused "gopher://x" "cache=$T/cache" "not a ferry:// connection string"
# A port nothing listens on: bind one, then free it.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 9)
expect_refused "ferry://$TOKEN@127.0.0.1:$port/?pin=$PIN" "cache=$T/cache" "connect"

# The right one mounts.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "right credentials, wrong bytes"
unmount_ferry "$T/mnt"
ok "right token and pin mount"
