#!/usr/bin/env bash
# ferry end to end on this machine, with nothing to configure:
#   1. install the build dependencies (Debian packages) and build ferry
#   2. generate a 256 MiB sample server disk (GPT, ext4 with files, deleted
#      data in its free space, a boot loader's bytes; no root needed)
#   3. export it with ferry-export on 127.0.0.1 (TLS, token, key pin)
#   4. mount it with ferryfs (lazy fetch + background hydration)
#   5. convert the mounted disk with ferry-convert to qcow2 while it
#      arrives, with --verify (SHA-256 of the disk), and compare it
#   6. check that only used blocks crossed, the filesystem is clean and
#      holds the source's files, and the qcow2 and VHD views with qemu-img
# Everything lives in a temporary directory that is removed at the end
# (FERRY_DEMO_KEEP=1 keeps it).
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)

say() { printf '\n== %s\n' "$*"; }

say "installing dependencies and building"
bash contrib/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
EXPORT=$top/build/tools/export/ferry-export
FERRYFS=$top/build/fs/ferryfs
CONVERT=$top/build/tools/convert/ferry-convert

W=$(mktemp -d "${TMPDIR:-/tmp}/ferry-demo.XXXXXX")
EPID= FPID=
cleanup() {
	mountpoint -q "$W/mnt" 2>/dev/null && fusermount3 -u "$W/mnt"
	[ -n "$FPID" ] && wait "$FPID" 2>/dev/null
	[ -n "$EPID" ] && kill "$EPID" 2>/dev/null && wait "$EPID" 2>/dev/null
	[ "${FERRY_DEMO_KEEP:-0}" = 1 ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT

say "generating a 256 MiB sample server disk: GPT, an ext4 partition with"
echo "   40 MiB of files, 96 MiB of deleted data in its free space, and a boot"
echo "   loader's bytes in the gap before the partition"
M=1048576
mkdir -p "$W/files/etc" "$W/files/data"
head -c $((24 * M)) /dev/urandom > "$W/files/data/random.bin"
yes "log line of a running server: 0123456789 abcdefghij" | head -c $((16 * M)) \
	> "$W/files/data/app.log"
cp /etc/os-release "$W/files/etc/"
truncate -s $((256 * M)) "$W/sample.img"
head -c $((96 * M)) /dev/urandom |	# what deleted files leave behind
	dd of="$W/sample.img" bs=1M seek=100 conv=notrunc status=none
head -c $((256 * 1024)) /dev/urandom |	# a boot loader after the GPT
	dd of="$W/sample.img" bs=64K seek=1 conv=notrunc status=none
sgdisk -n 1:2048:0 "$W/sample.img" >/dev/null
mkfs.ext4 -q -F -E offset=$M,nodiscard -d "$W/files" "$W/sample.img" 254M
ls -ls "$W/sample.img"

say "exporting it: ferry-export --listen 127.0.0.1:0 sample=$W/sample.img"
"$EXPORT" --listen 127.0.0.1:0 --url-file "$W/url" sample="$W/sample.img" \
	>/dev/null 2>"$W/export.log" &
EPID=$!
for _ in $(seq 50); do [ -s "$W/url" ] && break; sleep 0.1; done
URL=$(cat "$W/url")
echo "connection string: $URL"

say "mounting it: ferryfs $W/mnt"
mkdir -p "$W/mnt"
"$FERRYFS" -f -o cache="$W/cache" "$URL" "$W/mnt" 2>"$W/ferryfs.log" &
FPID=$!
for _ in $(seq 50); do [ -f "$W/mnt/.ferry/status.json" ] && break; sleep 0.1; done
ls -l "$W/mnt"

say "what the exporter maps (ferry-export --print-map)"
"$EXPORT" --print-map sample="$W/sample.img" 2>/dev/null |
	jq -c '.[0] | {size, allocated, used}, (.volumes[] | {where, type, used, map})'

say "converting from the mount while it hydrates: ferry-convert -O qcow2 --verify"
start=$(date +%s.%N)
"$CONVERT" -O qcow2 --verify -p "$W/mnt/sample.raw" "$W/sample.qcow2"
end=$(date +%s.%N)
echo "(the SHA-256 is of the disk as served: the source with its free space zeroed)"
qemu-img info "$W/sample.qcow2" | grep -E 'virtual size|disk size'
printf 'converted in %.2f s\n' "$(echo "$end - $start" | bc -l 2>/dev/null || echo 0)"

say "verifying: the image equals the mounted disk; the filesystem is clean and"
echo "   holds the source's files; the tables and the boot loader crossed as they are"
qemu-img compare -f raw -F qcow2 "$W/mnt/sample.raw" "$W/sample.qcow2"
e2fsck -fn "$W/mnt/sample.p1.raw" >"$W/fsck.log" 2>&1	# set -e: stops if not clean
tail -1 "$W/fsck.log"
for f in data/random.bin data/app.log etc/os-release; do
	debugfs -R "dump /$f $W/out" "$W/mnt/sample.p1.raw" 2>/dev/null
	cmp "$W/out" "$W/files/$f"
	echo "/$f: identical"
done
cmp -n $M "$W/mnt/sample.raw" "$W/sample.img"
echo "first MiB (GPT, boot loader): identical"

say "the image views: sample.qcow2 and sample.vhd are images of the disk, as files"
qemu-img check "$W/mnt/sample.qcow2" | head -1
qemu-img compare -f raw -F qcow2 "$W/mnt/sample.raw" "$W/mnt/sample.qcow2"
qemu-img compare -f raw -F vpc "$W/mnt/sample.raw" "$W/mnt/sample.vhd"
echo "sizes: raw $(stat -c %s "$W/mnt/sample.raw"), qcow2 view $(stat -c %s "$W/mnt/sample.qcow2"), VHD view $(stat -c %s "$W/mnt/sample.vhd") bytes"

say "status (.ferry/status.json)"
jq -c '.disks[] | {name, size, allocated, used, cached, data_bytes, wire_bytes, state}' \
	"$W/mnt/.ferry/status.json"
echo
echo "only the filesystem's used blocks crossed: $(jq '.disks[0].data_bytes' \
	"$W/mnt/.ferry/status.json") of $(stat -c %s "$W/sample.img") bytes; the deleted data did not"
