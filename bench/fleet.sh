#!/usr/bin/env bash
# How many 1 Gbit/s sources one transit host carries (root): one ferryfs
# --listen; N sources, each ferry-export --connect in a network namespace
# of its own behind a veth pair (MTU 1500, tbf RATE both ways), each with
# the same SIZE_MIB disk of random data under its own --name (so each is
# fetched whole). For N = 1, 2, ... until the per-source rate drops below
# 90% of what one source alone gets (the link's goodput): the time until every source is complete, the rate per
# source and in all, and the transit's CPU (ferryfs) per second.
# Here the sources run on the same machine as the transit, so their CPU
# is taken from the same cores; a real transit has its cores to itself.
# Usage: bench/fleet.sh [SIZE_MIB=512] [RATE_MBIT=1000] [MAX_N=8]
SIZE_MIB=${1:-512}
RATE=${2:-1000}
MAX_N=${3:-8}
. "$(dirname "$0")/lib.sh" ip tc jq bc python3
[ "$(id -u)" = 0 ] || { echo "needs root (namespaces, tc)" >&2; exit 1; }
P=fleet$$
SRC=()
TCK=$(getconf CLK_TCK)
cpu_of() { awk -v t="$TCK" '{printf "%.3f\n", ($14 + $15) / t}' "/proc/$1/stat"; }
bench_cleanup() {
	local p i
	for p in "${SRC[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${SRC[@]}"; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
	mountpoint -q "$W/mnt" 2>/dev/null && fusermount3 -u "$W/mnt" || true
	for i in $(seq "$MAX_N"); do netns_down "$P-$i" "fh$$-$i"; done
}

head -c $((SIZE_MIB * M)) /dev/urandom >"$W/disk.img"
# The namespaces, one per source: host side 169.254.(100+i).1, source .2.
for i in $(seq "$MAX_N"); do
	netns_up "$P-$i" "fh$$-$i" "fs$$-$i" "169.254.$((100 + i)).1" "169.254.$((100 + i)).2" "$RATE"
done

link_mbs=$(echo "$RATE * 1000000 / 8 / 1000000" | bc -l)
echo "bench/fleet.sh: $SIZE_MIB MiB of random data per source, each behind its own ${RATE} Mbit/s veth + tbf, $(nproc) CPUs (sources and transit share them)"
printf '%3s %9s %15s %8s %11s %14s\n' N "time s" "per source MB/s" "% link" "total MB/s" "ferryfs CPU/s"
for n in $(seq "$MAX_N"); do
	rm -rf "$W/cache"; mkdir -p "$W/mnt"
	"$FERRYFS" -f -o "cache=$W/cache" --listen 0.0.0.0:0 --url-file "$W/connect" "$W/mnt" \
		>/dev/null 2>>"$W/ferryfs.log" &
	FPID=$!
	for _ in $(seq 100); do [ -s "$W/connect" ] && [ -f "$W/mnt/.ferry/status.json" ] && break; sleep 0.05; done
	port=$(sed 's|.*@[^:]*:\([0-9]*\)/.*|\1|' "$W/connect")
	SRC=()
	for i in $(seq "$n"); do
		sed "s|@[^/]*/|@169.254.$((100 + i)).1:$port/|" "$W/connect" >"$W/connect.$i"
		ip netns exec "$P-$i" "$EXPORT" --connect "@$W/connect.$i" --name "src$i" \
			disk="$W/disk.img" >/dev/null 2>>"$W/export.$i.log" &
		SRC+=($!)
	done
	# From when every source is connected with its disks known (dialling
	# and maps are not the link's time) to when every one is complete.
	wait_json "$W/mnt/.ferry/status.json" \
		"sum(s['state'] in ('syncing', 'complete') for s in j['sources']) == $n" 0.02
	c0=$(cpu_of "$FPID"); t0=$(date +%s.%N)
	wait_json "$W/mnt/.ferry/status.json" \
		"sum(s['state'] == 'complete' for s in j['sources']) == $n"
	t1=$(date +%s.%N); c1=$(cpu_of "$FPID")
	secs=$(echo "$t1 - $t0" | bc)
	per=$(echo "$SIZE_MIB * $M / 1000000 / $secs" | bc -l)
	printf '%3d %9.2f %15.1f %8.0f %11.1f %14.2f\n' "$n" "$secs" "$per" "$(echo "100 * $per / $link_mbs" | bc -l)" "$(echo "$per * $n" | bc -l)" \
		"$(echo "($c1 - $c0) / $secs" | bc -l)"
	for p in "${SRC[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${SRC[@]}"; do wait "$p" 2>/dev/null || true; done
	SRC=()
	fusermount3 -u "$W/mnt"; wait "$FPID" 2>/dev/null || true; FPID=
	rm -f "$W/connect"
	[ "$n" = 1 ] && full=$per
	if [ "$(echo "$per < 0.9 * $full" | bc)" = 1 ]; then
		printf '%d sources: each below 90%% of one source'"'"'s %.1f MB/s (the link gives %.1f raw); %d sustained at full rate\n' \
			"$n" "$full" "$link_mbs" $((n - 1))
		break
	fi
done
