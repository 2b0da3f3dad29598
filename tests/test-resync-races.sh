#!/usr/bin/env bash
# A cache takes a new generation (NAME.json) only once every chunk it
# claims is of that generation. Two interleavings are forced with ferryfs's
# pause points (FERRYFS_TEST_PAUSE, fs/pause.h), not left to timing:
#  1. a run that began before a resync finishes after it: its chunk is of
#     the generation left, and must not be claimed under the new one;
#  2. a resync lands between the flusher's decision to restamp and its
#     write: the chunks that resync demoted must not be claimed under the
#     newer generation.
# Each time the mount is then stopped and mounted again on the same cache;
# the remount must read the source as it is now.
#  3. a read's reply is held after its chunks were checked, and a resync
#     frees half of what it reads and changes the rest: the reply is the
#     old bytes or the new, never a mix of the two.
. "$(dirname "$0")/functions.sh"
requires jq cmp python3

M=1048576
make_disk "$T/disk.img"
start_export disk="$T/disk.img"

# wait_file FILE WHAT: FILE appears within 30 s.
wait_file() {
	for _ in $(seq 300); do
		[ -e "$1" ] && return 0
		kill -0 "$FS_PID" 2>/dev/null || fail "ferryfs exited while waiting for $2"
		sleep 0.1
	done
	fail "$2 never happened"
}
cache_gen() {
	jq -r .generation "$T/cache$1/disk.json"
}
source_gen() {
	api /v1/disks >/dev/null
	jq -r '.disks[0].generation' "$T/body"
}
scribble() {	# scribble MIB: 4 KiB of new random bytes at MIB MiB + 8 KiB
	head -c 4096 /dev/urandom |
		dd of="$T/disk.img" bs=4096 seek=$((($1 * M + 8192) / 4096)) conv=notrunc status=none
}

# 1. A run of chunk 50 is held after its transfer. It was started by a
# small read (answered at once, its chunk fetched in the background), so
# no reader waits for it, and nothing else is fetched (prefetch=0).
FERRYFS_TEST_PAUSE="run:50:$T/go1" mount_ferry "$URL" "$T/mnt" \
	"cache=$T/cache1,compress=0,prefetch=0"
python3 - "$T/mnt/disk.raw" "$T/disk.img" <<'EOF' || fail "small reads"
import os, sys
M = 1 << 20
f, g = os.open(sys.argv[1], os.O_RDONLY), os.open(sys.argv[2], os.O_RDONLY)
for off in (20 * M, 50 * M + 4096):	# a hole first: the next read is small
    assert os.pread(f, 4096, off) == os.pread(g, 4096, off), off
EOF
wait_file "$T/go1.held" "the run of chunk 50"
g1=$(cache_gen 1)
scribble 50
resync_run "$T/mnt"
g2=$(source_gen)
[ "$g2" != "$g1" ] || fail "the source's generation did not move ($g1)"
# The other cached chunk (0, read for the partition table at mount) is
# checked by a read: then nothing but the held run stands in the way.
dd if="$T/mnt/disk.raw" of=/dev/null bs=4096 count=1 status=none || fail "read of chunk 0"
[ "$(status "$T/mnt" disk resync.pending)" = 0 ] ||
	fail "pending after reading chunk 0: $(status "$T/mnt" disk resync)"
# Give the flusher (once a second) a few rounds: it must not restamp while
# the old run is out.
sleep 2.5
[ "$(cache_gen 1)" = "$g1" ] ||
	fail "the cache took generation $(cache_gen 1) while a run of $g1 was still to finish"
touch "$T/go1"
for _ in $(seq 50); do
	[ "$(status "$T/mnt" disk resync.pending)" = 1 ] && break
	sleep 0.1
done
[ "$(status "$T/mnt" disk resync.pending)" = 1 ] ||
	fail "chunk 50, fetched for $g1, is not pending a check: $(status "$T/mnt" disk resync)"
unmount_ferry "$T/mnt"
[ "$(cache_gen 1)" = "$g1" ] || fail "unmounted with chunk 50 unchecked, the cache says $(cache_gen 1)"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache1,compress=0,prefetch=0"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "the remount reads a chunk of the generation left"
wait_state "$T/mnt" disk complete 60
[ "$(status "$T/mnt" disk resync.pending)" = 0 ] || fail "pending after a full read: $(status "$T/mnt" disk resync)"
unmount_ferry "$T/mnt"
ok "a run that began before the resync and finished after it: pending 0 -> 1, no restamp; the remount reads the new source"

# 2. The flusher is held once it has decided a restamp (after a first
# resync whose chunks were all checked by reading the disk); a second
# resync lands meanwhile and demotes every cached chunk, unchecked.
FERRYFS_TEST_PAUSE="restamp:$T/go2" mount_ferry "$URL" "$T/mnt" \
	"cache=$T/cache2,compress=0,prefetch=0"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "first read"
scribble 3
resync_run "$T/mnt"
g3=$(source_gen)
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "read after the first resync"
[ "$(status "$T/mnt" disk resync.pending)" = 0 ] || fail "pending after the read: $(status "$T/mnt" disk resync)"
wait_file "$T/go2.held" "the restamp to $g3"
scribble 45
resync_run "$T/mnt"
g4=$(source_gen)
[ "$g4" != "$g3" ] || fail "the source's generation did not move ($g3)"
pending=$(status "$T/mnt" disk resync.pending)
[ "$pending" -gt 0 ] || fail "the second resync left nothing to check"
touch "$T/go2"
for _ in $(seq 50); do
	[ "$(cache_gen 2)" = "$g3" ] && break
	sleep 0.1
done
[ "$(cache_gen 2)" = "$g3" ] ||
	fail "the cache says $(cache_gen 2), not $g3, whose chunks were all checked when the restamp was decided"
unmount_ferry "$T/mnt"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache2,compress=0,prefetch=0"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "the remount reads a chunk the second resync had left unchecked"
unmount_ferry "$T/mnt"
ok "a resync between the restamp's decision and its write: the cache says $g3 (decided), $pending chunks stay to check; the remount reads the new source"
# 3.
FERRYFS_TEST_PAUSE="reply:60:$T/go3" mount_ferry "$URL" "$T/mnt" \
	"cache=$T/cache3,compress=0,prefetch=0,views=raw"
cp "$T/disk.img" "$T/old.img"
python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
open(sys.argv[2], "wb").write(os.pread(fd, 128 << 10, 60 << 20))
' "$T/mnt/disk.raw" "$T/read3.bin" &
READER=$!
PIDS+=("$READER")
wait_file "$T/go3.held" "the reply of the read at 60 MiB"
fallocate -p -o $((60 * M)) -l 65536 "$T/disk.img"
head -c 65536 /dev/urandom |
	dd of="$T/disk.img" bs=65536 seek=$((60 * 16 + 1)) conv=notrunc status=none
echo resync >"$T/mnt/.ferry/control" || fail "resync refused"
# A resync that does not wait for the reply is done in well under this.
for _ in $(seq 30); do
	[ "$(jq -r .resync.state "$T/mnt/.ferry/status.json")" = done ] && break
	sleep 0.1
done
touch "$T/go3"
wait "$READER" || fail "the read at 60 MiB failed"
python3 -c '
import sys
got = open(sys.argv[1], "rb").read()
def at(p):
    with open(p, "rb") as f:
        f.seek(60 << 20)
        return f.read(128 << 10)
old, new = at(sys.argv[2]), at(sys.argv[3])
assert old != new
print("the held read is", "the old bytes" if got == old else "the new bytes" if got == new else "a MIX")
sys.exit(0 if got in (old, new) else 1)
' "$T/read3.bin" "$T/old.img" "$T/disk.img" || fail "the read held across the resync mixed generations"
resync_run "$T/mnt"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "after the resync the mount differs from the source"
unmount_ferry "$T/mnt"
ok "a reply held across a resync that punched and changed its bytes: one generation's bytes; the mount follows after"
echo "PASS"
