#!/usr/bin/env bash
# The transfer engine against the link and against peers, in one run, on
# one generated disk: SIZE of 16 MiB stripes, 40% random, 20% text (tar of
# /usr/include and /usr/share/doc, about 4:1 with zstd), 10% written zeros
# and 30% holes, interleaved so every stretch of the disk looks alike.
#
#  1. curl, one stream, from ferry-export and from nginx (TLS, loopback)
#  2. ferryfs: cold dd (hydration off and on; compress=auto, the default,
#     and zstd off and always; digests off), warm
#     dd against dd of the cache file, qemu-img convert -O qcow2 from a
#     cold mount
#  3. peers on nginx: httpdirfs --cache, nbdkit curl | nbdcopy, nbdfuse,
#     qemu-img convert from the https URL
#  4. random 4 KiB reads (fio, cold mounts): p50/p99, idle and, for ferryfs,
#     during full hydration
#  5. a 200 Mbit/s link (ferry-export --bwlimit 25M): data rate with and
#     without zstd, over the first SHAPED_MIB of the disk
#  6. 8 disks mounted together: hydration shares; RSS with a 1 TiB disk
#
# MB/s are disk bytes (10^6) over wall time. Peers missing from the machine
# are installed from Debian's packages when run as root, else skipped.
# Usage: bench/transfer.sh [SIZE_MIB=2048]
# Env: SHAPED_MIB (512), COLD_RUNS (3: cold rows are medians), OUT=DIR for converted images (/dev/shm),
#      FERRY_BUILD=build dir.
SIZE_MIB=${1:-2048}
SHAPED_MIB=${SHAPED_MIB:-512}
COLD_RUNS=${COLD_RUNS:-3}
OUT=${OUT:-/dev/shm}
peers="httpdirfs nbdkit nbdcopy nbdfuse fio nginx"
# Each peer is looked for (command -v with several names is true when any
# one is found, which skipped the install when nginx alone was there).
missing=
for p in $peers; do command -v "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ "$(id -u)" = 0 ] && [ -n "$missing" ]; then
	echo "bench/transfer.sh: installing peers (missing:$missing)" >&2
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get update -q && apt-get install -y -q httpdirfs nbdkit \
		libnbd-bin fio nginx-light; } >/dev/null 2>&1 || true
fi
. "$(dirname "$0")/lib.sh" curl jq dd python3 bc qemu-img nginx openssl fio
O=$(mktemp -d "$OUT/ferry-bench-out.XXXXXX")
MNTS=()
PEER_PIDS=()
NGINX_PID=
bench_cleanup() {
	local m p
	for m in "${MNTS[@]}"; do mountpoint -q "$m" && fusermount3 -u "$m" || true; done
	for p in "${PEER_PIDS[@]}" $NGINX_PID; do kill "$p" 2>/dev/null || true; done
	for p in "${PEER_PIDS[@]}" $NGINX_PID; do wait "$p" 2>/dev/null || true; done
	rm -rf "$O"
}
S=$((SIZE_MIB * M))
have() { command -v "$1" >/dev/null; }
rate() { awk -v b="$1" -v t="$2" 'BEGIN {printf "%.0f", b / t / 1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == 0) print "-"; else printf "%.2f", a / b}'; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
row() { printf '%-50s %7s %7s %9s\n' "$@"; }
wait_file() { for _ in $(seq 200); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }

# --- the disk ---
mkdir -p "$W/www"
{ tar cf - /usr/include /usr/share/doc 2>/dev/null || true; } | head -c $((64 * M)) > "$W/text.bin"
python3 - "$W/www/disk.img" "$SIZE_MIB" "$W/text.bin" <<'EOF'
import os, sys
path, mib, text = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "rb").read()
S = 16 << 20
text = (text * (S // max(len(text), 1) + 1))[:S]
kinds = "RRRRTTZHHH"
with open(path, "wb") as f:
    f.truncate(mib << 20)
    for i in range(mib // 16):
        k = kinds[i % len(kinds)]
        if k == "H":
            continue
        f.seek(i * S)
        f.write(os.urandom(S) if k == "R" else text if k == "T" else bytes(S))
EOF
DISK=$W/www/disk.img
nz=$(python3 - "$DISK" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); total = 0
while True:
    b = os.read(fd, 1 << 20)
    if not b: break
    if b.count(0) != len(b):
        total += len(b)
print(total)
EOF
)

# --- servers: ferry-export (zero scan up front) and nginx over TLS ---
start_export() {	# extra ferry-export options
	[ -n "$EPID" ] && { kill "$EPID"; wait "$EPID" 2>/dev/null || true; }
	rm -f "$W/url"
	"$EXPORT" --listen 127.0.0.1:0 --url-file "$W/url" "$@" disk="$DISK" \
		>/dev/null 2>>"$W/export.log" &
	EPID=$!
	wait_file "$W/url" || { echo "ferry-export did not start" >&2; exit 1; }
	URL=$(cat "$W/url")
	TOKEN=${URL#ferry://}; TOKEN=${TOKEN%%@*}
	HP=${URL#*@}; HP=${HP%%/*}
}
t0=$(now)
start_export --scan-zeros
scan_s=$(since "$t0")
nginx_local disk.img
NURL=https://127.0.0.1:$NP/disk.img

printf 'disk: %d MiB: 40%% random, 20%% text, 10%% written zeros, 30%% holes; %d MiB not zero\n' \
	"$SIZE_MIB" $((nz / M))
printf 'ferry-export --scan-zeros: %.1f s before serving\n\n' "$scan_s"
row "reader" "MB/s" "x curl" "wire MiB"

# --- 1. curl ---
t=$(curl -sk -H "Authorization: Bearer $TOKEN" -o /dev/null -w '%{time_total}' "https://$HP/v1/disks/disk")
CURL=$(rate $S "$t")
row "curl from ferry-export (1 stream)" "$CURL" 1.00 $SIZE_MIB
t=$(curl -sk -o /dev/null -w '%{time_total}' "$NURL")
r=$(rate $S "$t")
row "curl from nginx (1 stream)" "$r" "$(ratio "$r" "$CURL")" $SIZE_MIB

# --- 2. ferryfs ---
mount_ferry() {	# options -> FPID; mounts $W/mnt with a fresh cache
	rm -rf "$W/cache"
	mkdir -p "$W/mnt"
	"$FERRYFS" -f -o "cache=$W/cache,views=raw,$1" "$URL" "$W/mnt" >/dev/null 2>>"$W/ferryfs.log" &
	FPID=$!
	wait_file "$W/mnt/.ferry/status.json"
}
unmount_ferry() { fusermount3 -u "$W/mnt"; wait "$FPID" || true; FPID=; }
wire() { jq '.disks[0].wire_bytes / 1048576 | floor' "$W/mnt/.ferry/status.json"; }
dd_rate() {	# file -> MB/s of SIZE, or "failed"
	local t0
	t0=$(now)
	dd if="$1" of=/dev/null bs=1M status=none 2>>"$W/dd.err" || { echo failed; return; }
	rate $S "$(since "$t0")"
}
# Each cold row is the median of COLD_RUNS fresh mounts (this machine's
# rates vary by a quarter from one run to the next).
# (Not a $(...): the mount would hold the substitution's pipe open.)
cold() {	# options -> $r, the median MB/s of COLD_RUNS cold reads; the
		# last mount stays
	local i rs=()
	for i in $(seq "$COLD_RUNS"); do
		[ "$i" -gt 1 ] && unmount_ferry
		mount_ferry "$1"
		rs+=("$(dd_rate "$W/mnt/disk.raw")")
	done
	r=$(printf '%s\n' "${rs[@]}" | median)
}
for opts in prefetch=0 prefetch=1 prefetch=0,compress=0 prefetch=0,compress=1 prefetch=0,verify=0; do
	cold "$opts"
	row "ferryfs cold dd bs=1M ($opts)" "$r" "$(ratio "$r" "$CURL")" "$(wire)"
	[ "$opts" = prefetch=1 ] && FERRY_COLD=$r
	[ "$opts" = prefetch=0,compress=0 ] && WIRE_RAW=$(wire)
	[ "$opts" = prefetch=0,compress=1 ] && WIRE_Z=$(wire)
	if [ "$opts" = prefetch=0 ]; then
		FERRY_COLD0=$r
		warm=$(dd_rate "$W/mnt/disk.raw")
		direct=$(dd_rate "$(ls "$W"/cache/*.data | head -1)")
		row "ferryfs warm dd (same mount)" "$warm" "$(ratio "$warm" "$CURL")" 0
		row "dd of the cache file itself (warm)" "$direct" "$(ratio "$direct" "$CURL")" -
		WARM_RATIO=$(ratio "$warm" "$direct")
	fi
	unmount_ferry
done
mount_ferry prefetch=1
t0=$(now)
qemu-img convert -O qcow2 "$W/mnt/disk.raw" "$O/ferry.qcow2"
r=$(rate $S "$(since "$t0")")
row "qemu-img convert -O qcow2 from a cold ferryfs" "$r" "$(ratio "$r" "$CURL")" "$(wire)"
unmount_ferry
rm -f "$O/ferry.qcow2"

# --- 3. peers on nginx ---
# peer_mount httpdirfs|nbdfuse: a fresh mount (empty cache); @return its file.
peer_mount() {
	if [ "$1" = httpdirfs ]; then
		rm -rf "$W/hcache"
		mkdir -p "$W/hmnt" "$W/hcache"
		# --no-range-check: httpdirfs 1.2 looks for Accept-Ranges on
		# nginx's directory listing, which has none (its issue #188).
		httpdirfs -f --cache --cache-location "$W/hcache" --insecure-tls \
			--no-range-check "https://127.0.0.1:$NP/" "$W/hmnt" >/dev/null 2>&1 &
		PEER_FILE=$W/hmnt/disk.img
	else
		mkdir -p "$W/nmnt"
		nbdfuse "$W/nmnt" --command nbdkit -s curl url="$NURL" sslverify=false &
		PEER_FILE=$W/nmnt/nbd
	fi
	PEER_PIDS+=($!)
	MNTS+=("$(dirname "$PEER_FILE")")
	wait_file "$PEER_FILE"
}
peer_unmount() { fusermount3 -u "$(dirname "$PEER_FILE")" || true; }
HTTPDIRFS=
if have httpdirfs; then
	if peer_mount httpdirfs; then
		HTTPDIRFS=$(dd_rate "$PEER_FILE")
		row "httpdirfs --cache, cold dd bs=1M" "$HTTPDIRFS" "$(ratio "$HTTPDIRFS" "$CURL")" -
	fi
	peer_unmount
fi
if have nbdkit && have nbdcopy; then
	t0=$(now)
	nbdkit -U - curl url="$NURL" sslverify=false --run 'nbdcopy "$uri" null:'
	r=$(rate $S "$(since "$t0")")
	row "nbdkit curl | nbdcopy to null:" "$r" "$(ratio "$r" "$CURL")" -
fi
if have nbdkit && have nbdfuse; then
	if peer_mount nbdfuse; then
		r=$(dd_rate "$PEER_FILE")
		row "nbdfuse + nbdkit curl, cold dd bs=1M" "$r" "$(ratio "$r" "$CURL")" -
	fi
	peer_unmount
fi
t0=$(now)
# qemu's curl driver has been seen to stall for good mid-way here: capped
# at 5 minutes, and reported as such.
if timeout 300 qemu-img convert -O qcow2 "json:{\"file.driver\":\"https\",\"file.url\":\"$NURL\",\"file.sslverify\":\"off\"}" \
	"$O/https.qcow2" 2>"$W/qemu-https.err"; then
	r=$(rate $S "$(since "$t0")")
	row "qemu-img convert -O qcow2 from the https URL" "$r" "$(ratio "$r" "$CURL")" -
else
	printf '%-50s %s\n' "qemu-img convert -O qcow2 from the https URL" "did not finish in 300 s"
fi
rm -f "$O/https.qcow2"

# --- 4. random 4 KiB reads ---
fio_lat() {	# file -> "p50 p99" in ms over 400 random reads
	fio --name=r --filename="$1" --readonly --rw=randread --bs=4k \
		--ioengine=psync --number_ios=400 --size=$S --randrepeat=0 \
		--output-format=json 2>/dev/null > "$W/fio.json" &&
		jq -r '.jobs[0].read.clat_ns.percentile | "\(."50.000000" / 1e6) \(."99.000000" / 1e6)"' "$W/fio.json" 2>/dev/null ||
		echo "nan nan"
}
# ferryfs with a 200 MB/s cap in both runs, so hydration lasts through the
# reads (uncapped, it ends in a few seconds).
echo
printf '%-50s %9s %9s\n' "random 4 KiB reads, cold mount" "p50 ms" "p99 ms"
mount_ferry prefetch=0,bwlimit=200M
read -r p50 p99 < <(fio_lat "$W/mnt/disk.raw")
printf '%-50s %9.2f %9.2f\n' "ferryfs (bwlimit=200M), idle" "$p50" "$p99"
IDLE99=$p99
unmount_ferry
mount_ferry prefetch=1,bwlimit=200M
sleep 0.3
read -r p50 p99 < <(fio_lat "$W/mnt/disk.raw")
left=$(jq '.disks[0] | .chunks - .chunks_cached' "$W/mnt/.ferry/status.json")
printf '%-50s %9.2f %9.2f\n' "ferryfs (bwlimit=200M), during hydration" "$p50" "$p99"
printf '  (%s chunks still to hydrate when the reads ended)\n' "$left"
HYD99=$p99
unmount_ferry
for p in httpdirfs nbdfuse; do
	have "$p" || continue
	if peer_mount "$p"; then
		read -r p50 p99 < <(fio_lat "$PEER_FILE")
		printf '%-50s %9.2f %9.2f\n' "$p, idle" "$p50" "$p99"
	fi
	peer_unmount
done

# --- 5. a 200 Mbit/s link ---
echo
LINK=$((25 * 1000 * 1000))
SH=$((SHAPED_MIB * M))
start_export --scan-zeros --bwlimit 25000000
printf '%-50s %7s %9s %9s\n' "200 Mbit/s link, first $SHAPED_MIB MiB" "MB/s" "x link" "wire MiB"
for opts in compress=auto compress=1 compress=0; do
	mount_ferry "prefetch=0,$opts"
	t0=$(now)
	dd if="$W/mnt/disk.raw" of=/dev/null bs=1M count=$SHAPED_MIB status=none
	r=$(rate $SH "$(since "$t0")")
	printf '%-50s %7s %9s %9s\n' "ferryfs cold dd ($opts)" "$r" "$(ratio "$r" 25)" "$(wire)"
	[ "$opts" = compress=auto ] && SHAPED=$r
	unmount_ferry
done
start_export

# --- 6. many disks, memory ---
echo
kill "$EPID"; wait "$EPID" 2>/dev/null || true
head -c $((64 * M)) /dev/urandom > "$W/small.img"
args=()
for i in 1 2 3 4 5 6 7 8; do args+=("d$i=$W/small.img"); done
rm -f "$W/url"
"$EXPORT" --listen 127.0.0.1:0 --url-file "$W/url" "${args[@]}" >/dev/null 2>>"$W/export.log" &
EPID=$!
wait_file "$W/url"
URL=$(cat "$W/url")
mount_ferry "prefetch=1,bwlimit=64M"
sleep 3
jq -r '[.disks[].cached] | "8 disks hydrating together at 64 MB/s, after 3 s: MiB cached per disk min \(min / 1048576 | floor), max \(max / 1048576 | floor)"' \
	"$W/mnt/.ferry/status.json"
unmount_ferry
kill "$EPID"; wait "$EPID" 2>/dev/null || true
truncate -s 1T "$W/big.img"
for g in 0 100 500 1000; do
	head -c $((16 * M)) /dev/urandom | dd of="$W/big.img" bs=1M seek=$((g * 1024)) conv=notrunc status=none
done
rm -f "$W/url"
"$EXPORT" --listen 127.0.0.1:0 --url-file "$W/url" big="$W/big.img" >/dev/null 2>>"$W/export.log" &
EPID=$!
wait_file "$W/url"
URL=$(cat "$W/url")
mount_ferry "prefetch=1"
for _ in $(seq 100); do
	[ "$(jq -r '.disks[0].state' "$W/mnt/.ferry/status.json")" = complete ] && break
	sleep 0.1
done
dd if="$W/mnt/big.raw" of=/dev/null bs=1M skip=$((500 * 1024)) count=16 status=none
printf '1 TiB sparse disk (64 MiB of data), hydrated: ferryfs RSS %s MiB\n' \
	$(($(awk '/VmRSS/ {print $2}' "/proc/$FPID/status") / 1024))
unmount_ferry

echo
echo "targets:"
printf '  cold sequential, hydration on: %s x curl (goal 0.9); off: %s x\n' \
	"$(ratio "$FERRY_COLD" "$CURL")" "$(ratio "$FERRY_COLD0" "$CURL")"
[ -n "$HTTPDIRFS" ] && printf '  cold sequential vs httpdirfs: %s x (goal 10)\n' "$(ratio "$FERRY_COLD" "$HTTPDIRFS")"
printf '  warm / dd of the cache file: %s (goal 0.8)\n' "$WARM_RATIO"
printf '  wire with compress=0: %s MiB for %d MiB not zero: %s (goal <= 1.02); with compress=1 %s MiB\n' \
	"$WIRE_RAW" $((nz / M)) "$(ratio "$WIRE_RAW" $((nz / M)))" "$WIRE_Z"
printf '  shaped link, compress=auto (zstd where it pays): %s x the link rate (goal 1.5)\n' "$(ratio "$SHAPED" 25)"
printf '  random read p99 during hydration / idle: %s (goal <= 2)\n' "$(ratio "$HYD99" "$IDLE99")"
printf '(%s CPUs, %s)\n' "$(nproc)" "$(uname -r)"
exit 0
