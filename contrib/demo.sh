#!/usr/bin/env bash
# ferry end to end on this machine, with nothing to configure:
#   1. install the build dependencies (Debian packages) and build ferry
#   2. generate a 256 MiB sample disk (random data, text, holes)
#   3. export it with ferry-export on 127.0.0.1 (TLS, token, key pin)
#   4. mount it with ferryfs (lazy fetch + background hydration)
#   5. convert the mounted disk with ferry-convert to qcow2 while it
#      arrives, with --verify (SHA-256 of the disk), and compare it
#   6. check the qcow2 and VHD views of the same disk with qemu-img
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

say "generating a 256 MiB sample disk (sparse: random data, text, holes)"
M=1048576
truncate -s $((256 * M)) "$W/sample.img"
head -c $((48 * M)) /dev/urandom | dd of="$W/sample.img" bs=1M seek=0 conv=notrunc status=none
yes "ferry sample disk: a compressible line of text" | head -c $((32 * M)) |
	dd of="$W/sample.img" bs=1M seek=100 conv=notrunc status=none
head -c $((16 * M)) /dev/urandom | dd of="$W/sample.img" bs=1M seek=200 conv=notrunc status=none
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

say "converting from the mount while it hydrates: ferry-convert -O qcow2 --verify"
start=$(date +%s.%N)
"$CONVERT" -O qcow2 --verify -p "$W/mnt/sample.raw" "$W/sample.qcow2"
end=$(date +%s.%N)
echo "sha256sum of the source: $(sha256sum <"$W/sample.img" | cut -d' ' -f1)"
qemu-img info "$W/sample.qcow2" | grep -E 'virtual size|disk size'
printf 'converted in %.2f s\n' "$(echo "$end - $start" | bc -l 2>/dev/null || echo 0)"

say "verifying: qemu-img compare source vs qcow2, and the raw view"
qemu-img compare -f raw -F qcow2 "$W/sample.img" "$W/sample.qcow2"
cmp "$W/mnt/sample.raw" "$W/sample.img" && echo "raw view identical to the source"

say "the image views: sample.qcow2 and sample.vhd are images of the disk, as files"
qemu-img check "$W/mnt/sample.qcow2" | head -1
qemu-img compare -f raw -F qcow2 "$W/sample.img" "$W/mnt/sample.qcow2"
qemu-img compare -f raw -F vpc "$W/sample.img" "$W/mnt/sample.vhd"
echo "sizes: raw $(stat -c %s "$W/mnt/sample.raw"), qcow2 view $(stat -c %s "$W/mnt/sample.qcow2"), VHD view $(stat -c %s "$W/mnt/sample.vhd") bytes"

say "status (.ferry/status.json)"
jq -c '.disks[] | {name, size, allocated, cached, data_bytes, state}' \
	"$W/mnt/.ferry/status.json"
echo
echo "only allocated bytes crossed the wire: $(jq '.disks[0].data_bytes' \
	"$W/mnt/.ferry/status.json") of $(stat -c %s "$W/sample.img") bytes"
