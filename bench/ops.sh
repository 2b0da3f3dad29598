#!/usr/bin/env bash
# What running ferry costs: each program's peak RSS, and GET /metrics under
# load while a transfer runs. In one run, on one disk, cold mounts each:
#   1. the transfer (hydration to complete) with nothing polling
#   2. the same while ab hammers ferry-export's --metrics-listen (plain
#      HTTP, keep-alive, one client): requests/s it sustains, and how much
#      longer the transfer took
#   3. the same on the main TLS address with the token
#   4. the same while a loop opens and reads MNT/.ferry/metrics
# Then peak RSS (VmHWM) of ferry-export and ferryfs after the transfer,
# of ferry-convert -O qcow2 from the warm mount, and of ferryctl status.
# Usage: bench/ops.sh [SIZE_MIB=2048]
SIZE_MIB=${1:-2048}
. "$(dirname "$0")/lib.sh" ab jq python3
CONVERT=$B/tools/convert/ferry-convert
CTL=$B/tools/ctl/ferryctl
LOADPID=
bench_cleanup() { [ -n "$LOADPID" ] && kill "$LOADPID" 2>/dev/null; true; }

stripe_disk "$W/disk.img" "$SIZE_MIB"
"$EXPORT" --listen 127.0.0.1:0 --url-file "$W/url" --metrics-listen 127.0.0.1:0 \
	disk="$W/disk.img" 2>"$W/export.log" >/dev/null &
EPID=$!
for _ in $(seq 100); do [ -s "$W/url" ] && grep -q "metrics on" "$W/export.log" && break; sleep 0.1; done
URL=$(cat "$W/url")
MPORT=$(sed -n 's|.*metrics on http://127\.0\.0\.1:\([0-9]*\)/metrics.*|\1|p' "$W/export.log")
TOKEN=${URL#ferry://}; TOKEN=${TOKEN%%@*}
HP=${URL#*@}; HP=${HP%%/*}
hwm() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$1/status"; }

# transfer LOAD: a cold mount hydrated to complete while LOAD runs (none,
# plain, tls, file); prints "SECONDS REQUESTS_PER_S".
transfer() {
	local load=$1 t0 t1 n=0 rps=0
	rm -rf "$W/cache"
	mkdir -p "$W/mnt"
	"$FERRYFS" -f -o "cache=$W/cache" "$URL" "$W/mnt" 2>>"$W/ferryfs.log" &
	FPID=$!
	for _ in $(seq 100); do [ -f "$W/mnt/.ferry/status.json" ] && break; sleep 0.05; done
	case $load in
	plain) ab -q -k -c 1 -t 600 -n 100000000 "http://127.0.0.1:$MPORT/metrics" >"$W/ab.out" 2>&1 & LOADPID=$! ;;
	tls) ab -q -k -c 1 -t 600 -n 100000000 -H "Authorization: Bearer $TOKEN" "https://$HP/metrics" >"$W/ab.out" 2>&1 & LOADPID=$! ;;
	file) python3 -c '
import signal, sys, time
# A background job of a script starts with SIGINT ignored: take it back.
signal.signal(signal.SIGINT, signal.default_int_handler)
p, n, t0 = sys.argv[1], 0, time.time()
try:
    while True:
        with open(p, "rb") as f:
            f.read()
        n += 1
except KeyboardInterrupt:
    print("Requests per second: %.1f" % (n / (time.time() - t0)))
' "$W/mnt/.ferry/metrics" >"$W/ab.out" 2>&1 & LOADPID=$! ;;
	esac
	t0=$(date +%s.%N)
	wait_json "$W/mnt/.ferry/status.json" 'j["disks"][0]["state"] == "complete"'
	t1=$(date +%s.%N)
	if [ -n "$LOADPID" ]; then
		kill -INT "$LOADPID"; wait "$LOADPID" 2>/dev/null || true; LOADPID=
		rps=$(awk '/Requests per second/ {print $4}' "$W/ab.out")
	fi
	hwm "$FPID" >"$W/fs.rss.$load"
	if [ "$load" = none ]; then
		/usr/bin/time -f %M -o "$W/convert.rss" "$CONVERT" -O qcow2 "$W/mnt/disk.raw" "$W/out.qcow2" 2>/dev/null
		/usr/bin/time -f %M -o "$W/ctl.rss" "$CTL" status "$W/mnt" >/dev/null
		rm -f "$W/out.qcow2" "$W/out.qcow2.ferry-convert"
	fi
	fusermount3 -u "$W/mnt"; wait "$FPID" 2>/dev/null || true; FPID=
	echo "$(echo "$t1 - $t0" | bc) ${rps:-0}"
}

read -r t_none _ < <(transfer none)
fs_rss=$(cat "$W/fs.rss.none")
read -r t_plain r_plain < <(transfer plain)
read -r t_tls r_tls < <(transfer tls)
read -r t_file r_file < <(transfer file)
ex_rss=$(hwm "$EPID")
echo "bench/ops.sh: ${SIZE_MIB} MiB striped disk, cold mount to complete over loopback TLS, $(nproc) CPUs"
printf '%-44s %9s %10s %8s\n' "while the transfer runs" "time s" "metrics/s" "slower"
printf '%-44s %9.2f %10s %8s\n' "nothing polls" "$t_none" - 1.00
printf '%-44s %9.2f %10.0f %8.2f\n' "ab -k GET /metrics, --metrics-listen (HTTP)" "$t_plain" "$r_plain" "$(echo "$t_plain / $t_none" | bc -l)"
printf '%-44s %9.2f %10.0f %8.2f\n' "ab -k GET /metrics, TLS with the token" "$t_tls" "$r_tls" "$(echo "$t_tls / $t_none" | bc -l)"
printf '%-44s %9.2f %10.0f %8.2f\n' "open+read MNT/.ferry/metrics in a loop" "$t_file" "$r_file" "$(echo "$t_file / $t_none" | bc -l)"
echo
printf '%-44s %9s\n' "peak RSS" "MiB"
printf '%-44s %9s\n' "ferry-export (after 4 transfers)" "$ex_rss"
printf '%-44s %9s\n' "ferryfs (one transfer, nothing polling)" "$fs_rss"
printf '%-44s %9s\n' "ferry-convert -O qcow2 (warm mount)" "$(( $(cat "$W/convert.rss") / 1024 ))"
printf '%-44s %9s\n' "ferryctl status" "$(( $(cat "$W/ctl.rss") / 1024 ))"
