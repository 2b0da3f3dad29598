#!/usr/bin/env bash
# Cold-mount sequential read throughput of ferryfs against curl downloading
# the same disk from the same ferry-export, in one run, on two disks:
#   dense: SIZE of random data (nothing to skip: the raw link speed)
#   mixed: SIZE with random data, text, written zeros and holes (40%)
# Prints MB/s (disk bytes / wall time, median of RUNS) and ratios to curl
# into /dev/null; "curl -o FILE" stores the download where the ferryfs
# cache goes, which is what ferryfs has to do too.
# Usage: bench/cold-read.sh [SIZE_MIB=1024] [RUNS=3]
# Env: CACHE_BASE=DIR puts ferryfs caches there (default: a temp dir on
# the same filesystem as TMPDIR); FERRY_BUILD=build dir.
SIZE_MIB=${1:-1024}
RUNS=${2:-3}
. "$(dirname "$0")/lib.sh" curl jq dd
CB=${CACHE_BASE:-$W}
bench_cleanup() { rm -rf "$CB"/ferry-bench-cache.*; }
S=$((SIZE_MIB * M))

# dense: all random. mixed: 50% random, 10% text, 10% written zeros, 30% hole.
head -c $S /dev/urandom > "$W/dense.img"
truncate -s $S "$W/mixed.img"
dd if="$W/dense.img" of="$W/mixed.img" bs=1M count=$((SIZE_MIB / 2)) conv=notrunc status=none
yes "ferry benchmark: a compressible line of text" | head -c $((S / 10)) |
	dd of="$W/mixed.img" bs=1M seek=$((SIZE_MIB / 2)) conv=notrunc status=none
head -c $((S / 10)) /dev/zero | dd of="$W/mixed.img" bs=1M seek=$((SIZE_MIB * 6 / 10)) conv=notrunc status=none

"$EXPORT" --listen 127.0.0.1:0 --url-file "$W/url" dense="$W/dense.img" mixed="$W/mixed.img" \
	>/dev/null 2>"$W/export.log" &
EPID=$!
for _ in $(seq 50); do [ -s "$W/url" ] && break; sleep 0.1; done
URL=$(cat "$W/url")
TOKEN=${URL#ferry://}; TOKEN=${TOKEN%%@*}
HP=${URL#*@}; HP=${HP%%/*}

mbps() { awk -v b="$1" -v t="$2" 'BEGIN {printf "%.0f\n", b / t / 1e6}'; }

curl_rate() {	# disk [file] -> MB/s; to /dev/null, or stored in the cache's
		# filesystem like a "download first" workflow would
	local out=${2:-/dev/null}
	curl -sk -H "Authorization: Bearer $TOKEN" -o "$out" -w '%{time_total}\n' \
		"https://$HP/v1/disks/$1" | { read -r t; mbps $S "$t"; }
	[ "$out" = /dev/null ] || rm -f "$out"
}

ferry_rate() {	# disk opts -> MB/s (bytes received go to $W/wire)
	local d=$1 opts=$2 c t0 t1
	c=$(mktemp -d "$CB/ferry-bench-cache.XXXXXX")
	mkdir -p "$W/mnt"
	"$FERRYFS" -f -o "cache=$c,$opts" "$URL" "$W/mnt" 2>>"$W/ferryfs.log" &
	FPID=$!
	for _ in $(seq 100); do [ -f "$W/mnt/.ferry/status.json" ] && break; sleep 0.05; done
	t0=$(date +%s.%N)
	dd if="$W/mnt/$d.raw" of=/dev/null bs=1M status=none
	t1=$(date +%s.%N)
	jq --arg d "$d" '.disks[] | select(.name == $d) | .data_bytes' \
		"$W/mnt/.ferry/status.json" > "$W/wire"
	fusermount3 -u "$W/mnt"
	wait "$FPID"
	FPID=
	rm -rf "$c"
	mbps $S "$(echo "$t1 - $t0" | bc -l)"
}

printf '%-6s %-38s %6s %7s %9s\n' disk reader MB/s "x curl" "wire MiB"
for d in dense mixed; do
	c=$(for _ in $(seq $RUNS); do curl_rate $d; done | median)
	printf '%-6s %-38s %6s %7s %9s\n' $d "curl (ferry-export, 1 stream)" "$c" 1.00 $SIZE_MIB
	f=$(for _ in $(seq $RUNS); do curl_rate $d "$CB/ferry-bench-cache.download"; done | median)
	printf '%-6s %-38s %6s %7s %9s\n' $d "curl -o FILE (download first)" "$f" \
		"$(awk -v a="$f" -v b="$c" 'BEGIN {printf "%.2f", a / b}')" $SIZE_MIB
	for opts in "prefetch=0" "prefetch=1" "prefetch=0,streams=2" "prefetch=0,chunk=4M"; do
		rates=""
		for _ in $(seq $RUNS); do
			rates="$rates $(ferry_rate $d "$opts")"
		done
		r=$(echo $rates | tr ' ' '\n' | median)
		printf '%-6s %-38s %6s %7s %9s\n' $d "ferryfs cold dd ($opts)" "$r" \
			"$(awk -v a="$r" -v b="$c" 'BEGIN {printf "%.2f", a / b}')" \
			$(($(cat "$W/wire") / M))
	done
done
echo "(${SIZE_MIB} MiB disks, median of $RUNS runs, cache in $CB, $(nproc) CPUs)"
