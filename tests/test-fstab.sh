#!/usr/bin/env bash
# ferryfs from an fstab line, as mount(8) and systemd run it: the line in
# a private fstab (mount -T), type fuse with the binary named in the
# source (mount.fuse3's "PROGRAM#SOURCE" form, for a ferryfs not on the
# helper PATH), and the options fstab and systemd add (_netdev, nofail,
# noauto, user, x-systemd.*, comment=, defaults, rw) accepted and
# dropped; then the same options given to ferryfs by hand.
. "$(dirname "$0")/functions.sh"
requires mount umount cmp
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (mount)"; exit 77; }
command -v mount.fuse3 >/dev/null || [ -x /sbin/mount.fuse3 ] || { echo "SKIP: needs mount.fuse3"; exit 77; }

truncate -s 32M "$T/disk.img"
head -c 5M /dev/urandom | dd of="$T/disk.img" bs=1M seek=3 conv=notrunc status=none
start_export disk="$T/disk.img"
FS=$(cd "$(dirname "$FERRYFS")" && pwd)/$(basename "$FERRYFS")
OPTS=_netdev,nofail,noauto,user,x-systemd.automount,x-systemd.device-timeout=10,comment=ferry,defaults,rw
mkdir -p "$T/mnt"
MOUNTS+=("$T/mnt")
printf '%s#%s %s fuse %s,cache=%s 0 0\n' "$FS" "$URL" "$T/mnt" "$OPTS" "$T/cache" >"$T/fstab"
timeout 60 mount -T "$T/fstab" "$T/mnt" 2>"$T/mount.log" || fail "mount -T fstab: $(cat "$T/mount.log")"
is_mounted "$T/mnt" || fail "mount -T returned, but nothing is mounted"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "disk.raw from the fstab mount differs"
[ -f "$T/mnt/.ferry/status.json" ] || fail "no .ferry/status.json"
timeout 30 umount "$T/mnt" || fail "umount"
! is_mounted "$T/mnt" || fail "still mounted after umount"
ok "an fstab line ($OPTS) mounted with mount -T; cmp equal; umount"

# The same options straight to ferryfs (daemonized, as an fstab mount).
timeout 60 "$FERRYFS" -o "$OPTS,cache=$T/cache" "$URL" "$T/mnt" 2>"$T/ferryfs-direct.log" ||
	fail "ferryfs -o $OPTS: $(cat "$T/ferryfs-direct.log")"
cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "disk.raw differs"
timeout 30 umount "$T/mnt" || fail "umount"
ok "ferryfs -o $OPTS: accepted, cmp equal"

# An option that is neither ferry's nor fstab's is still refused.
rc=0
timeout 30 "$FERRYFS" -f -o "cache=$T/cache,no_such_option" "$URL" "$T/mnt" 2>"$T/bad.log" || rc=$?
[ "$rc" != 0 ] && ! is_mounted "$T/mnt" || fail "an unknown option was accepted"
grep -qi "unknown option" "$T/bad.log" || fail "no word of the unknown option: $(cat "$T/bad.log")"
ok "an unknown option is refused: $(grep -i -m1 "unknown option" "$T/bad.log")"

# mount -t fuse.ferryfs, as an fstab line with type fuse.ferryfs runs it:
# mount.fuse3 runs "ferryfs" by name, through a shell whose PATH mount(8)
# has cleared (dash's default then: /usr/local/sbin first). So in a
# private mount namespace of its own, this build's ferryfs is bound over
# /usr/local/sbin; nothing outside the namespace sees it.
if command -v unshare >/dev/null && [ -d /usr/local/sbin ]; then
	FSDIR=$(dirname "$FS")
	rc=0
	timeout 90 unshare -m --propagation private bash -c '
		set -u
		mount --bind "$1" /usr/local/sbin || exit 10
		trap "umount -l \"$3\" 2>/dev/null" EXIT
		mount -t fuse.ferryfs -o "$4" "$2" "$3" || exit 11
		grep -q " $3 .* - fuse.ferry" /proc/self/mountinfo || exit 12
		cmp "$3/disk.raw" "$5" || exit 13
		umount "$3" || exit 14
		' sh "$FSDIR" "$URL" "$T/mnt" "$OPTS,cache=$T/cache" "$T/disk.img" 2>"$T/mount-t.log" || rc=$?
	[ "$rc" = 0 ] || fail "mount -t fuse.ferryfs: step $rc failed: $(cat "$T/mount-t.log")"
	ok "mount -t fuse.ferryfs -o $OPTS: mounted by mount.fuse3, cmp equal, umount"
else
	echo "note: no unshare or /usr/local/sbin: mount -t fuse.ferryfs not tried"
fi
