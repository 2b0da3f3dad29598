#!/usr/bin/env bash
# A failing link between ferryfs and ferry-export: connections reset,
# truncated, stalled or garbled by a proxy (tests/tools/faultproxy.py), and
# the exporter killed and restarted with the same key and token while a
# reader is half-way. Reads complete with the right bytes; only when
# -o timeout= runs out do readers get EIO; a source that changed while
# the exporter was down is refused (412), not mixed in. After all of it the
# cache holds no wrong byte.
. "$(dirname "$0")/functions.sh"
requires curl jq cmp python3 openssl

PROXY="$(dirname "$0")/tools/faultproxy.py"
make_disk "$T/disk.img"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$T/key.pem" -out "$T/cert.pem" -days 2 -subj /CN=ferry-test \
	2>/dev/null || fail "openssl could not make a key"
EXPORT_ARGS=(--cert "$T/cert.pem" --key "$T/key.pem" --token test-token-0123456789)
start_export "${EXPORT_ARGS[@]}" disk="$T/disk.img"
PORT=${HOSTPORT##*:}

# start_proxy FAULT COUNT [--mitm CERT KEY]: a proxy in front of the
# exporter; sets PURL.
start_proxy() {
	rm -f "$T/proxy.port"
	python3 "$PROXY" --upstream "$PORT" --port-file "$T/proxy.port" \
		--fault "$1" --count "$2" "${@:3}" 2>>"$T/proxy.log" &
	PROXY_PID=$!
	PIDS+=("$PROXY_PID")
	local port
	port=$(port_of "$T/proxy.port" "$PROXY_PID" "the proxy") || exit 1
	PURL="ferry://$TOKEN@127.0.0.1:$port/?pin=$PIN"
}

stop_proxy() {
	kill "$PROXY_PID"
	wait "$PROXY_PID" 2>/dev/null
}

# Each fault on the first connections: the whole disk still reads right,
# through retries that resume where the bytes stopped.
for fault in reset:300000 truncate:200000 flip:150000 stall:250000; do
	start_proxy "$fault" 6
	: >"$T/ferryfs.log"
	mount_ferry "$PURL" "$T/mnt" "cache=$T/cache-$fault,prefetch=0,stall_timeout=1,chunk=256K"
	timeout 120 cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "$fault: the view differs from the source"
	failures=$(jq .link.failures "$T/mnt/.ferry/status.json")
	[ "$failures" -ge 1 ] || fail "$fault: no failure seen by ferryfs (proxy: $(tail -1 "$T/proxy.log"))"
	grep -q "went through after" "$T/ferryfs.log" || fail "$fault: no log line of the recovery"
	unmount_ferry "$T/mnt"
	stop_proxy
	ok "$fault on 6 connections: read right after $failures failed attempts"
done

# A man in the middle with the right key flips a byte of the plaintext
# data (compress=0, so that it stays valid HTTP): TLS cannot see it, the
# chunk's digest does; the chunk is fetched again and the read is right.
start_proxy flip:150000 2 --mitm "$T/cert.pem" "$T/key.pem"
: >"$T/ferryfs.log"
mount_ferry "$PURL" "$T/mnt" "cache=$T/cache-mitm,prefetch=0,compress=0,chunk=256K,views=raw"
[ "$(status "$T/mnt" disk verify)" = true ] || fail "verify is not on"
timeout 120 cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "mitm flip: the view differs from the source"
bad=$(status "$T/mnt" disk digest_mismatches)
[ "$bad" -ge 1 ] || fail "no digest mismatch counted (proxy: $(tail -1 "$T/proxy.log"))"
grep -q "differs from the source's digest" "$T/ferryfs.log" || fail "no log line of the mismatch"
unmount_ferry "$T/mnt"
stop_proxy
ok "a flipped plaintext byte was caught by the digest ($bad mismatches) and fetched again"

# Every connection garbled: after a few tries the reader gets EIO and the
# chunk is never cached.
start_proxy flip:150000 0 --mitm "$T/cert.pem" "$T/key.pem"
mount_ferry "$PURL" "$T/mnt" "cache=$T/cache-mitm-all,prefetch=0,compress=0,chunk=256K,views=raw"
if timeout 60 dd if="$T/mnt/disk.raw" of=/dev/null bs=256K skip=160 count=1 status=none 2>"$T/dd.err"; then
	fail "a chunk garbled on every try was read"
fi
grep -q "Input/output error" "$T/dd.err" || fail "not EIO: $(cat "$T/dd.err")"
grep -q "differs from the source's digest 3 times" "$T/ferryfs.log" || fail "no log line for the given-up chunk"
[ "$(status "$T/mnt" disk chunks_cached)" = 0 ] || fail "a garbled chunk was cached"
unmount_ferry "$T/mnt"
stop_proxy
ok "garbled on every try: EIO, nothing cached"

# The exporter is killed (-9) while a capped reader is half-way, then
# restarted on the same port with the same key and token: the reader waits,
# the state says reconnecting, and the read completes right.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache-restart,prefetch=0,bwlimit=24M,chunk=256K"
timeout 120 cmp "$T/mnt/disk.raw" "$T/disk.img" >"$T/cmp.out" 2>&1 &
CMP_PID=$!
sleep 1.5
kill -0 "$CMP_PID" 2>/dev/null || fail "the reader finished before the exporter was stopped"
kill -9 "$EXPORT_PID"
wait "$EXPORT_PID" 2>/dev/null
for _ in $(seq 100); do
	[ "$(status "$T/mnt" disk state)" = reconnecting ] && break
	sleep 0.1
done
[ "$(status "$T/mnt" disk state)" = reconnecting ] || fail "state is not reconnecting: $(cat "$T/mnt/.ferry/status.json")"
[ "$(jq -r .link.last_error "$T/mnt/.ferry/status.json")" != null ] || fail "no last error in status.json"
sleep 2
kill -0 "$CMP_PID" 2>/dev/null || fail "the reader did not wait for the exporter: $(cat "$T/cmp.out")"
start_export "${EXPORT_ARGS[@]}" --listen "127.0.0.1:$PORT" disk="$T/disk.img"
wait "$CMP_PID" || fail "the read across the restart failed: $(cat "$T/cmp.out")"
[ "$(status "$T/mnt" disk state)" != reconnecting ] || fail "still reconnecting after the restart"
unmount_ferry "$T/mnt"
ok "exporter killed and restarted mid-read: the reader completed with the right bytes"

# No exporter at all: a reader of an uncached range gets EIO once
# -o timeout= runs out (not before, not never); cached data still reads.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache-timeout,prefetch=0,timeout=3,chunk=256K"
dd if="$T/mnt/disk.raw" of=/dev/null bs=1M count=2 status=none || fail "first read failed"
kill -9 "$EXPORT_PID"
wait "$EXPORT_PID" 2>/dev/null
t0=$(date +%s.%N)
if timeout 60 dd if="$T/mnt/disk.raw" of=/dev/null bs=1M skip=40 count=1 status=none 2>"$T/dd.err"; then
	fail "a read with the exporter gone succeeded"
fi
t=$(echo "$(date +%s.%N) - $t0" | bc)
grep -q "Input/output error" "$T/dd.err" || fail "not EIO: $(cat "$T/dd.err")"
[ "$(echo "$t >= 2.5 && $t < 4.5" | bc)" = 1 ] || fail "EIO after $t s, timeout=3 (timeouts stacked?)"
grep -q "giving up" "$T/ferryfs.log" || fail "no log line for the timeout"
[ "$(status "$T/mnt" disk state)" = error ] || fail "state is not error: $(cat "$T/mnt/.ferry/status.json")"
[ "$(jq -r .link.state "$T/mnt/.ferry/status.json")" = down ] || fail "link state is not down: $(cat "$T/mnt/.ferry/status.json")"
# Given up on, the link is tried once per new read, not for another
# timeout: a second reader hears at once.
t0=$(date +%s.%N)
if timeout 60 dd if="$T/mnt/disk.raw" of=/dev/null bs=1M skip=60 count=1 status=none 2>/dev/null; then
	fail "a second read with the exporter gone succeeded"
fi
t2=$(echo "$(date +%s.%N) - $t0" | bc)
[ "$(echo "$t2 < 1.5" | bc)" = 1 ] || fail "a read on a link given up on took $t2 s"
cmp -n $((2 * 1048576)) "$T/mnt/disk.raw" "$T/disk.img" || fail "cached data does not read while the link is down"
ok "exporter gone: EIO after $t s (timeout=3), the next read's in $t2 s; state error, link down, cached data still reads"

# The exporter comes back: the same mount picks it up, no remount.
start_export "${EXPORT_ARGS[@]}" --listen "127.0.0.1:$PORT" disk="$T/disk.img"
timeout 60 dd if="$T/mnt/disk.raw" of=/dev/null bs=1M skip=40 count=1 status=none || fail "no read after the exporter came back"
[ "$(jq -r .link.state "$T/mnt/.ferry/status.json")" = ok ] || fail "link state not ok after the exporter came back"
unmount_ferry "$T/mnt"
ok "exporter back: the same mount reads again"

# After all of it, no cache holds a wrong byte: each remount keeps what was
# cached, hydrates the rest, and must equal the source.
for c in "$T"/cache-*; do
	mount_ferry "$URL" "$T/mnt" "cache=$c,chunk=256K"
	wait_state "$T/mnt" disk complete 120
	cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "$(basename "$c"): wrong bytes after remount"
	unmount_ferry "$T/mnt"
done
ok "every cache equals the source after remount"

# The source changed while the exporter was down (a new mtime is a new
# generation): the mounted disk's requests get 412, readers EIO at once.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache-gen,prefetch=0,chunk=256K"
dd if="$T/mnt/disk.raw" of=/dev/null bs=1M count=2 status=none || fail "first read failed"
kill "$EXPORT_PID"
wait "$EXPORT_PID" 2>/dev/null
touch "$T/disk.img"
start_export "${EXPORT_ARGS[@]}" --listen "127.0.0.1:$PORT" disk="$T/disk.img"
t0=$(date +%s.%N)
if timeout 60 dd if="$T/mnt/disk.raw" of=/dev/null bs=1M skip=80 count=1 status=none 2>/dev/null; then
	fail "data of a changed source was read"
fi
t=$(echo "$(date +%s.%N) - $t0" | bc)
[ "$(echo "$t < 2.5" | bc)" = 1 ] || fail "a changed source took $t s to refuse (retried?)"
grep -q "changed at the source" "$T/ferryfs.log" || fail "no log line about the changed source"
unmount_ferry "$T/mnt"
ok "changed source refused (412) in $t s"
