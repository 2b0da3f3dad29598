#!/usr/bin/env bash
# A whole migration over the links users have (root): the source in a
# network namespace behind a veth pair, MTU 1500, shaped by tc tbf both
# ways, at each RATE (Mbit/s). The source disk is tests/serverdisk.sh's
# server disk (GPT: FAT, ext4 4K and 1K, XFS, NTFS, swap, an LVM2 PV with
# an ext4 LV; deleted random files in each). Per rate, in one run, the
# time from start to a finished qcow2 on the transit host, bytes on the
# wire and CPU seconds on each side (cgroup cpuacct), for:
#   1. ferry: ferry-export in the namespace, ferryfs mount plus
#      ferry-convert -O qcow2 on the transit (convert while data arrives)
#   2. the same with -o compress=0
#   3. dd of the whole disk through ssh, then qemu-img convert
#   4. partclone -c of each filesystem through ssh (used blocks only; the
#      LVM PV and swap are left out, to partclone's advantage), restored
#      into a sparse disk of the same GPT layout, then qemu-img convert
#   5. nginx in the namespace serving the image over HTTPS; nbdkit's curl
#      plugin and nbdcopy to a raw file, then qemu-img convert
# and the ratio of each to ferry's time, and ferry's time against the
# floor: bytes that must cross (the disk's used bytes) over the link rate,
# and against what one plain TCP stream takes to carry those bytes over
# the same link (its framing alone costs 4.5 % of the rate). The clock of
# a row runs from the first command to its finished image; removing the
# last row's files, unmounting, deleting a temporary raw file are outside.
# Usage: bench/link.sh [RATES="1000 200"]   Env: ROWS (default: all five,
#   ferry_default ferry_plain dd_ssh partclone_ssh nbd_https; ferry_default
#   always first), RUNS (3: each row's figures are those of its median
#   run; this machine is shared and a single run may be 1.3 x slower),
#   KEEP_W=1 keeps the work directory, TRACE=1 prints each ferry run's
#   timeline (wire, transit disk, image) every 50 ms
RATES=${1:-1000 200}
RUNS=${RUNS:-3}
need="sshd nbdkit nbdcopy nginx partclone.extfs qemu-img"
missing=
for p in $need; do command -v "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ "$(id -u)" = 0 ] && [ -n "$missing" ]; then
	echo "bench/link.sh: installing (missing:$missing)" >&2
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get update -q && apt-get install -y -q --no-install-recommends \
		openssh-server openssh-client nbdkit libnbd-bin nginx-light \
		partclone qemu-utils; } >/dev/null 2>&1 || true
fi
bash "$(dirname "$0")/../contrib/install-deps.sh" >&2	# mkfs tools, mtools, lvm2
. "$(dirname "$0")/lib.sh" ip tc ssh ssh-keygen /usr/sbin/sshd nbdkit nbdcopy \
	nginx openssl qemu-img jq bc losetup sgdisk partclone.extfs partclone.xfs \
	partclone.ntfs partclone.fat
. tests/serverdisk.sh
[ "$(id -u)" = 0 ] || { echo "needs root (namespaces, tc, loop devices)" >&2; exit 1; }
CONVERT=$B/tools/convert/ferry-convert
NS=ferrylink$$
VH=flh$$ VS=fls$$
HOSTIP=169.254.201.1 SRCIP=169.254.201.2
CG=/sys/fs/cgroup/cpuacct
SPIDS=()
bench_cleanup() {	# (under set -e: every step may fail, none stops the rest)
	local p g t
	for p in "${SPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${SPIDS[@]}"; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
	mountpoint -q "$W/mnt" 2>/dev/null && fusermount3 -u "$W/mnt" || true
	detach_loops || true
	netns_down "$NS" "$VH"
	for g in src transit; do
		[ -d "$CG/$NS-$g" ] || continue
		while read -r t; do echo "$t" >"$CG/tasks" 2>/dev/null || true; done <"$CG/$NS-$g/tasks"
		rmdir "$CG/$NS-$g" 2>/dev/null || true
	done
}

# --- the disk, the namespace, the link ---
server_disk "$W/disk0.img" "$W/src" >/dev/null
# Copied sparse: mkfs leaves unwritten extents, which SEEK_DATA reports as
# data once their pages are in the page cache, so the disk's allocation
# (and what ferry-export maps) would grow as the rows read it (dd reads it
# all). A copy has plain holes, the same at every row.
cp --sparse=always "$W/disk0.img" "$W/disk.img"
rm -f "$W/disk0.img"
netns_up "$NS" "$VH" "$VS" "$HOSTIP" "$SRCIP" "${RATES%% *}"
wire() { cat "/sys/class/net/$VH/statistics/rx_bytes" "/sys/class/net/$VH/statistics/tx_bytes" | paste -sd+ | bc; }

# CPU per side: every process of a side is started in its cpuacct group.
mkdir -p "$CG/$NS-src" "$CG/$NS-transit"
in_src() { sh -c 'echo $$ >"$1/tasks"; shift; exec "$@"' sh "$CG/$NS-src" ip netns exec "$NS" "$@"; }
in_transit() { sh -c 'echo $$ >"$1/tasks"; shift; exec "$@"' sh "$CG/$NS-transit" "$@"; }
# For "cmd &" only: exec, so that $! is the program's own PID (a backgrounded
# function is a subshell; without exec, kill $! would leave the program).
src_bg() { exec sh -c 'echo $$ >"$1/tasks"; shift; exec "$@"' sh "$CG/$NS-src" ip netns exec "$NS" "$@"; }
transit_bg() { exec sh -c 'echo $$ >"$1/tasks"; shift; exec "$@"' sh "$CG/$NS-transit" "$@"; }
cpu() { echo "scale=2; $(cat "$CG/$NS-$1/cpuacct.usage") / 1000000000" | bc; }

# The source's services: sshd (a key made now), nginx over HTTPS.
ssh-keygen -q -t ed25519 -N '' -f "$W/hostkey"
ssh-keygen -q -t ed25519 -N '' -f "$W/id"
cp "$W/id.pub" "$W/authorized_keys"
chmod 600 "$W/authorized_keys"
mkdir -p /run/sshd
cat >"$W/sshd_config" <<EOF
ListenAddress $SRCIP
Port 22
HostKey $W/hostkey
AuthorizedKeysFile $W/authorized_keys
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile $W/sshd.pid
EOF
src_bg /usr/sbin/sshd -D -f "$W/sshd_config" 2>"$W/sshd.log" &
SPIDS+=($!)
SSH=(ssh -q -i "$W/id" -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o BatchMode=yes "root@$SRCIP")
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/nginx.key" -out "$W/nginx.crt" \
	-days 2 -subj "/CN=$SRCIP" >/dev/null 2>&1
mkdir -p "$W/www" "$W/nginx-tmp"
ln "$W/disk.img" "$W/www/disk.img"
nginx_conf "$W/nginx.conf" "$SRCIP:8443" "$W/nginx.crt" "$W/nginx.key" "$W/www" "$W/nginx-tmp"
src_bg nginx -p "$W" -c "$W/nginx.conf" &
SPIDS+=($!)
for _ in $(seq 50); do "${SSH[@]}" true 2>/dev/null && break; sleep 0.2; done
"${SSH[@]}" true || { echo "sshd in the namespace did not answer: $(cat "$W/sshd.log")" >&2; exit 1; }

# The source's filesystems, for partclone: loop devices on each range.
PC=()	# "tool srcloop start size"
while read -r num start size kind; do
	case $kind in
	vfat) tool=partclone.fat ;; ext4*) tool=partclone.extfs ;;
	xfs) tool=partclone.xfs ;; ntfs) tool=partclone.ntfs ;; *) continue ;;
	esac
	loop_at "$W/disk.img" $((start * M)) $((size * M))
	PC+=("$tool $LOOP $start $size")
done <<< "$SERVER_PARTS"

# --- the rows ---
now() { date +%s.%N; }
# measure LABEL FUNCTION: runs it; sets SECS WIRE SRC_CPU TR_CPU. The clock
# stops when FUNCTION returns, with its image finished; what it leaves to
# tidy (an unmount, a temporary raw file) is FUNCTION_done's, after it, and
# what the row before left, removed before the clock starts.
measure() {
	local w0 s0 t0 c0 t1
	rm -rf "$W/cache" "$W/url" "$W/out.qcow2" "$W/out.qcow2.ferry-convert" \
		"$W/dd.raw" "$W/pc.raw" "$W/nbd.raw"
	sync
	w0=$(wire); s0=$(cpu src); c0=$(cpu transit); t0=$(now); TZERO=$t0
	[ -z "${TRACE:-}" ] || echo "$1:" >&2
	"$2" || { echo "bench/link.sh: $1 failed" >&2; exit 1; }
	t1=$(now)
	SECS=$(echo "$t1 - $t0" | bc); WIRE=$(( $(wire) - w0 ))
	SRC_CPU=$(echo "$(cpu src) - $s0" | bc); TR_CPU=$(echo "$(cpu transit) - $c0" | bc)
	! declare -F "$2_done" >/dev/null || "$2_done"
}

ferry_run() {	# uses MOPTS
	local url
	src_bg "$EXPORT" --listen "$SRCIP:8703" --url-file "$W/url" disk="$W/disk.img" \
		>/dev/null 2>>"$W/export.log" &
	EPID=$!
	for _ in $(seq 500); do [ -s "$W/url" ] && break; sleep 0.01; done
	url=$(cat "$W/url")
	mkdir -p "$W/mnt"
	transit_bg "$FERRYFS" -f -o "cache=$W/cache${MOPTS:+,$MOPTS}" "$url" "$W/mnt" 2>>"$W/ferryfs.log" &
	FPID=$!
	for _ in $(seq 500); do [ -f "$W/mnt/disk.raw" ] && break; sleep 0.01; done
	[ -z "${TRACE:-}" ] || trace_start
	in_transit "$CONVERT" -O qcow2 "$W/mnt/disk.raw" "$W/out.qcow2" 2>>"$W/convert.log"
	[ -z "${TRACE:-}" ] || trace_stop
}
# TRACE=1: where a ferry row's time goes, every 50 ms from the row's start
# (to stderr): MB on the wire, MB the transit's disk wrote and its busy
# ms (/proc/diskstats), MB of the image so far. A stalled wire while the
# disk is busy, or an image that stops growing, shows here.
TDEV=$(basename "$(realpath "$(findmnt -no SOURCE -T "$W")")")
disk_now() { awk -v d="$TDEV" '$3 == d { print $10, $13 }' /proc/diskstats; }
trace_start() {
	local w0 d0 b0
	w0=$(wire); read -r d0 b0 <<<"$(disk_now)"
	(
		while kill -0 $$ 2>/dev/null; do
			read -r d b <<<"$(disk_now)"
			o=$(stat -c %b "$W/out.qcow2" 2>/dev/null || echo 0)
			printf '  %5.2f s  wire %4d MB  disk %5d MB, busy %4d ms  image %4d MB\n' \
				"$(echo "$(now) - $TZERO" | bc)" $(( ($(wire) - w0) / 1000000 )) \
				$(( (d - d0) * 512 / 1000000 )) $((b - b0)) $((o * 512 / 1000000))
			sleep 0.05
		done
	) >&2 &
	TRACER=$!
}
trace_stop() { kill "$TRACER"; wait "$TRACER" 2>/dev/null || true; echo "  $(echo "$(now) - $TZERO" | bc) s  image finished" >&2; }
ferry_run_done() {
	USED=$(jq '.disks[0].used' "$W/mnt/.ferry/status.json")
	fusermount3 -u "$W/mnt"
	wait "$FPID"
	kill "$EPID"; wait "$EPID" 2>/dev/null || true
	FPID= EPID=
}
ferry_default() { MOPTS= ferry_run; }
ferry_default_done() { ferry_run_done; }
ferry_plain() { MOPTS=compress=0 ferry_run; }
ferry_plain_done() { ferry_run_done; }

dd_ssh() {
	in_transit "${SSH[@]}" "dd if=$W/disk.img bs=1M status=none" >"$W/dd.raw" || return 1
	in_transit qemu-img convert -O qcow2 "$W/dd.raw" "$W/out.qcow2"
}

partclone_ssh() {
	local tool src start size l
	truncate -s $((SERVER_DISK_MIB * M)) "$W/pc.raw"
	# The partition table: the first and last MiB (GPT and its backup).
	in_transit "${SSH[@]}" "dd if=$W/disk.img bs=1M count=1 status=none" |
		dd of="$W/pc.raw" conv=notrunc status=none || return 1
	in_transit "${SSH[@]}" "dd if=$W/disk.img bs=1M skip=$((SERVER_DISK_MIB - 1)) status=none" |
		dd of="$W/pc.raw" bs=1M seek=$((SERVER_DISK_MIB - 1)) conv=notrunc status=none || return 1
	for p in "${PC[@]}"; do
		read -r tool src start size <<<"$p"
		loop_at "$W/pc.raw" $((start * M)) $((size * M))
		l=$LOOP
		in_transit "${SSH[@]}" "$tool -c -q -s $src -o -" 2>/dev/null |
			in_transit "$tool" -r -q -s - -o "$l" >/dev/null 2>&1 || { detach "$l"; return 1; }
		detach "$l"
	done
	in_transit qemu-img convert -O qcow2 "$W/pc.raw" "$W/out.qcow2"
}

nbd_https() {
	in_transit nbdkit -U - curl "url=https://$SRCIP:8443/disk.img" sslverify=false \
		--run "nbdcopy \"\$uri\" $W/nbd.raw" || return 1
	in_transit qemu-img convert -O qcow2 "$W/nbd.raw" "$W/out.qcow2"
}

# goodput: the seconds one plain TCP stream (no TLS, no disk) takes to
# carry the used bytes from the namespace to here, from the connection to
# its end: the link's own framing (Ethernet, IP, TCP headers: 1448 bytes of
# data in each 1514 on the wire) and TCP's ramp, which every row pays.
goodput() {
	local rx
	ip addr show dev "$VH" >/dev/null
	python3 - "$HOSTIP" "$1" >"$W/goodput" <<'PY' &
import socket, sys, time
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
c, _ = s.accept()
t0, n = time.monotonic(), 0
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    n += len(b)
print(n, time.monotonic() - t0)
PY
	rx=$!
	sleep 0.3
	ip netns exec "$NS" python3 - "$HOSTIP" "$1" "$USED" <<'PY'
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
left, buf = int(sys.argv[3]), bytes(1 << 20)
while left > 0:
    n = min(left, len(buf))
    c.sendall(buf[:n])
    left -= n
c.close()
PY
	wait "$rx"
	read -r _ GOODPUT <"$W/goodput"
}

printf 'bench/link.sh: server disk %d MiB (tests/serverdisk.sh), veth MTU 1500, tbf both ways, %d CPUs\n' \
	"$SERVER_DISK_MIB" "$(nproc)"
for rate in $RATES; do
	netns_shape "$NS" "$VH" "$VS" "$rate"
	echo
	printf '%-46s %8s %8s %9s %9s %8s\n' "$rate Mbit/s, to a finished qcow2" "time s" "wire MB" "src CPU s" "trn CPU s" "x ferry"
	declare -A T=()
	for row in ${ROWS:-ferry_default ferry_plain dd_ssh partclone_ssh nbd_https}; do
		runs=()
		for _ in $(seq "$RUNS"); do
			measure "$row" "$row"
			runs+=("$SECS $WIRE $SRC_CPU $TR_CPU")
		done
		read -r SECS WIRE SRC_CPU TR_CPU <<<"$(printf '%s\n' "${runs[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")"
		T[$row]=$SECS
		case $row in
		ferry_default) label="ferry (mount + ferry-convert -O qcow2)" ;;
		ferry_plain) label="ferry, compress=0" ;;
		dd_ssh) label="dd through ssh, qemu-img convert" ;;
		partclone_ssh) label="partclone -c through ssh, restore, convert" ;;
		nbd_https) label="nginx, nbdkit curl + nbdcopy, convert" ;;
		esac
		printf '  %-44s %8.2f %8.1f %9.2f %9.2f %8.2f\n' "$label" "$SECS" \
			"$(echo "$WIRE / 1000000" | bc -l)" "$SRC_CPU" "$TR_CPU" \
			"$(echo "$SECS / ${T[ferry_default]}" | bc -l)"
		[ "$row" = ferry_default ] && FLOOR=$(echo "$USED * 8 / ($rate * 1000000)" | bc -l)
	done
	printf '  floor: %.1f MB used / link rate = %.2f s; ferry %.2f x the floor\n' \
		"$(echo "$USED / 1000000" | bc -l)" "$FLOOR" "$(echo "${T[ferry_default]} / $FLOOR" | bc -l)"
	goodput 8704
	printf '  goodput: one plain TCP stream carries the used bytes in %.2f s (%.3f x the floor)\n' \
		"$GOODPUT" "$(echo "$GOODPUT / $FLOOR" | bc -l)"
	[ -z "${T[ferry_plain]:-}" ] || printf '  ferry, compress=0: %.2f x the floor, %.2f x that stream\n' \
		"$(echo "${T[ferry_plain]} / $FLOOR" | bc -l)" "$(echo "${T[ferry_plain]} / $GOODPUT" | bc -l)"
	unset T
done
