#!/usr/bin/env bash
# CPU seconds per GiB moved, in one run over loopback TLS, on one disk of
# random data (every byte crosses; zstd would only cost here):
#   receiving: curl -o FILE from nginx (the peer); ferryfs hydrating a cold
#     mount into its cache (compress=0), nobody reading; ferryfs and a
#     reader (cat of disk.raw, prefetch=0), each's share apart
#   serving: nginx for that curl; ferry-export for that hydration
# and, all in, the machine's busy CPU from the start of the curl or of the
# hydration until its file is synced, less the server's (and cat's): what
# the kernel's threads do for the receiver (writing back its file) counts
# there, where the rows above count only the receiver's own process
# and the ratios the issue sets goals for: ferryfs / curl (goal <= 1.3) and
# ferry-export / nginx (goal <= 1.2). CPU is utime + stime of each process
# (/proc/PID/stat), median of RUNS.
# With FERRY_BUILD_B=DIR (another build: the commit before a change, say),
# each run also runs the ferry rows with that build's ferryfs and
# ferry-export, right after this build's, and a last table gives B / A of
# each ferry figure pair by pair and their median: on a machine whose
# speed drifts from run to run, the ratio of neighbours is what holds.
# Usage: bench/cpu.sh [SIZE_MIB=2048]   Env: RUNS (3), FERRY_BUILD_B, MEMCG_MIB
SIZE_MIB=${1:-2048}
RUNS=${RUNS:-3}
. "$(dirname "$0")/lib.sh" curl nginx openssl jq bc python3
NGINX_PID= EPID_B= CG=
bench_cleanup() {
	[ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null
	[ -n "$EPID_B" ] && kill "$EPID_B" 2>/dev/null && wait "$EPID_B" 2>/dev/null
	[ -z "$CG" ] || rmdir "$CG" 2>/dev/null
	true
}
BB=${FERRY_BUILD_B:-}
if [ -n "$BB" ] && { ! [ -x "$BB/fs/ferryfs" ] || ! [ -x "$BB/tools/export/ferry-export" ]; }; then
	echo "FERRY_BUILD_B=$BB: no ferryfs and ferry-export built there" >&2
	exit 1
fi
TCK=$(getconf CLK_TCK)
cpu_of() { awk -v t="$TCK" '{printf "%.3f\n", ($14 + $15) / t}' "/proc/$1/stat"; }
per_gib() { echo "scale=3; $1 * 1024 / $SIZE_MIB" | bc; }
# The machine's busy CPU seconds so far (user, nice, system, irq, softirq of
# every CPU): with what the kernel's own threads do for a process, such as
# writing back the file it wrote, which its own figures leave out.
busy() { awk -v t="$TCK" '/^cpu / {printf "%.3f\n", ($2 + $3 + $4 + $7 + $8) / t}' /proc/stat; }

# MEMCG_MIB=N: the receivers (curl; ferryfs and cat) run in a memory
# cgroup of N MiB made for the run, so their page cache is recycled as on
# a transit host whose memory is full, instead of taking fresh pages: on a
# VM that returns freed memory to its host, each fresh page costs a host
# fault at first touch (below), which then weighs on every row.
if [ -n "${MEMCG_MIB:-}" ]; then
	v1=$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)
	v2=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
	if [ -n "$v1" ] && [ -d "/sys/fs/cgroup/memory$v1" ]; then
		CG=/sys/fs/cgroup/memory$v1/ferry-bench.$$ limit=memory.limit_in_bytes
	else
		CG=/sys/fs/cgroup$v2/ferry-bench.$$ limit=memory.max
	fi
	mkdir "$CG" && echo $((MEMCG_MIB * M)) >"$CG/$limit" ||
		{ echo "MEMCG_MIB: cannot make a memory cgroup at $CG" >&2; exit 1; }
fi
# in_cg CMD...: CMD, in that cgroup if there is one.
in_cg() { if [ -n "$CG" ]; then (echo "$BASHPID" >"$CG/cgroup.procs" && exec "$@"); else "$@"; fi; }
head -c $((SIZE_MIB * M)) /dev/urandom >"$W/disk.img"
mkdir -p "$W/www" && ln "$W/disk.img" "$W/www/disk.img"

nginx_local disk.img
nginx_worker() { pgrep -P "$NGINX_PID" | head -1; }

"$EXPORT" --listen 127.0.0.1:0 --url-file "$W/url" disk="$W/disk.img" >/dev/null 2>>"$W/export.log" &
EPID=$!
if [ -n "$BB" ]; then
	"$BB/tools/export/ferry-export" --listen 127.0.0.1:0 --url-file "$W/url.b" \
		disk="$W/disk.img" >/dev/null 2>>"$W/export.log" &
	EPID_B=$!
fi
for _ in $(seq 100); do [ -s "$W/url" ] && { [ -z "$BB" ] || [ -s "$W/url.b" ]; } && break; sleep 0.1; done
URL=$(cat "$W/url")
URL_B=$([ -z "$BB" ] || cat "$W/url.b")

curl_row() {	# prints "CURL_CPU NGINX_CPU ALL_IN"
	local w n0 c b0 n
	sync; w=$(nginx_worker); n0=$(cpu_of "$w"); b0=$(busy)
	in_cg /usr/bin/time -f "%U %S" -o "$W/curl.time" curl -sk -o "$W/out.img" "https://127.0.0.1:$NP/disk.img"
	sync
	n=$(echo "$(cpu_of "$w") - $n0" | bc)
	rm -f "$W/out.img"
	c=$(awk '{print $1 + $2}' "$W/curl.time")
	echo "$c $n $(echo "$(busy) - $b0 - $n" | bc)"
}

ferry_row() {	# ferry_row OPTS READER [B]: prints "FERRYFS_CPU READER_CPU EXPORT_CPU ALL_IN"
	local opts=$1 reader=$2 e0 f r=0 fs=$FERRYFS url=$URL epid=$EPID b0 e
	[ -z "${3:-}" ] || { fs=$BB/fs/ferryfs url=$URL_B epid=$EPID_B; }
	rm -rf "$W/cache"; mkdir -p "$W/mnt"
	sync; e0=$(cpu_of "$epid"); b0=$(busy)
	# in_cg inline: a backgrounded in_cg would be two subshells deep, and
	# $! not ferryfs's PID, which cpu_of reads.
	( [ -z "$CG" ] || echo "$BASHPID" >"$CG/cgroup.procs"
	  exec "$fs" -f -o "cache=$W/cache,compress=0,$opts" "$url" "$W/mnt" 2>>"$W/ferryfs.log" ) &
	FPID=$!
	for _ in $(seq 100); do [ -f "$W/mnt/disk.raw" ] && break; sleep 0.05; done
	if [ "$reader" = cat ]; then
		in_cg /usr/bin/time -f "%U %S" -o "$W/cat.time" cat "$W/mnt/disk.raw" >/dev/null
		r=$(awk '{print $1 + $2}' "$W/cat.time")
	else
		wait_json "$W/mnt/.ferry/status.json" 'j["disks"][0]["state"] == "complete"'
	fi
	f=$(cpu_of "$FPID")
	fusermount3 -u "$W/mnt"; wait "$FPID" 2>/dev/null || true; FPID=
	sync
	e=$(echo "$(cpu_of "$epid") - $e0" | bc)
	echo "$f $r $e $(echo "$(busy) - $b0 - $e - $r" | bc)"
}

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
# A VM whose freed memory goes back to its host (virtio-balloon free page
# reporting) pays a host fault at the first touch of each page it takes
# anew: about 2 s/GiB of system time on the machine this was written on.
# Each row here takes pages for its file (the reader under cat, twice:
# the cache's and its own, which ferryfs's reply touches first), so such
# a machine's figures swing with how warm the pages it gets are. Said at
# the end, with how much went back during the run.
REPORTED=/sys/module/page_reporting/parameters/reported_kib
rep0=$(cat "$REPORTED" 2>/dev/null || echo)
for i in $(seq "$RUNS"); do
	curl_row >>"$W/curl.rows"
	ferry_row prefetch=1 none >>"$W/hyd.rows"
	[ -z "$BB" ] || ferry_row prefetch=1 none B >>"$W/hyd.b.rows"
	ferry_row prefetch=0 cat >>"$W/read.rows"
	[ -z "$BB" ] || ferry_row prefetch=0 cat B >>"$W/read.b.rows"
done
col() { awk -v c="$2" '{print $c}' "$W/$1.rows" | median; }
curl_c=$(col curl 1) nginx_c=$(col curl 2) curl_a=$(col curl 3)
hyd_f=$(col hyd 1) hyd_e=$(col hyd 3) hyd_a=$(col hyd 4)
read_f=$(col read 1) read_r=$(col read 2) read_e=$(col read 3)

echo "bench/cpu.sh: $SIZE_MIB MiB of random data over loopback TLS, $(nproc) CPUs, median of $RUNS; CPU s per GiB${CG:+; receivers in a memory cgroup of $MEMCG_MIB MiB}"
printf '%-52s %8s %8s\n' "receiving" "CPU/GiB" "x curl"
printf '%-52s %8.3f %8s\n' "curl -o FILE from nginx" "$(per_gib "$curl_c")" 1.00
printf '%-52s %8.3f %8.2f\n' "ferryfs hydrating its cache (compress=0)" "$(per_gib "$hyd_f")" "$(echo "$hyd_f / $curl_c" | bc -l)"
printf '%-52s %8.3f %8.2f\n' "ferryfs under cat disk.raw (prefetch=0)" "$(per_gib "$read_f")" "$(echo "$read_f / $curl_c" | bc -l)"
printf '%-52s %8.3f %8s\n' "  the reader, cat, apart" "$(per_gib "$read_r")" -
printf '%-52s %8s %8s\n' "receiving, all in: the machine until the file is synced," "CPU/GiB" "x curl"
printf '%-52s %8s %8s\n' "  less the server (and the reader)" "" ""
printf '%-52s %8.3f %8s\n' "curl -o FILE, sync" "$(per_gib "$curl_a")" 1.00
printf '%-52s %8.3f %8.2f\n' "ferryfs hydrating, unmount, sync" "$(per_gib "$hyd_a")" "$(echo "$hyd_a / $curl_a" | bc -l)"
printf '%-52s %8s %8s\n' "serving" "CPU/GiB" "x nginx"
printf '%-52s %8.3f %8s\n' "nginx (sendfile, TLS) for curl" "$(per_gib "$nginx_c")" 1.00
printf '%-52s %8.3f %8.2f\n' "ferry-export for the hydration" "$(per_gib "$hyd_e")" "$(echo "$hyd_e / $nginx_c" | bc -l)"
printf '%-52s %8.3f %8.2f\n' "ferry-export for cat" "$(per_gib "$read_e")" "$(echo "$read_e / $nginx_c" | bc -l)"
[ -z "$rep0" ] || printf 'this machine returns freed memory to its host (free page reporting): %s GiB went back during the run; pages taken anew cost a host fault at first touch, so rows that fill the page cache vary from run to run\n' \
	"$(awk -v a="$rep0" -v b="$(cat "$REPORTED")" 'BEGIN {printf "%.1f", (b - a) / 1048576}')"
[ -n "$BB" ] || exit 0

# B / A pair by pair: line i of FILE.b.rows against line i of FILE.rows.
pairs() {	# pairs FILE COLUMN: the ratios, one a line
	paste "$W/$1.rows" "$W/$1.b.rows" | awk -v c="$2" -v n="$(head -1 "$W/$1.rows" | wc -w)" \
		'{ if ($c > 0) printf "%.3f\n", $(c + n) / $c }'
}
echo "B = $BB against A = $B: B / A of CPU seconds, pair by pair, then the median"
for row in "ferryfs hydrating:hyd:1" "ferryfs under cat:read:1" "ferryfs hydrating, all in:hyd:4" "ferry-export for the hydration:hyd:3" "ferry-export for cat:read:3"; do
	IFS=: read -r name file col <<<"$row"
	printf '%-52s %s   median %s\n' "$name" "$(pairs "$file" "$col" | tr '\n' ' ')" "$(pairs "$file" "$col" | median)"
done
