#!/bin/bash
# The view layouts, checked by real image readers on many shapes of disk,
# without a mount: view-render writes each view of a local raw file through
# the same layout code ferryfs serves, then qemu-img check/compare, qcowinfo
# and vhdiinfo must accept it and read the disk back.
. "$(dirname "$0")/functions.sh"
requires qemu-img qcowinfo vhdiinfo
: "${VIEW_RENDER:?set by meson}"

M=$((1024 * 1024))
rnd() { head -c "$1" /dev/urandom; }

# name size-in-bytes, then writes: offset:length ...
shape() {
	local f="$T/$1.raw" w
	rm -f "$f" && truncate -s "$2" "$f"
	shift 2
	for w in "$@"; do
		rnd "${w#*:}" | dd of="$f" oflag=seek_bytes seek="${w%%:*}" conv=notrunc status=none
	done
}

shape empty $((1024 * M))
shape full $((8 * M)) 0:$((8 * M))
shape straddle $((5 * M + 1000)) $((2 * M - 10)):20 $((64 * 1024 - 10)):20 $((5 * M + 500)):500
shape tiny 1000 100:800
shape scattered $((300 * M + 4096)) 0:4096 $((100 * M)):$((3 * M + 7)) $((299 * M)):$((M + 4096))

for s in empty full straddle tiny scattered; do
	src="$T/$s.raw"
	size=$(stat -c %s "$src")
	vsize=$(( (size + 511) / 512 * 512 ))	# images count whole sectors
	for bits in 9 16 21; do
		"$VIEW_RENDER" qcow2 "$src" "$T/v.qcow2" "$bits" >/dev/null || fail "render $s qcow2/$bits"
		qemu-img check "$T/v.qcow2" > "$T/check" 2>&1 || fail "qemu-img check $s/$bits: $(cat "$T/check")"
		qemu-img compare -f raw -F qcow2 "$src" "$T/v.qcow2" >/dev/null || fail "$s qcow2/$bits differs"
		[ "$(qemu-img info --output=json "$T/v.qcow2" | jq '."virtual-size"')" = "$vsize" ] || fail "$s qcow2 size"
	done
	grep -q "Media size.*($vsize bytes)" <<<"$(qcowinfo "$T/v.qcow2")" || fail "qcowinfo $s: $(qcowinfo "$T/v.qcow2")"
	for v in vhd fixedvhd; do
		"$VIEW_RENDER" "$v" "$src" "$T/v.$v" >/dev/null || fail "render $s $v"
		qemu-img compare -f raw -F vpc "$src" "$T/v.$v" >/dev/null 2>&1 || fail "$s $v differs"
		[ "$(qemu-img info -f vpc --output=json "$T/v.$v" | jq '."virtual-size"')" = "$vsize" ] || fail "$s $v size"
		grep -q "Media size.*($vsize bytes)" <<<"$(vhdiinfo "$T/v.$v")" || fail "vhdiinfo $s $v: $(vhdiinfo "$T/v.$v")"
	done
	ok "$s ($size bytes): qcow2 with 512 B, 64 KiB and 2 MiB clusters, VHD and fixed VHD"
done
