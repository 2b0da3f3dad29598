# Shared by the bench/ scripts: the built programs, the tools a script
# needs, a work directory, and a cleanup that unmounts and stops only what
# the script started ($FPID, $EPID), calls bench_cleanup if the script
# defines it, and removes $W.
# Usage: . bench/lib.sh TOOL...
set -eu
cd "$(dirname "$0")/.."
B=${FERRY_BUILD:-build}
EXPORT=$B/tools/export/ferry-export
FERRYFS=$B/fs/ferryfs
[ -x "$EXPORT" ] && [ -x "$FERRYFS" ] || { echo "build first: meson setup $B && ninja -C $B" >&2; exit 1; }
for c in fusermount3 "$@"; do command -v "$c" >/dev/null || { echo "needs $c" >&2; exit 1; }; done

W=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
EPID= FPID=
cleanup() {
	mountpoint -q "$W/mnt" 2>/dev/null && fusermount3 -u "$W/mnt"
	[ -n "$FPID" ] && wait "$FPID" 2>/dev/null || true
	[ -n "$EPID" ] && kill "$EPID" 2>/dev/null && wait "$EPID" 2>/dev/null || true
	declare -F bench_cleanup >/dev/null && bench_cleanup
	rm -rf "$W" 2>/dev/null || true
}
trap cleanup EXIT
M=1048576

# median: the middle of the numbers on stdin, one per line.
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
