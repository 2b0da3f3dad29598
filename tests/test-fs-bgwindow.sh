#!/usr/bin/env bash
# Hydration's connections get a receive buffer sized by ferryfs
# (common/rwnd.c), so that a paused hydration cannot have megabytes on
# their way; a reader's connection keeps the kernel's autotuning. On a
# 100 Mbit/s link (a network namespace, veth, tbf) the size is the floor,
# 256 KiB, which the kernel doubles. And the bytes that came through the
# sized connections are the source's.
. "$(dirname "$0")/functions.sh"
requires ss jq cmp ip tc
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (a network namespace)"; exit 77; }

M=1048576
NS=ferrybw$$ VH=fbwh$$ VS=fbws$$
HOSTIP=169.254.211.1 SRCIP=169.254.211.2
test_cleanup() {
	ip netns del "$NS" 2>/dev/null
	ip link del "$VH" 2>/dev/null
	true
}
ip netns add "$NS" &&
	ip link add "$VH" type veth peer name "$VS" &&
	ip link set "$VS" netns "$NS" &&
	ip addr add "$HOSTIP/30" dev "$VH" && ip link set "$VH" up &&
	ip netns exec "$NS" ip addr add "$SRCIP/30" dev "$VS" &&
	ip netns exec "$NS" ip link set "$VS" up &&
	ip netns exec "$NS" ip link set lo up &&
	tc qdisc replace dev "$VH" root tbf rate 100mbit burst 16000 latency 50ms &&
	ip netns exec "$NS" tc qdisc replace dev "$VS" root tbf rate 100mbit burst 16000 latency 50ms ||
	fail "cannot make the network namespace"

head -c $((64 * M)) /dev/urandom >"$T/disk.img"
ip netns exec "$NS" "$FERRY_EXPORT" --listen "$SRCIP:0" --url-file "$T/url" \
	disk="$T/disk.img" >"$T/export.out" 2>>"$T/export.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/url" ] && break; sleep 0.1; done
[ -s "$T/url" ] || fail "ferry-export did not start"
URL=$(cat "$T/url")
port=${URL#*@"$SRCIP":}
port=${port%%/*}
# Root may go past net.core.rmem_max (SO_RCVBUFFORCE).
want=$((2 * 262144))
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,prefetch=1,compress=0,views=raw"

# streams=2 (the default): two hydration connections.
sized() { ss -tmn state established "( dport = :$port )" >"$1"; grep -c "rb$want," "$1"; }
for _ in $(seq 100); do
	[ "$(sized "$T/ss.txt")" = 2 ] && break
	sleep 0.1
done
[ "$(sized "$T/ss.txt")" = 2 ] ||
	fail "not two connections to the source with a receive buffer of $want bytes: $(grep -o 'rb[0-9]*' "$T/ss.txt" | tr '\n' ' ')"
ok "both hydration connections' receive buffers are $want bytes"

# A reader, meanwhile, far ahead of the hydration: its connection is not
# one of the sized ones.
dd if="$T/mnt/disk.raw" of="$T/read" bs=1M skip=56 count=4 status=none || fail "read during hydration"
cmp "$T/read" <(tail -c +$((56 * M + 1)) "$T/disk.img" | head -c $((4 * M))) || fail "read during hydration differs"
[ "$(sized "$T/ss2.txt")" = 2 ] && [ "$(grep -c skmem "$T/ss2.txt")" -gt 2 ] ||
	fail "the reader's connection got a sized buffer too: $(grep -o 'rb[0-9]*' "$T/ss2.txt" | tr '\n' ' ')"
ok "a reader's connection keeps the kernel's buffer"

wait_state "$T/mnt" disk complete 120
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "the hydrated disk differs from the source"
ok "hydrated through the sized connections, every byte right"
unmount_ferry "$T/mnt"
echo "PASS"
