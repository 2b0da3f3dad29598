#!/usr/bin/env bash
# Hydration's connections get a receive buffer sized by ferryfs
# (common/rwnd.c: on loopback, the floor of 256 KiB, which the kernel
# doubles), so that a paused hydration cannot have megabytes on their way;
# a reader's connection keeps the kernel's autotuning. And the bytes that
# arrive through the sized connections are the source's.
. "$(dirname "$0")/functions.sh"
requires ss jq cmp

M=1048576
head -c $((192 * M)) /dev/urandom >"$T/disk.img"
start_export disk="$T/disk.img"
port=${HOSTPORT##*:}
# The floor, as the socket reports it: root may go past net.core.rmem_max
# (SO_RCVBUFFORCE); others get at most that.
want=$((2 * 262144))
if [ "$(id -u)" != 0 ]; then
	rmax=$(cat /proc/sys/net/core/rmem_max)
	[ "$rmax" -ge 262144 ] || want=$((2 * rmax))
fi
# bwlimit: hydration lasts long enough to be looked at (about 8 s).
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,prefetch=1,compress=0,bwlimit=24M,views=raw"

# streams=2 (the default): two hydration connections.
sized() { ss -tmn state established "( dport = :$port )" >"$1"; grep -c "rb$want," "$1"; }
for _ in $(seq 100); do
	[ "$(sized "$T/ss.txt")" = 2 ] && break
	sleep 0.1
done
[ "$(sized "$T/ss.txt")" = 2 ] ||
	fail "not two connections to the source with a receive buffer of $want bytes: $(grep -o 'rb[0-9]*' "$T/ss.txt" | tr '\n' ' ')"
ok "both hydration connections' receive buffers are $want bytes"

# A reader, meanwhile: its connection is not one of the sized ones.
dd if="$T/mnt/disk.raw" of="$T/read" bs=1M skip=150 count=8 status=none || fail "read during hydration"
cmp "$T/read" <(tail -c +$((150 * M + 1)) "$T/disk.img" | head -c $((8 * M))) || fail "read during hydration differs"
[ "$(sized "$T/ss2.txt")" = 2 ] && [ "$(grep -c skmem "$T/ss2.txt")" -gt 2 ] ||
	fail "the reader's connection got a sized buffer too: $(grep -o 'rb[0-9]*' "$T/ss2.txt" | tr '\n' ' ')"
ok "a reader's connection keeps the kernel's buffer"

wait_state "$T/mnt" disk complete 120
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "the hydrated disk differs from the source"
ok "hydrated through the sized connections, every byte right"
unmount_ferry "$T/mnt"
echo "PASS"
