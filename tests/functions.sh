# Shared helpers for tests/test-*.sh: start ferry-export on 127.0.0.1:0,
# mount ferryfs in the foreground, and clean up in a trap: unmount with
# fusermount3 -u, stop only the processes started here, by PID.
set -u
set -o pipefail

: "${FERRY_EXPORT:=$(dirname "$0")/../build/tools/export/ferry-export}"
: "${FERRYFS:=$(dirname "$0")/../build/fs/ferryfs}"
: "${FERRY_CONVERT:=$(dirname "$0")/../build/tools/convert/ferry-convert}"
: "${FERRYCTL:=$(dirname "$0")/../build/tools/ctl/ferryctl}"

T=$(mktemp -d "${TMPDIR:-/tmp}/ferry-test.XXXXXX")
PIDS=()
MOUNTS=()

# Mounted, even if its ferryfs died (then mountpoint(1) cannot stat it).
is_mounted() {
	awk -v m="$1" '$2 == m {found = 1} END {exit !found}' /proc/mounts
}

cleanup() {
	local m p
	for m in "${MOUNTS[@]}"; do
		is_mounted "$m" && fusermount3 -u "$m" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null
	done
	for m in "${MOUNTS[@]}"; do
		is_mounted "$m" && fusermount3 -uz "$m" 2>/dev/null
	done
	# A test's own extra cleanup (a tmpfs it mounted), once nothing of
	# the test runs any more.
	[ "$(type -t test_cleanup)" = function ] && test_cleanup
	# A race ThreadSanitizer saw in any program the test ran fails it,
	# whether or not that program's exit status was looked at (the
	# exporters are stopped by a signal).
	local races
	races=$(grep -l "WARNING: ThreadSanitizer" "$T"/*.log 2>/dev/null)
	if [ -n "$races" ]; then
		for f in $races; do
			echo "FAIL: ThreadSanitizer in $f:" >&2
			grep -A24 -m3 "WARNING: ThreadSanitizer" "$f" >&2
		done
		[ -n "${KEEP_T:-}" ] || rm -rf "$T"
		exit 1
	fi
	[ -n "${KEEP_T:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	for f in "$T"/*.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; tail -"${FERRY_LOG_LINES:-20}" "$f" >&2; }
	done
	exit 1
}

ok() {
	echo "ok: $*"
}

# requires CMD...: skip (77) when a tool is missing.
requires() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || { echo "SKIP: needs $c"; exit 77; }
	done
	[ -e /dev/fuse ] || { echo "SKIP: needs /dev/fuse"; exit 77; }
}

# make_disk PATH: a 256 MiB sparse disk with random data, compressible
# text, written zeros and holes, and data in the short tail.
make_disk() {
	local p=$1 M=$((1024 * 1024))
	rm -f "$p"
	truncate -s $((256 * M - 12345)) "$p"
	head -c $((8 * M)) /dev/urandom | dd of="$p" bs=1M seek=0 conv=notrunc status=none
	head -c $((32 * M)) /dev/urandom | dd of="$p" bs=1M seek=40 conv=notrunc status=none
	yes "ferry test disk: compressible line of text 0123456789" |
		head -c $((32 * M)) | dd of="$p" bs=1M seek=72 conv=notrunc status=none
	head -c $((8 * M)) /dev/zero | dd of="$p" bs=1M seek=168 conv=notrunc status=none
	head -c $((3 * M + 777)) /dev/urandom | dd of="$p" bs=1 seek=$((200 * M - 5)) conv=notrunc status=none 2>/dev/null ||
		head -c $((3 * M + 777)) /dev/urandom | dd of="$p" oflag=seek_bytes seek=$((200 * M - 5)) conv=notrunc status=none
	head -c 4000 /dev/urandom | dd of="$p" oflag=seek_bytes seek=$((256 * M - 12345 - 4000)) conv=notrunc status=none
}

# start_export NAME=PATH...: sets EXPORT_PID and URL.
start_export() {
	local f="$T/url.$RANDOM"
	"$FERRY_EXPORT" --listen 127.0.0.1:0 --url-file "$f" "$@" \
		>"$T/export.out" 2>>"$T/export.log" &
	EXPORT_PID=$!
	PIDS+=("$EXPORT_PID")
	for _ in $(seq 100); do
		[ -s "$f" ] && break
		kill -0 "$EXPORT_PID" 2>/dev/null || fail "ferry-export exited"
		sleep 0.1
	done
	[ -s "$f" ] || fail "ferry-export did not write its URL"
	URL=$(cat "$f")
	TOKEN=${URL#ferry://}; TOKEN=${TOKEN%%@*}
	HOSTPORT=${URL#*@}; HOSTPORT=${HOSTPORT%%/*}
	PIN=${URL#*pin=}
}

# port_of FILE PID WHAT: the port a helper (tests/tools/*.py) writes to
# FILE once listening; fails the test if PID exits or 10 s pass first.
port_of() {
	for _ in $(seq 100); do
		[ -s "$1" ] && { cat "$1"; return 0; }
		kill -0 "$2" 2>/dev/null || break
		sleep 0.1
	done
	fail "$3 did not start"
}

# mount_ferry SOURCE MNT [OPTIONS]: ferryfs -f in the background; sets FS_PID.
mount_ferry() {
	local src=$1 mnt=$2 opts=${3:-}
	mkdir -p "$mnt"
	MOUNTS+=("$mnt")
	"$FERRYFS" -f ${opts:+-o "$opts"} "$src" "$mnt" 2>>"$T/ferryfs.log" &
	FS_PID=$!
	PIDS+=("$FS_PID")
	for _ in $(seq 100); do
		[ -f "$mnt/.ferry/status.json" ] && return 0
		kill -0 "$FS_PID" 2>/dev/null || fail "ferryfs exited before mounting"
		sleep 0.1
	done
	fail "ferryfs did not mount $mnt"
}

# unmount_ferry MNT: unmount and wait for ferryfs to exit cleanly.
unmount_ferry() {
	local i
	# A reader that just finished (a process substitution) may still hold
	# a file open for a moment: EBUSY is retried briefly.
	for i in $(seq 50); do
		fusermount3 -u "$1" 2>"$T/umount.err" && break
		grep -q busy "$T/umount.err" || break
		sleep 0.1
	done
	is_mounted "$1" && fail "fusermount3 -u $1: $(cat "$T/umount.err")"
	timeout 30 tail --pid="$FS_PID" -f /dev/null || fail "ferryfs did not exit"
	wait "$FS_PID" || fail "ferryfs exited with $?"
}

# expect_refused SOURCE OPTIONS PATTERN: ferryfs must exit non-zero (not
# hang), mount nothing, and say why in a line or two matching PATTERN.
expect_refused() {
	local rc=0 mnt="$T/refused"
	mkdir -p "$mnt"
	timeout 60 "$FERRYFS" -f ${2:+-o "$2"} "$1" "$mnt" 2>"$T/refused.log" || rc=$?
	[ "$rc" -ne 0 ] || fail "ferryfs accepted $1"
	[ "$rc" -ne 124 ] || fail "ferryfs hung on $1"
	if is_mounted "$mnt"; then
		fusermount3 -u "$mnt"
		fail "mounted $1"
	fi
	[ "$(wc -l < "$T/refused.log")" -le 2 ] || fail "more than a line or two: $(cat "$T/refused.log")"
	grep -qi -- "$3" "$T/refused.log" || fail "message for $1 lacks '$3': $(cat "$T/refused.log")"
	ok "refused ($3), exit $rc: $(head -1 "$T/refused.log")"
}

# sanitized BINARY: built with AddressSanitizer (whose quarantine holds
# up to 256 MiB of freed memory) or ThreadSanitizer (whose shadow memory
# is several times the program's), so RSS bounds differ.
sanitized() {	# (not ldd | grep -q: under pipefail, ldd's SIGPIPE when
		# grep stops early made this false now and then)
	case "$(ldd "$1" 2>/dev/null)" in *libasan* | *libtsan*) return 0 ;; esac
	return 1
}

# status MNT DISK FIELD: one field of .ferry/status.json.
status() {
	jq -r --arg d "$2" ".disks[] | select(.name == \$d) | .$3" "$1/.ferry/status.json"
}

# wait_state MNT DISK STATE [SECONDS]
wait_state() {
	local i
	for i in $(seq $((${4:-120} * 10))); do
		[ "$(status "$1" "$2" state)" = "$3" ] && return 0
		sleep 0.1
	done
	fail "$2 did not reach $3: $(cat "$1/.ferry/status.json")"
}

# resync_run MNT [SECONDS]: "resync" in MNT's control file; fails unless
# it ends "done".
resync_run() {
	echo resync >"$1/.ferry/control" || fail "resync refused"
	for _ in $(seq $((${2:-120} * 10))); do
		[ "$(jq -r .resync.state "$1/.ferry/status.json")" = running ] || break
		sleep 0.1
	done
	[ "$(jq -r .resync.state "$1/.ferry/status.json")" = done ] ||
		fail "resync: $(jq -c .resync "$1/.ferry/status.json")"
}

# resync_mount MNT DISK [SECONDS]: resync_run, then wait for DISK to be
# complete again.
resync_mount() {
	resync_run "$1" "${3:-120}"
	wait_state "$1" "$2" complete "${3:-120}"
}

# api PATH [CURL ARGS...]: HTTP status of an authenticated request.
api() {
	local path=$1
	shift
	curl -sk --path-as-is -o "$T/body" -w '%{http_code}' \
		-H "Authorization: Bearer $TOKEN" "$@" "https://$HOSTPORT$path"
}

# start_listen MNT [OPTIONS]: ferryfs -f --listen 127.0.0.1:PORT (PORT:
# $LISTEN_PORT, default a free one) in the background; sets FS_PID,
# CONNECT (the connection string sources dial), CONNECT_FILE and
# LISTEN_PORT.
start_listen() {
	local mnt=$1 opts=${2:-}
	CONNECT_FILE="$T/connect.$RANDOM"
	mkdir -p "$mnt"
	MOUNTS+=("$mnt")
	"$FERRYFS" -f ${opts:+-o "$opts"} --listen "127.0.0.1:${LISTEN_PORT:-0}" \
		--url-file "$CONNECT_FILE" "$mnt" >"$T/listen.out" 2>>"$T/ferryfs.log" &
	FS_PID=$!
	PIDS+=("$FS_PID")
	for _ in $(seq 100); do
		[ -s "$CONNECT_FILE" ] && [ -f "$mnt/.ferry/status.json" ] && break
		kill -0 "$FS_PID" 2>/dev/null || fail "ferryfs --listen exited"
		sleep 0.1
	done
	[ -s "$CONNECT_FILE" ] || fail "ferryfs --listen wrote no connection string"
	CONNECT=$(cat "$CONNECT_FILE")
	LISTEN_PORT=${CONNECT#*@}; LISTEN_PORT=${LISTEN_PORT%%/*}; LISTEN_PORT=${LISTEN_PORT##*:}
}

# start_source NAME DISK=PATH... [-- EXTRA OPTIONS]: ferry-export
# --connect @CONNECT_FILE --name NAME in the background, logging to
# $T/export-NAME.log; sets SRC_PID.
start_source() {
	local name=$1
	shift
	"$FERRY_EXPORT" --connect "@$CONNECT_FILE" --name "$name" "$@" \
		>>"$T/export-$name.out" 2>>"$T/export-$name.log" &
	SRC_PID=$!
	PIDS+=("$SRC_PID")
}

# source_field MNT NAME FIELD: one field of a source in MNT/.ferry/status.json.
source_field() {
	jq -r --arg n "$2" ".sources[] | select(.name == \$n) | .$3" "$1/.ferry/status.json"
}

# wait_source MNT NAME STATE [SECONDS]
wait_source() {
	for _ in $(seq $((${4:-120} * 10))); do
		[ "$(source_field "$1" "$2" state 2>/dev/null)" = "$3" ] && return 0
		sleep 0.1
	done
	fail "source $2 did not reach $3: $(cat "$1/.ferry/status.json")"
}

# tcp_listening PID: the TCP sockets PID listens on, one per line.
tcp_listening() {
	ss -Hltnp | grep "pid=$1," || true
}
