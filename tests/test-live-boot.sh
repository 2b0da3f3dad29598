#!/usr/bin/env bash
# Boot what arrives. A minimal Debian root filesystem (debootstrap
# --variant=minbase plus a kernel) sits in the ext4 partition of a
# loop-device disk, mounted read-write on the source while the whole disk
# is exported. A marker is written on the source just before the final
# resync; then the mount's qcow2 view boots under qemu (TCG), with the
# guest's own kernel and initramfs read from the arrived partition view
# (debugfs), and an init script prints the marker on the serial console.
#
# The root filesystem is made once and kept as a tarball (tests/rootfs.sh).
# FERRY_SKIP_BOOT=1 skips this test (it takes minutes).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/serverdisk.sh"
. "$(dirname "$0")/rootfs.sh"
[ "${FERRY_SKIP_BOOT:-0}" = 1 ] && { echo "SKIP: FERRY_SKIP_BOOT=1"; exit 77; }
requires losetup sgdisk mkfs.ext4 debugfs fsfreeze jq qemu-system-x86_64 debootstrap
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (loop devices, debootstrap)"; exit 77; }

FROZEN=()
test_cleanup() {
	local m
	for m in "${FROZEN[@]}"; do
		fsfreeze -u "$m" 2>/dev/null
	done
	[ -n "${QEMU_PID:-}" ] && kill "$QEMU_PID" 2>/dev/null
	mountpoint -q "$T/src" 2>/dev/null && umount "$T/src"
	umount "$T/rootfs.new/proc" "$T/rootfs.new/sys" 2>/dev/null
	detach_loops
}

boot_rootfs "$T" || fail "no root filesystem to boot"

disk=$T/disk.img
truncate -s $((1280 * MiB)) "$disk"
sgdisk -n 1:2048:+1200M "$disk" >/dev/null || fail "sgdisk"
p1off=$((2048 * 512)) p1len=$((1200 * MiB))
loop_at "$disk" 0 $((1280 * MiB)) || fail "losetup"
dev=$LOOP
mkdir -p "$T/src"
loop_at "$disk" $p1off $p1len && mkfs.ext4 -q -F -L root "$LOOP" &&
	mount "$LOOP" "$T/src" || fail "ext4 on p1"
tar -C "$T/src" -xf "$ROOTFS" || fail "unpacking the root filesystem"
# PID 1 of the check: print the marker, power off. The console's write
# returns before the UART has sent the line, and sysrq's own message goes
# straight out, so the line gets time to drain first.
cat > "$T/src/sbin/ferry-check" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
echo "ferry-marker: $(cat /etc/ferry-marker 2>/dev/null || echo MISSING)" > /dev/console
sleep 2
echo o > /proc/sysrq-trigger
sleep 30
EOF
chmod +x "$T/src/sbin/ferry-check"
kernel=$(cd "$T/src/boot" && ls vmlinuz-* | head -1)
initrd=$(cd "$T/src/boot" && ls initrd.img-* | head -1)
[ -n "$kernel" ] && [ -n "$initrd" ] || fail "no kernel or initramfs in the root filesystem"
echo "before the transfer" > "$T/src/etc/ferry-marker"
sync

start_export srv="$dev"
mnt=$T/mnt
mount_ferry "$URL" "$mnt" "cache=$T/cache,views=raw,qcow2,parts"
wait_state "$mnt" srv complete 600
# The server runs on: a package-manager-like write, then the cutover.
head -c $((20 * MiB)) /dev/urandom > "$T/src/var/cache/late.bin"
marker="arrived $RANDOM$RANDOM at $(date +%s)"
echo "$marker" > "$T/src/etc/ferry-marker"
sync
fsfreeze -f "$T/src" || fail "fsfreeze"
FROZEN+=("$T/src")
resync_mount "$mnt" srv 600
fsfreeze -u "$T/src"
FROZEN=()

debugfs -R "dump /boot/$kernel $T/vmlinuz" "$mnt/srv.p1.raw" 2>/dev/null &&
	debugfs -R "dump /boot/$initrd $T/initrd" "$mnt/srv.p1.raw" 2>/dev/null &&
	[ -s "$T/vmlinuz" ] && [ -s "$T/initrd" ] || fail "the kernel is not on the arrived disk"
cmp -s "$T/vmlinuz" "$T/src/boot/$kernel" || fail "the arrived kernel differs"
ok "arrived: $(( $(status "$mnt" srv used) / MiB )) MiB used; kernel $kernel read from the partition view"

# The qcow2 view, booted; writes (the journal's replay) go to a snapshot.
t0=$SECONDS
timeout 900 qemu-system-x86_64 -accel tcg -m 768 -smp 2 -nographic -no-reboot \
	-monitor none -serial "file:$T/console.log" \
	-kernel "$T/vmlinuz" -initrd "$T/initrd" \
	-append "root=/dev/vda1 rw console=ttyS0 init=/sbin/ferry-check panic=-1 quiet" \
	-drive "file=$mnt/srv.qcow2,format=qcow2,if=virtio,snapshot=on" \
	</dev/null >"$T/qemu.log" 2>&1 &
QEMU_PID=$!
wait "$QEMU_PID"
rc=$?
QEMU_PID=
# Kernel messages can still land inside the marker's line ("ferry-marker:
# ar[   12.73] sysrq: Power Off\nrived ..."); they are taken out before the
# marker, which must be whole, is looked for.
tr -d '\r' <"$T/console.log" | perl -0pe 's/\[ *[0-9]+\.[0-9]+\] [^\n]*\n//g' |
	grep -qF "ferry-marker: $marker" ||
	fail "the booted guest did not print the marker (qemu exit $rc): $(tail -20 "$T/console.log")"
ok "the qcow2 view booted under qemu (TCG, $((SECONDS - t0)) s) and the guest printed the marker written just before the final resync"
unmount_ferry "$mnt"
echo "PASS"
