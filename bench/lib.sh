# Shared by the bench/ scripts: the built programs, the tools a script
# needs, a work directory, and a cleanup that unmounts and stops only what
# the script started ($FPID, $EPID), calls bench_cleanup if the script
# defines it, and removes $W.
# Usage: . bench/lib.sh TOOL...
set -eu
cd "$(dirname "$0")/.."
B=${FERRY_BUILD:-build}
EXPORT=$B/tools/export/ferry-export
FERRYFS=$B/fs/ferryfs
[ -x "$EXPORT" ] && [ -x "$FERRYFS" ] || { echo "build first: meson setup $B && ninja -C $B" >&2; exit 1; }
for c in fusermount3 "$@"; do command -v "$c" >/dev/null || { echo "needs $c" >&2; exit 1; }; done

W=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
EPID= FPID=
cleanup() {
	mountpoint -q "$W/mnt" 2>/dev/null && fusermount3 -u "$W/mnt"
	[ -n "$FPID" ] && wait "$FPID" 2>/dev/null || true
	[ -n "$EPID" ] && kill "$EPID" 2>/dev/null && wait "$EPID" 2>/dev/null || true
	declare -F bench_cleanup >/dev/null && bench_cleanup
	[ -n "${KEEP_W:-}" ] || rm -rf "$W" 2>/dev/null || true
}
trap cleanup EXIT
M=1048576

# median: the middle of the numbers on stdin, one per line.
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# stripe_disk PATH MIB [STRAY]: a disk of MIB MiB in 8 MiB stripes, stripe
# i by i%5: 0-1 holes, 2 random, 3 compressible text, 4 half random half
# written zeros (~40% holes, ~60% allocated). With STRAY=1 a random 3 KiB
# sits 5 KiB before each hole, so data straddles cluster and block bounds.
stripe_disk() {
	python3 - "$1" "$2" "${3:-0}" <<'PY'
import os, sys
path, mib, stray = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
S = 8 << 20
text = (b"ferry benchmark disk: a compressible line of text\n" * (S // 50 + 1))[:S]
with open(path, "wb") as f:
    f.truncate(mib << 20)
    for i in range(mib // 8):
        off, k = i * S, i % 5
        if k == 2:
            f.seek(off); f.write(os.urandom(S))
        elif k == 3:
            f.seek(off); f.write(text)
        elif k == 4:
            f.seek(off); f.write(os.urandom(S // 2) + bytes(S // 2))
        if stray and k in (0, 1) and i > 0:
            f.seek(off - 5 * 1024); f.write(os.urandom(3 * 1024))
PY
}

# netns_up NS VETH_HOST VETH_NS HOST_IP NS_IP MBIT: a network namespace NS
# joined to this one by a veth pair, MTU 1500, HOST_IP/30 here and NS_IP/30
# there, shaped to MBIT both ways (netns_shape). netns_down NS VETH_HOST
# takes both away.
netns_up() {
	ip netns add "$1"
	ip link add "$2" type veth peer name "$3"
	ip link set "$3" netns "$1"
	ip addr add "$4/30" dev "$2"
	ip link set "$2" mtu 1500 up
	ip netns exec "$1" ip addr add "$5/30" dev "$3"
	ip netns exec "$1" ip link set "$3" mtu 1500 up
	ip netns exec "$1" ip link set lo up
	netns_shape "$1" "$2" "$3" "$6"
}
# netns_shape NS VETH_HOST VETH_NS MBIT: tbf at MBIT on both ends, a burst
# of 4 ms of the rate, a queue of 50 ms.
netns_shape() {
	local burst=$(($4 * 1000000 / 8 / 250))
	[ "$burst" -ge 16000 ] || burst=16000
	tc qdisc replace dev "$2" root tbf rate "${4}mbit" burst "$burst" latency 50ms
	ip netns exec "$1" tc qdisc replace dev "$3" root tbf rate "${4}mbit" burst "$burst" latency 50ms
}
netns_down() {
	ip netns del "$1" 2>/dev/null || true	# (takes the veth pair with it)
	ip link del "$2" 2>/dev/null || true
}

# free_port: a TCP port of 127.0.0.1 free now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# nginx_local FILE: nginx serving $W/www over HTTPS on 127.0.0.1 (a P-256
# certificate made now, a free port), answering for FILE before this
# returns; sets NP (its port) and NGINX_PID (for the script to stop).
nginx_local() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj /CN=127.0.0.1 -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
	NP=$(free_port)
	mkdir -p "$W/nginx-tmp"
	nginx_conf "$W/nginx.conf" "127.0.0.1:$NP" "$W/cert.pem" "$W/key.pem" "$W/www" "$W/nginx-tmp"
	nginx -p "$W" -c "$W/nginx.conf" &
	NGINX_PID=$!
	for _ in $(seq 50); do curl -sk -o /dev/null -r 0-0 "https://127.0.0.1:$NP/$1" && return 0; sleep 0.1; done
	echo "nginx did not answer on 127.0.0.1:$NP" >&2
	return 1
}

# nginx_conf CONF LISTEN CERT KEY ROOT TMPDIR: an nginx configuration in
# CONF (pid and error log beside it) serving ROOT over HTTPS on LISTEN
# (ADDR:PORT) with sendfile and a directory listing (httpdirfs reads
# it), one worker, no access log; run it with
# nginx -p DIR -c CONF.
nginx_conf() {
	local d
	d=$(dirname "$1")
	cat >"$1" <<EOF
daemon off;
user root;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/nginx.err;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path $6;
	proxy_temp_path $6;
	fastcgi_temp_path $6;
	uwsgi_temp_path $6;
	scgi_temp_path $6;
	sendfile on;
	server {
		listen $2 ssl;
		ssl_certificate $3;
		ssl_certificate_key $4;
		root $5;
		autoindex on;
	}
}
EOF
}

# export_local ARG...: ferry-export of ARG... (options, then NAME=PATH
# disks) on 127.0.0.1, a free port, its log in $W/export.log; sets EPID, and
# URL once it listens.
export_local() {
	rm -f "$W/url"
	"$EXPORT" --listen 127.0.0.1:0 --url-file "$W/url" "$@" >/dev/null 2>>"$W/export.log" &
	EPID=$!
	for _ in $(seq 100); do [ -s "$W/url" ] && break; sleep 0.1; done
	[ -s "$W/url" ] || { echo "ferry-export did not start: $(tail -1 "$W/export.log")" >&2; return 1; }
	URL=$(cat "$W/url")
}

# mount_cold OPTS: ferryfs of $URL on $W/mnt, -o OPTS, with a new, empty
# cache ($W/cache), its log in $W/ferryfs.log; sets FPID once its status
# file is there. unmount takes it down; wait_complete waits until its first
# disk is all cached.
mount_cold() {
	rm -rf "$W/cache"
	mkdir -p "$W/mnt"
	"$FERRYFS" -f -o "cache=$W/cache${1:+,$1}" "$URL" "$W/mnt" 2>>"$W/ferryfs.log" &
	FPID=$!
	for _ in $(seq 100); do [ -f "$W/mnt/.ferry/status.json" ] && return 0; sleep 0.1; done
	echo "ferryfs did not mount: $(tail -1 "$W/ferryfs.log")" >&2
	return 1
}
unmount() { fusermount3 -u "$W/mnt"; wait "$FPID" || true; FPID=; }
wait_complete() { wait_json "$W/mnt/.ferry/status.json" 'j["disks"][0]["state"] == "complete"'; }

# wait_json FILE EXPR [SECONDS=0.05]: wait until the Python expression EXPR
# is true of FILE's JSON (as j; a file that cannot be read or parsed yet is
# false), polling every SECONDS in one process. Not jq in a loop: jq 1.6
# costs about 40 ms of CPU a start (it compiles its builtins each time), so
# polling every 50 ms took nearly half a core from the programs measured,
# and was counted against them wherever the bench measures the machine.
wait_json() {
	python3 - "$1" "$2" "${3:-0.05}" <<'PY'
import json, sys, time
path, expr, every = sys.argv[1], compile(sys.argv[2], "EXPR", "eval"), float(sys.argv[3])
while True:
    try:
        with open(path) as f:
            if eval(expr, {"j": json.load(f)}):
                break
    except (OSError, ValueError, LookupError, TypeError):
        pass
    time.sleep(every)
PY
}
