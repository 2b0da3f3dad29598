#!/usr/bin/env bash
# A source behind an HTTP CONNECT proxy: Debian's tinyproxy on 127.0.0.1,
# with basic authentication, started here. ferry-export --connect finds it
# in $https_proxy; every connection it makes goes to the proxy, none to the
# transit directly, and the data reads equal. A wrong proxy password is
# logged as the proxy's refusal (tinyproxy answers
# 401, not 407) and retried, not fatal.
. "$(dirname "$0")/functions.sh"
requires tinyproxy jq cmp python3 ss

M=1048576
truncate -s 40M "$T/disk.img"
head -c $((11 * M)) /dev/urandom | dd of="$T/disk.img" bs=1M seek=2 conv=notrunc status=none
start_listen "$T/mnt" "cache=$T/cache"

pport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$T/tinyproxy.conf" <<EOF
Port $pport
Listen 127.0.0.1
Timeout 600
MaxClients 100
Allow 127.0.0.1
BasicAuth ferry s3cret
LogFile "$T/tinyproxy.log"
LogLevel Connect
PidFile "$T/tinyproxy.pid"
EOF
tinyproxy -d -c "$T/tinyproxy.conf" 2>"$T/tinyproxy.err" &
PIDS+=($!)
for _ in $(seq 50); do
	ss -Hltn "( sport = :$pport )" | grep -q . && break
	sleep 0.1
done
ss -Hltn "( sport = :$pport )" | grep -q . || fail "tinyproxy did not listen on $pport: $(cat "$T/tinyproxy.err")"

# The wrong password first: refused by the proxy, retried.
https_proxy="http://ferry:wrong@127.0.0.1:$pport" start_source bad disk="$T/disk.img"
bad=$SRC_PID
for _ in $(seq 100); do
	grep -Eq "HTTP 40[17]" "$T/export-bad.log" && break
	sleep 0.1
done
grep -Eq "proxy 127.0.0.1:$pport refused the tunnel to 127.0.0.1:$LISTEN_PORT: HTTP 40[17]; retrying" "$T/export-bad.log" ||
	fail "a wrong proxy password: $(tail -3 "$T/export-bad.log")"
kill -0 "$bad" || fail "a refusal by the proxy was fatal"
kill "$bad"
ok "a wrong proxy password: $(grep -Em1 "HTTP 40[17]" "$T/export-bad.log")"

https_proxy="http://ferry:s3cret@127.0.0.1:$pport" start_source web01 disk="$T/disk.img"
wait_source "$T/mnt" web01 complete 60
cmp "$T/mnt/web01/disk.raw" "$T/disk.img" || fail "web01/disk.raw through the proxy differs"
direct=$(ss -Htnp state established "( dport = :$LISTEN_PORT )" | grep -c "pid=$SRC_PID,")
proxied=$(ss -Htnp state established "( dport = :$pport )" | grep -c "pid=$SRC_PID,")
[ "$direct" = 0 ] && [ "$proxied" -ge 1 ] ||
	fail "the exporter's connections: $direct to the transit directly, $proxied to the proxy"
tunnels=$(grep -c "CONNECT.*127.0.0.1:$LISTEN_PORT" "$T/tinyproxy.log")
[ "$tunnels" -ge 1 ] || fail "tinyproxy logged no CONNECT to the transit: $(tail -5 "$T/tinyproxy.log")"
ok "through tinyproxy with basic auth: $proxied connections to the proxy, none direct, $tunnels tunnels logged; cmp equal"
