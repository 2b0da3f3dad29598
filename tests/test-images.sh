#!/usr/bin/env bash
# Disk images as sources: qcow2 (v2, v3, compressed, over a qcow2 backing
# image), VHD (dynamic, fixed), VHDX and VMDK (monolithicSparse,
# monolithicFlat) made by qemu-img from one raw disk. Exported by
# ferry-export and mounted, and mounted locally as file://, the raw view
# equals the raw disk; with --scan-zeros the sparse views follow the data.
# Truncated and corrupted images give a clear error naming the file, never
# a crash, and never wrong bytes.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io jq cmp python3 curl

M=1048576
make_disk "$T/disk.img"
SIZE=$(stat -c %s "$T/disk.img")
(
	cd "$T" || exit 1
	qemu-img convert -O qcow2 -o compat=0.10 disk.img v2.qcow2 &&
	qemu-img convert -O qcow2 disk.img v3.qcow2 &&
	qemu-img convert -c -O qcow2 disk.img comp.qcow2 &&
	qemu-img convert -O vpc disk.img dyn.vhd &&
	qemu-img convert -O vpc -o subformat=fixed disk.img fixed.vhd &&
	qemu-img convert -O vhdx disk.img disk.vhdx &&
	qemu-img convert -O vmdk disk.img sparse.vmdk &&
	qemu-img convert -O vmdk -o subformat=monolithicFlat disk.img flat.vmdk &&
	qemu-img convert -O qcow2 disk.img base.qcow2 &&
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 over.qcow2 &&
	qemu-io -c "write -P 0x55 1M 64K" -c "write -P 0 48M 1M" -c "write -z 40M 1M" over.qcow2 >/dev/null &&
	qemu-img create -q -f qcow2 -b disk.img -F raw rawback.qcow2
) || fail "qemu-img could not make the images"
# What over.qcow2 holds: the raw disk with the same two writes.
cp "$T/disk.img" "$T/over.want"
python3 - "$T/over.want" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"\x55" * 65536, 1 << 20)
os.pwrite(fd, bytes(1 << 20), 48 << 20)
os.pwrite(fd, bytes(1 << 20), 40 << 20)   # zero clusters over the backing data
PY
IMAGES="v2.qcow2 v3.qcow2 comp.qcow2 dyn.vhd fixed.vhd disk.vhdx sparse.vmdk flat.vmdk over.qcow2"

# same_disk FILE WANT: FILE holds WANT, then only zeros (image formats
# round the virtual size up to whole sectors or VHD's geometry).
same_disk() {
	cmp -n "$(stat -c %s "$2")" "$1" "$2" || return 1
	python3 - "$1" "$(stat -c %s "$2")" <<'PY'
import os, sys
with open(sys.argv[1], "rb") as f:
    f.seek(int(sys.argv[2]))
    while (b := f.read(1 << 20)):
        assert not any(b), "non-zero bytes past the disk"
PY
}

want_of() { [ "$1" = over.qcow2 ] && echo "$T/over.want" || echo "$T/disk.img"; }
name_of() { echo "${1%%.*}_${1##*.}"; }

# Exported: one exporter for all, zeros scanned up front.
args=()
for f in $IMAGES; do args+=("$(name_of "$f")=$T/$f"); done
start_export --scan-zeros "${args[@]}"
grep -q "qcow2 image" "$T/export.log" || fail "the exporter did not read qcow2 as an image: $(cat "$T/export.log")"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,views=raw:qcow2"
for f in $IMAGES; do
	n=$(name_of "$f")
	same_disk "$T/mnt/$n.raw" "$(want_of "$f")" || fail "exported $f: the raw view differs"
	vsize=$(stat -c %s "$T/mnt/$n.qcow2")
	[ "$vsize" -lt $((SIZE / 2)) ] || fail "exported $f: NAME.qcow2 is $vsize bytes for a disk of $SIZE with ~85 MiB of data"
	ok "exported $f: raw view equals the disk; its qcow2 view is $((vsize / M)) MiB of $((SIZE / M))"
done
# Read right the first time, not mended by the digests: libqcow gives the
# backing image's bytes for the rest of a read that starts in a cluster
# over.qcow2 does not store (the exporter reads a chain by cluster).
[ "$(status "$T/mnt" over_qcow2 digest_mismatches)" = 0 ] ||
	fail "over.qcow2: $(status "$T/mnt" over_qcow2 digest_mismatches) chunks differed from their digests"
curl -sfk -H "Authorization: Bearer $TOKEN" -r $((M - 4096))-$((M + 4095)) \
	"https://$HOSTPORT/v1/disks/over_qcow2" -o "$T/cross" || fail "over.qcow2: range request failed"
cmp "$T/cross" <(tail -c +$((M - 4096 + 1)) "$T/over.want" | head -c 8192) ||
	fail "over.qcow2: a read from a backing cluster into its own differs"
ok "over.qcow2: no digest mismatch; a read from a backing cluster into its own is right"
unmount_ferry "$T/mnt"

# An image named relative to the exporter's directory (libvmdk is told the
# directory its extents sit in).
pushd "$T" >/dev/null || fail "cd $T"
start_export rel=sparse.vmdk
popd >/dev/null || fail "cd -"
curl -sfk -H "Authorization: Bearer $TOKEN" -r 0-$((8 * M - 1)) \
	"https://$HOSTPORT/v1/disks/rel" -o "$T/rel" || fail "sparse.vmdk by a relative path: $(tail -2 "$T/export.log")"
cmp "$T/rel" <(head -c $((8 * M)) "$T/disk.img") || fail "sparse.vmdk by a relative path: bytes differ"
ok "sparse.vmdk exported by a relative path"

# Local: file:// of each image, the cache off (and on, for one).
for f in $IMAGES; do
	mount_ferry "file://$T/$f" "$T/mnt" "cache=none,views=raw"
	raw=$(ls "$T/mnt" | grep '\.raw$')
	same_disk "$T/mnt/$raw" "$(want_of "$f")" || fail "file://$f: the raw view differs"
	[ "$(jq -r .cache "$T/mnt/.ferry/status.json")" = none ] || fail "file://$f: a cache was used"
	unmount_ferry "$T/mnt"
done
# qcow2 and dynamic VHD allocation comes from their tables, even without
# a zero scan: the mount's allocated bytes are what qemu-img map says the
# image (chain) holds.
for f in v3.qcow2 v2.qcow2 over.qcow2 dyn.vhd; do
	mount_ferry "file://$T/$f" "$T/mnt" "cache=none,views=raw"
	got=$(status "$T/mnt" "${f%.*}" allocated)
	want=$(qemu-img map --output=json "$T/$f" | jq '[.[] | select(.data) | .length] | add')
	[ "$got" = "$want" ] || fail "$f: allocated $got, qemu-img map says $want"
	unmount_ferry "$T/mnt"
done
ok "allocation from qcow2's L1/L2 tables and VHD's block table: equal to qemu-img map's data (qcow2 v3, v2, over a backing image; dynamic VHD)"
mount_ferry "file://$T/over.qcow2" "$T/mnt" "cache=$T/cache-local"
same_disk "$T/mnt/over.raw" "$T/over.want" || fail "file://over.qcow2 (cached): the raw view differs"
qemu-img compare -q -f qcow2 -F raw "$T/mnt/over.qcow2" "$T/over.want" || fail "file://over.qcow2: its qcow2 view differs"
unmount_ferry "$T/mnt"
ok "file:// mounts of all $(echo $IMAGES | wc -w) images (cache=none, and one cached): raw views equal the disk"
mkdir -p "$T/nc"
rc=0
timeout 30 "$FERRYFS" -f -o cache=none "$URL" "$T/nc" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "cache=none is for file://" "$T/err" || fail "cache=none on a remote source: exit $rc: $(cat "$T/err")"
ok "cache=none refused for a remote source"

# --format forces: a qcow2 served as raw is its container file.
start_export --format raw q="$T/v3.qcow2"
code=$(api /v1/disks/q)
[ "$code" = 200 ] && cmp -s "$T/body" "$T/v3.qcow2" || fail "--format raw did not serve the file itself ($code)"
ok "--format raw serves the container bytes"

# GET /v1/info and .ferry/source.json: the host and each disk's format
# and partition table (a GPT inside a qcow2, an MBR inside a VHD).
if command -v sfdisk >/dev/null; then
	truncate -s $((64 * M)) "$T/gpt.img" "$T/mbr.img"
	printf 'label: gpt\nstart=2048, size=40000\n' | sfdisk -q "$T/gpt.img" >/dev/null
	printf 'label: dos\nstart=2048, size=20000, type=83\nstart=24000, size=20000, type=7\n' | sfdisk -q "$T/mbr.img" >/dev/null
	qemu-img convert -O qcow2 "$T/gpt.img" "$T/gpt.qcow2"
	qemu-img convert -O vpc "$T/mbr.img" "$T/mbr.vhd"
	start_export g="$T/gpt.qcow2" m="$T/mbr.vhd"
	[ "$(api /v1/info)" = 200 ] || fail "GET /v1/info: $(cat "$T/body")"
	. /etc/os-release
	boot=BIOS; [ -e /sys/firmware/efi ] && boot=UEFI
	jq -e --arg h "$(hostname)" --arg id "$ID" --arg arch "$(uname -m)" --arg k "$(uname -r)" --arg boot "$boot" '
		.host.hostname == $h and .host.os.ID == $id and .host.architecture == $arch and
		.host.kernel == $k and .host.boot == $boot and
		(.disks | map({(.name): [.format, .partition_table, (.partitions | length)]}) | add) ==
			{"g": ["qcow2", "gpt", 1], "m": ["vhd", "mbr", 2]}' "$T/body" >/dev/null ||
		fail "GET /v1/info: $(cat "$T/body")"
	mount_ferry "$URL" "$T/mnt" "cache=$T/cache-info,views=raw"
	jq -e --slurpfile w "$T/body" '.disks == $w[0].disks and .host == $w[0].host' "$T/mnt/.ferry/source.json" >/dev/null ||
		fail "source.json: $(cat "$T/mnt/.ferry/source.json")"
	unmount_ferry "$T/mnt"
	mount_ferry "file://$T/mbr.vhd" "$T/mnt" "cache=$T/cache-info2,views=raw"
	jq -e '.host == null and .disks[0].partition_table == "mbr"' "$T/mnt/.ferry/source.json" >/dev/null ||
		fail "file:// source.json: $(cat "$T/mnt/.ferry/source.json")"
	unmount_ferry "$T/mnt"
	ok "GET /v1/info and .ferry/source.json: $(jq -c '.host | {hostname, os: .os.PRETTY_NAME, kernel, architecture, boot}' "$T/body")"
fi

# A qcow2 over a raw backing file: libqcow cannot; a clear refusal.
rc=0
timeout 30 "$FERRY_EXPORT" --listen 127.0.0.1:0 r="$T/rawback.qcow2" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "rawback.qcow2: its parent .*disk.img is not a qcow2 image" "$T/err" ||
	fail "raw backing: exit $rc: $(cat "$T/err")"
ok "qcow2 over a raw backing file refused: $(head -1 "$T/err")"

# Encrypted qcow2: refused, saying so. LUKS first; qemu-img times its
# PBKDF2 on the thread's CPU clock and fails ("Unable to get accurate CPU
# usage") when that reads 0 ms, which happens on some machines. So try it
# thrice, then legacy AES (method 1), then a plain qcow2 whose header's
# crypt_method (big-endian u32 at byte 32) is set to 1: the refusal must
# come from the header in every case.
enc=
for try in 1 2 3; do
	qemu-img create -q -f qcow2 --object secret,id=sec0,data=ferry-test \
		-o encrypt.format=luks,encrypt.key-secret=sec0 "$T/enc.qcow2" 16M 2>"$T/err" &&
		{ enc=luks; break; }
done
[ -n "$enc" ] || ! qemu-img create -q -f qcow2 --object secret,id=sec0,data=ferry-test \
	-o encrypt.format=aes,encrypt.key-secret=sec0 "$T/enc.qcow2" 16M 2>>"$T/err" || enc=aes
if [ -z "$enc" ]; then
	qemu-img create -q -f qcow2 "$T/enc.qcow2" 16M || fail "qemu-img: qcow2 to mark encrypted"
	printf '\0\0\0\1' | dd of="$T/enc.qcow2" bs=1 seek=32 conv=notrunc status=none
	enc="header crypt_method=1 (qemu-img: $(tail -1 "$T/err"))"
fi
rc=0
timeout 30 "$FERRY_EXPORT" --listen 127.0.0.1:0 e="$T/enc.qcow2" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "enc.qcow2: the qcow image is encrypted" "$T/err" || fail "encrypted: exit $rc: $(cat "$T/err")"
ok "encrypted qcow2 ($enc) refused: $(head -1 "$T/err")"

# Damaged images: truncated, or a header byte flipped. Either refused
# with the file named, or served: then every byte read is right or the
# read fails; the exporter never crashes.
damage() {	# damage SRC DST KIND
	case $3 in
	truncate) head -c 4096 "$1" >"$2" ;;
	tail) head -c $(( $(stat -c %s "$1") - 4096 )) "$1" >"$2" ;;
	flip) cp "$1" "$2"; printf '\377' | dd of="$2" bs=1 seek="$4" conv=notrunc status=none ;;
	esac
}
n=0
for spec in v3.qcow2:truncate v3.qcow2:flip:20 v3.qcow2:flip:44 dyn.vhd:truncate dyn.vhd:tail \
	    dyn.vhd:flip:520 fixed.vhd:tail sparse.vmdk:truncate sparse.vmdk:flip:20 disk.vhdx:truncate; do
	IFS=: read -r f kind at <<<"$spec"
	bad=$T/bad-$n-$f
	damage "$T/$f" "$bad" "$kind" "$at"
	n=$((n + 1))
	rc=0
	timeout 60 "$FERRY_EXPORT" --listen 127.0.0.1:0 --url-file "$T/bad.url" x="$bad" >/dev/null 2>"$T/bad.err" &
	pid=$!
	for _ in $(seq 50); do
		[ -s "$T/bad.url" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if [ -s "$T/bad.url" ]; then
		# It opened: reads must be right or fail, and it must live.
		URL2=$(cat "$T/bad.url"); rm -f "$T/bad.url"
		tok=${URL2#ferry://}; tok=${tok%%@*}; hp=${URL2#*@}; hp=${hp%%/*}
		curl -sk -o "$T/bad.out" -H "Authorization: Bearer $tok" "https://$hp/v1/disks/x" || true
		kill -0 "$pid" 2>/dev/null || fail "$spec: the exporter died serving it"
		kill "$pid"; wait "$pid" || rc=$?
		[ "$rc" -lt 128 ] || [ "$rc" = 143 ] || fail "$spec: exit $rc"
		ok "$spec: opened; served without crashing"
	else
		wait "$pid" || rc=$?
		[ "$rc" = 1 ] || fail "$spec: exit $rc (a crash?): $(cat "$T/bad.err")"
		grep -q "$bad" "$T/bad.err" || fail "$spec: the message does not name the file: $(cat "$T/bad.err")"
		ok "$spec: refused, exit 1: $(grep -m1 "$bad" "$T/bad.err")"
	fi
done
