#!/usr/bin/env bash
# Cold random 4 KiB reads, ferryfs against nbdfuse, in one run on one
# disk (SIZE MiB of random data): fio randread through the page cache
# (fio's default fadvise RANDOM, so each read asks for its own page), READS
# reads on a fresh mount, p50 and p99 in ms, each row the median of RUNS
# mounts, with the worst p99 of them and, for ferryfs, how many reads of
# a mount (median) were not small reads (the chunk path, or the cache).
# Rows:
#   - fio --direct=1 on the image file itself (the floor: the disk);
#   - ferryfs idle (prefetch=0), with -o smallread=0 (each read waits for
#     its whole chunk, as before small reads) and the default, and while
#     hydrating the same disk (prefetch=1, bwlimit=200M so that hydration
#     lasts the reads);
#   - nbdfuse over nbdkit's curl plugin from nginx serving the same file
#     over HTTPS;
#   - a cold dd bs=1M of ferryfs and of nbdfuse (sequential throughput,
#     which a change for random reads must not cost; on the shaped link
#     the first 256 MiB).
# As root, the same on a shaped link as well: the servers in a network
# namespace behind a veth pair, MTU 1500, tbf at SHAPED_MBIT both ways.
# Prints p99 ferryfs / nbdfuse (goal <= 1.5) and hydrating / idle (goal
# <= 2).
# Usage: bench/randread.sh [SIZE_MIB=1024]
# Env: READS (1000), RUNS (3), SHAPED_MBIT (200; 0: no shaped part)
SIZE_MIB=${1:-1024}
READS=${READS:-1000}
RUNS=${RUNS:-3}
SHAPED_MBIT=${SHAPED_MBIT:-200}
missing=
for p in nbdkit nbdfuse fio nginx; do command -v "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ "$(id -u)" = 0 ] && [ -n "$missing" ]; then
	echo "bench/randread.sh: installing (missing:$missing)" >&2
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get update -q && apt-get install -y -q --no-install-recommends \
		nbdkit nbdfuse fio nginx-light; } >/dev/null 2>&1 || true
fi
. "$(dirname "$0")/lib.sh" nbdkit nbdfuse fio nginx openssl jq bc
[ "$(id -u)" = 0 ] || SHAPED_MBIT=0
S=$((SIZE_MIB * M))
NS=ferryrr$$ VH=frh$$ VS=frs$$
HOSTIP=169.254.203.1 SRCIP=169.254.203.2
SPIDS=()
bench_cleanup() {
	local p m
	for m in "$W/nmnt" "$W/mnt"; do mountpoint -q "$m" 2>/dev/null && fusermount3 -u "$m" || true; done
	for p in "${SPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${SPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	[ "$SHAPED_MBIT" = 0 ] || netns_down "$NS" "$VH"
}
wait_file() { for _ in $(seq 300); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }

mkdir -p "$W/www" "$W/mnt" "$W/nmnt" "$W/tmp"
head -c "$S" /dev/urandom >"$W/www/disk.img"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=localhost -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null

# servers ADDR [NETNS-PREFIX...]: ferry-export and nginx on ADDR; sets URL,
# NURL.
servers() {
	local addr=$1 p
	shift
	for p in "${SPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${SPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	SPIDS=()
	rm -f "$W/url"
	"$@" "$EXPORT" --listen "$addr:0" --url-file "$W/url" disk="$W/www/disk.img" \
		>/dev/null 2>>"$W/export.log" &
	SPIDS+=($!)
	nginx_conf "$W/nginx.conf" "$addr:$NPORT" "$W/cert.pem" "$W/key.pem" "$W/www" "$W/tmp"
	"$@" nginx -p "$W" -c "$W/nginx.conf" &
	SPIDS+=($!)
	NURL=https://$addr:$NPORT/disk.img
	wait_file "$W/url" || { echo "ferry-export did not start" >&2; exit 1; }
	URL=$(cat "$W/url")
	for _ in $(seq 100); do curl -sk -o /dev/null -r 0-0 "$NURL" && return 0; sleep 0.05; done
	echo "nginx did not start" >&2
	exit 1
}
NPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

mount_ferry() {	# options: a fresh cache each time
	rm -rf "$W/cache"
	"$FERRYFS" -f -o "cache=$W/cache,views=raw,$1" "$URL" "$W/mnt" >/dev/null 2>>"$W/ferryfs.log" &
	FPID=$!
	wait_file "$W/mnt/.ferry/status.json" || { echo "ferryfs did not mount" >&2; exit 1; }
	FILE=$W/mnt/disk.raw
}
mount_nbd() {
	nbdfuse "$W/nmnt" --command nbdkit -s curl url="$NURL" sslverify=false 2>>"$W/nbd.log" &
	FPID=$!
	FILE=$W/nmnt/nbd
	wait_file "$FILE" || { echo "nbdfuse did not mount" >&2; exit 1; }
}
unmount() { fusermount3 -u "$(dirname "$FILE")"; wait "$FPID" 2>/dev/null || true; FPID=; }

fio_lat() {	# file [fio options] -> "p50 p99" in ms
	local f=$1
	shift
	fio --name=r --filename="$f" --readonly --rw=randread --bs=4k \
		--ioengine=psync --number_ios="$READS" --size="$S" --randrepeat=0 \
		"$@" --output-format=json 2>/dev/null >"$W/fio.json" &&
		jq -r '.jobs[0].read.clat_ns.percentile | "\(."50.000000" / 1e6) \(."99.000000" / 1e6)"' "$W/fio.json" ||
		echo "nan nan"
}
# row LABEL MOUNT-COMMAND: the medians of RUNS fresh mounts -> P50 P99,
# and the worst p99; for ferryfs, the reads not small (median)
row() {
	local label=$1 i a=() b=() c=() p50 p99 st big=-
	shift
	for i in $(seq "$RUNS"); do
		"$@"
		sleep 0.2
		read -r p50 p99 < <(fio_lat "$FILE")
		st=$(dirname "$FILE")/.ferry/status.json
		[ -f "$st" ] && c+=("$((READS - $(jq '.disks[0].small_reads' "$st")))")
		unmount
		a+=("$p50") b+=("$p99")
	done
	P50=$(printf '%s\n' "${a[@]}" | median) P99=$(printf '%s\n' "${b[@]}" | median)
	[ "${#c[@]}" = 0 ] || big=$(printf '%s\n' "${c[@]}" | median)
	printf '%-46s %9.3f %9.3f %9.3f %9s\n' "$label" "$P50" "$P99" \
		"$(printf '%s\n' "${b[@]}" | sort -n | tail -1)" "$big"
}
seq_row() {	# label mount-command -> MB/s of a cold dd bs=1M, median of RUNS
	local label=$1 t0 t i v=()
	shift
	for i in $(seq "$RUNS"); do
		"$@"
		t0=$(date +%s.%N)
		dd if="$FILE" of=/dev/null bs=1M count="$SEQ_MIB" status=none
		t=$(echo "$(date +%s.%N) - $t0" | bc -l)
		unmount
		v+=("$(echo "$SEQ_MIB * $M / $t / 1000000" | bc -l)")
	done
	MBS=$(printf '%s\n' "${v[@]}" | median)
	printf '%-46s %9.0f\n' "$label" "$MBS"
}

part() {	# title
	local ferry99 hyd99 nbd99 fseq nseq
	echo
	printf '%-46s %9s %9s %9s %9s\n' "$1: random 4 KiB, cold" "p50 ms" "p99 ms" "worst" "not small"
	row "ferryfs (prefetch=0,smallread=0), idle" mount_ferry prefetch=0,smallread=0
	whole99=$P99
	row "ferryfs (prefetch=0), idle" mount_ferry prefetch=0
	ferry99=$P99
	row "ferryfs (prefetch=1,bwlimit=200M), hydrating" mount_ferry prefetch=1,bwlimit=200M
	hyd99=$P99
	row "nbdfuse + nbdkit curl (nginx), idle" mount_nbd
	nbd99=$P99
	printf '%-46s %9s\n' "$1: cold dd bs=1M, first $SEQ_MIB MiB" "MB/s"
	seq_row "ferryfs (prefetch=0)" mount_ferry prefetch=0
	fseq=$MBS
	seq_row "nbdfuse + nbdkit curl (nginx)" mount_nbd
	nseq=$MBS
	printf '  p99 ferryfs / nbdfuse: %.2f (goal <= 1.5; smallread=0: %.2f); hydrating / idle: %.2f (goal <= 2); dd ferryfs / nbdfuse: %.2f\n' \
		"$(echo "$ferry99 / $nbd99" | bc -l)" "$(echo "$whole99 / $nbd99" | bc -l)" \
		"$(echo "$hyd99 / $ferry99" | bc -l)" "$(echo "$fseq / $nseq" | bc -l)"
}

printf 'disk: %d MiB of random data; %d reads a row, medians of %d mounts\n' "$SIZE_MIB" "$READS" "$RUNS"
read -r p50 p99 < <(fio_lat "$W/www/disk.img" --direct=1)
printf '%-46s %9.3f %9.3f\n' "the image file itself, O_DIRECT" "$p50" "$p99"
servers 127.0.0.1
SEQ_MIB=$SIZE_MIB
part "loopback"

if [ "$SHAPED_MBIT" != 0 ]; then
	netns_up "$NS" "$VH" "$VS" "$HOSTIP" "$SRCIP" "$SHAPED_MBIT"
	servers "$SRCIP" ip netns exec "$NS"
	SEQ_MIB=$((SIZE_MIB < 256 ? SIZE_MIB : 256))
	part "$SHAPED_MBIT Mbit/s link, MTU 1500"
fi
printf '(%s CPUs, %s)\n' "$(nproc)" "$(uname -r)"
