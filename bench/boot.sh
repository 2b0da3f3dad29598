#!/usr/bin/env bash
# Booting a view from a cold mount (root). A Debian minbase root filesystem
# (tests/rootfs.sh: debootstrap once, then kept) in the ext4 partition of a
# GPT disk image; qemu (TCG) boots it with the guest's kernel and
# initramfs, and init is a script that lists /usr, asks dpkg what is
# installed, prints a marker and powers off: a boot's worth of small reads
# scattered over the filesystem. Time from qemu's start to its exit, each
# row the median of RUNS boots, for:
#   - the image file itself (the floor);
#   - ferryfs's qcow2 view of it on a cold mount (fresh cache), served by
#     ferry-export over loopback: hydration off with -o smallread=0 (each
#     read waits for its whole chunk) and with small reads (the default),
#     with MiB fetched; then the default, hydrating while the guest boots;
#   - the same across a SHAPED_MBIT link (namespace, veth, MTU 1500, tbf).
# Usage: bench/boot.sh   Env: RUNS (3), SHAPED_MBIT (200; 0: no shaped
#   rows), LOOPBACK (1; 0: no loopback rows), EXTRA (more -o options for
#   every ferryfs row), SHOW_STATUS=1 (each cold mount's data, small reads and
#   chunks on stderr)
RUNS=${RUNS:-3}
LOOPBACK=${LOOPBACK:-1}
SHAPED_MBIT=${SHAPED_MBIT:-200}
. "$(dirname "$0")/lib.sh" qemu-system-x86_64 sgdisk mkfs.ext4 debootstrap jq bc ip tc
. tests/rootfs.sh
[ "$(id -u)" = 0 ] || { echo "needs root (debootstrap, namespaces)" >&2; exit 1; }
NS=ferryboot$$ VH=fbh$$ VS=fbs$$
HOSTIP=169.254.204.1 SRCIP=169.254.204.2
stop_export() {
	[ -n "$EPID" ] && kill "$EPID" 2>/dev/null && wait "$EPID" 2>/dev/null
	EPID=
}
bench_cleanup() {
	stop_export
	[ "$SHAPED_MBIT" = 0 ] || netns_down "$NS" "$VH"
}
wait_file() { for _ in $(seq 300); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }

boot_rootfs "$W" || exit 1
mkdir -p "$W/root" "$W/mnt"
tar -C "$W/root" -xf "$ROOTFS"
cat >"$W/root/sbin/ferry-boot" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
ls -lR /usr >/dev/null 2>&1
dpkg-query -W >/dev/null 2>&1
echo "ferry-boot: done" >/dev/console
echo o >/proc/sysrq-trigger
sleep 30
EOF
chmod +x "$W/root/sbin/ferry-boot"
cp "$(ls "$W"/root/boot/vmlinuz-* | head -1)" "$W/vmlinuz"
cp "$(ls "$W"/root/boot/initrd.img-* | head -1)" "$W/initrd"
truncate -s 1200M "$W/p1.img"
mkfs.ext4 -q -F -L root -d "$W/root" "$W/p1.img"
rm -rf "$W/root"
truncate -s 1280M "$W/disk.img"
sgdisk -n 1:2048:+1200M "$W/disk.img" >/dev/null
dd if="$W/p1.img" of="$W/disk.img" bs=1M seek=1 conv=sparse,notrunc status=none
rm -f "$W/p1.img"
qemu-img convert -O qcow2 "$W/disk.img" "$W/disk.qcow2"

boot() {	# image format -> seconds, or "failed"
	local t0 t
	: >"$W/console.log"
	t0=$(date +%s.%N)
	timeout 600 qemu-system-x86_64 -accel tcg -m 768 -smp 2 -nographic -no-reboot \
		-monitor none -serial "file:$W/console.log" \
		-kernel "$W/vmlinuz" -initrd "$W/initrd" \
		-append "root=/dev/vda1 ro console=ttyS0 init=/sbin/ferry-boot panic=-1 quiet" \
		-drive "file=$1,format=$2,if=virtio,snapshot=on" </dev/null >"$W/qemu.log" 2>&1
	t=$(echo "$(date +%s.%N) - $t0" | bc -l)
	grep -q "ferry-boot: done" "$W/console.log" && printf '%.1f' "$t" || echo failed
}
mount_cold() {	# options
	rm -rf "$W/cache"
	"$FERRYFS" -f -o "cache=$W/cache,views=qcow2,$1${EXTRA:+,$EXTRA}" "$URL" "$W/mnt" >/dev/null 2>>"$W/ferryfs.log" &
	FPID=$!
	wait_file "$W/mnt/.ferry/status.json" || { echo "ferryfs did not mount" >&2; exit 1; }
}
unmount() { fusermount3 -u "$W/mnt"; wait "$FPID" 2>/dev/null || true; FPID=; }
start_export() {	# address [netns prefix...]
	local addr=$1
	shift
	stop_export
	rm -f "$W/url"
	"$@" "$EXPORT" --listen "$addr:0" --url-file "$W/url" disk="$W/disk.img" >/dev/null 2>>"$W/export.log" &
	EPID=$!
	wait_file "$W/url" || { echo "ferry-export did not start" >&2; exit 1; }
	URL=$(cat "$W/url")
}
row() {	# label local|ferry OPTIONS -> median seconds, MiB fetched
	local label=$1 i v=() s fetched=-
	shift
	for i in $(seq "$RUNS"); do
		if [ "$1" = ferry ]; then
			mount_cold "$2"
			s=$(boot "$W/mnt/disk.qcow2" qcow2)
			case $2 in prefetch=0*) fetched=$(jq '.disks[0].data_bytes / 1048576 | floor' "$W/mnt/.ferry/status.json") ;; esac
			[ -n "${SHOW_STATUS:-}" ] && jq -c '.disks[0] | {data_bytes, small_reads, small_read_bytes, chunks_cached}' "$W/mnt/.ferry/status.json" >&2
			unmount
		else
			s=$(boot "$W/disk.qcow2" qcow2)
		fi
		[ "$s" = failed ] && { printf '%-50s %s\n' "$label" "did not boot: $(tail -3 "$W/console.log")"; return; }
		v+=("$s")
	done
	T=$(printf '%s\n' "${v[@]}" | median)
	printf '%-50s %8s %8.2f %9s\n' "$label" "$T" "$(echo "$T / ${LOCAL:-$T}" | bc -l)" "$fetched"
}

printf 'boot to a marker under qemu TCG, medians of %d boots; used %d MiB of %d\n' "$RUNS" \
	$(( $(du -B1 "$W/disk.img" | cut -f1) / M )) 1280
printf '%-50s %8s %8s %9s\n' "" "seconds" "x local" "MiB read"
LOCAL=
row "local file (qcow2 of the same disk)" local
LOCAL=$T
rows() {	# link label
	row "ferryfs, $1, prefetch=0,smallread=0" ferry prefetch=0,smallread=0
	row "ferryfs, $1, prefetch=0" ferry prefetch=0
	row "ferryfs, $1 (default: hydrating)" ferry prefetch=1
}
if [ "$LOOPBACK" != 0 ]; then
	start_export 127.0.0.1
	rows loopback
fi
if [ "$SHAPED_MBIT" != 0 ]; then
	netns_up "$NS" "$VH" "$VS" "$HOSTIP" "$SRCIP" "$SHAPED_MBIT"
	start_export "$SRCIP" ip netns exec "$NS"
	rows "$SHAPED_MBIT Mbit/s"
fi
printf '(%s CPUs, %s)\n' "$(nproc)" "$(uname -r)"
