#!/usr/bin/env bash
# One portable ferry-export: linked statically (ldd: not a dynamic
# executable), it serves a disk from inside an empty chroot that holds
# only the binary, the disk, /dev and /proc; a mount reads it equal, with
# its used-blocks map made inside the chroot. Then it dials a transit by
# name, resolved from the chroot's /etc/hosts with no NSS module to load.
. "$(dirname "$0")/functions.sh"
requires chroot cmp mkfs.ext4 jq
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (chroot, mount)"; exit 77; }

BIN=${FERRY_STATIC_EXPORT:-}
if [ -z "$BIN" ]; then
	BIN=$(bash "$FERRY_TESTS/../contrib/build-static-export.sh" "$T/build-static" 2>"$T/build.log" | tail -1) ||
		fail "contrib/build-static-export.sh: $(tail -5 "$T/build.log")"
fi
[ -x "$BIN" ] || fail "no static ferry-export at '$BIN'"
case $(LC_ALL=C ldd "$BIN" 2>&1) in	# (ldd exits 1 for a static binary)
*"not a dynamic executable"*) ;;
*) fail "ldd $BIN: $(ldd "$BIN" 2>&1)" ;;
esac
ok "ldd: not a dynamic executable ($(( $(stat -c %s "$BIN") / 1024 )) KiB)"

# The chroot: the binary, the disk, a /dev of four nodes (a tmpfs, so no
# rm below can ever reach the host's) and /proc.
R="$T/root"
mkdir -p "$R/dev" "$R/proc" "$R/etc"
test_cleanup() {
	umount "$R/proc" 2>/dev/null
	umount "$R/dev" 2>/dev/null
	if awk -v r="$R" 'index($2, r) == 1 {f = 1} END {exit !f}' /proc/mounts; then
		echo "note: $R still has mounts; $T kept" >&2
		KEEP_T=1
	fi
}
mount -t tmpfs -o size=1M,mode=0755 tmpfs "$R/dev" || fail "tmpfs on $R/dev"
for n in "null 1 3" "zero 1 5" "random 1 8" "urandom 1 9"; do
	set -- $n
	mknod -m 0666 "$R/dev/$1" c "$2" "$3" || fail "mknod $1"
done
mount -t proc proc "$R/proc" || fail "proc on $R/proc"
cp "$BIN" "$R/ferry-export"
mkdir -p "$T/files"
head -c 3M /dev/urandom >"$T/files/a.bin"
seq 1 200000 >"$T/files/numbers.txt"
truncate -s 64M "$R/disk.img"
mkfs.ext4 -q -F -d "$T/files" "$R/disk.img" || fail "mkfs.ext4"
[ "$(ls "$R")" = "$(printf 'dev\ndisk.img\netc\nferry-export\nproc')" ] || fail "the chroot holds more: $(ls "$R")"

chroot "$R" /ferry-export --listen 127.0.0.1:0 --url-file /url disk=/disk.img \
	>"$T/static.out" 2>"$T/static.log" &
PIDS+=($!)
for _ in $(seq 100); do
	[ -s "$R/url" ] && break
	sleep 0.1
done
[ -s "$R/url" ] || fail "the static ferry-export in the chroot did not start"
mount_ferry "$(cat "$R/url")" "$T/mnt" "cache=$T/cache"
wait_state "$T/mnt" disk complete 60
cmp "$T/mnt/disk.raw" "$R/disk.img" || fail "disk.raw from the chroot differs"
used=$(status "$T/mnt" disk used)
[ "$used" -lt $((32 * 1048576)) ] || fail "used $used of 64 MiB: no used-blocks map inside the chroot"
grep -q "ext4" "$T/static.log" || fail "the exporter logged no ext4 map: $(cat "$T/static.log")"
unmount_ferry "$T/mnt"
ok "served from an empty chroot: cmp equal; $((used / 1024)) KiB of 64 MiB used ($(grep -m1 ext4 "$T/static.log"))"

# --connect by name: /etc/hosts in the chroot, no nsswitch.conf, no
# libnss_*.so: evdns resolves it.
start_listen "$T/fleet" "cache=$T/fcache"
echo "127.0.0.1 transit.ferry.test" >"$R/etc/hosts"
sed "s/@127\.0\.0\.1:/@transit.ferry.test:/" "$CONNECT_FILE" >"$R/connect.url"
grep -q "@transit.ferry.test:$LISTEN_PORT/" "$R/connect.url" || fail "connection string: $(cat "$R/connect.url")"
chroot "$R" /ferry-export --connect @/connect.url --name chrooted disk=/disk.img \
	>"$T/static2.out" 2>"$T/static2.log" &
PIDS+=($!)
wait_source "$T/fleet" chrooted complete 60
cmp "$T/fleet/chrooted/disk.raw" "$R/disk.img" || fail "chrooted/disk.raw differs"
grep -q "connected to the transit transit.ferry.test" "$T/static2.log" || fail "log: $(cat "$T/static2.log")"
ok "--connect to transit.ferry.test (the chroot's /etc/hosts, no NSS): complete, cmp equal"
