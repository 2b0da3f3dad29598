# A minimal Debian root filesystem to boot (sourced by tests/test-live-boot.sh
# and bench/boot.sh): debootstrap --variant=minbase plus a kernel, made once
# and kept as a tarball in $FERRY_BOOT_CACHE (default /var/cache/ferry-tests).
# debootstrap needs Debian's mirror: the one apt uses here, which CI
# reaches too, or $FERRY_DEBIAN_MIRROR.
BOOT_CACHE=${FERRY_BOOT_CACHE:-/var/cache/ferry-tests}
ROOTFS=$BOOT_CACHE/rootfs-bookworm-minbase.tar

# boot_rootfs WORKDIR: make $ROOTFS if it is not there yet (minutes).
# @return 0, or 1 with the reason on stderr.
boot_rootfs() {
	local work=$1/rootfs.new try mirror
	[ -s "$ROOTFS" ] && return 0
	mirror=$(sed -n 's|^URIs: *\(http[^ ]*/debian\)/*$|\1|p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
	mirror=${FERRY_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}
	mkdir -p "$BOOT_CACHE"
	echo "making $ROOTFS (debootstrap from $mirror, once)" >&2
	for try in 1 2; do
		rm -rf "$work"
		timeout 1200 debootstrap --variant=minbase --include=linux-image-amd64 \
			bookworm "$work" "$mirror" >"$1/debootstrap.log" 2>&1 && break
		umount "$work/proc" "$work/sys" 2>/dev/null
		if [ "$try" = 2 ]; then
			echo "debootstrap: $(tail -5 "$1/debootstrap.log")" >&2
			rm -rf "$work"
			return 1
		fi
	done
	tar -C "$work" --one-file-system -cf "$ROOTFS.$$" . &&
		mv "$ROOTFS.$$" "$ROOTFS" || { rm -rf "$ROOTFS.$$" "$work"; echo "tar of the root filesystem failed" >&2; return 1; }
	rm -rf "$work"
}
