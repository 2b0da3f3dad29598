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
	[ -n "${KEEP_W:-}" ] || rm -rf "$W" 2>/dev/null || true
}
trap cleanup EXIT
M=1048576

# median: the middle of the numbers on stdin, one per line.
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# stripe_disk PATH MIB [STRAY]: a disk of MIB MiB in 8 MiB stripes, stripe
# i by i%5: 0-1 holes, 2 random, 3 compressible text, 4 half random half
# written zeros (~40% holes, ~60% allocated). With STRAY=1 a random 3 KiB
# sits 5 KiB before each hole, so data straddles cluster and block bounds.
stripe_disk() {
	python3 - "$1" "$2" "${3:-0}" <<'PY'
import os, sys
path, mib, stray = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
S = 8 << 20
text = (b"ferry benchmark disk: a compressible line of text\n" * (S // 50 + 1))[:S]
with open(path, "wb") as f:
    f.truncate(mib << 20)
    for i in range(mib // 8):
        off, k = i * S, i % 5
        if k == 2:
            f.seek(off); f.write(os.urandom(S))
        elif k == 3:
            f.seek(off); f.write(text)
        elif k == 4:
            f.seek(off); f.write(os.urandom(S // 2) + bytes(S // 2))
        if stray and k in (0, 1) and i > 0:
            f.seek(off - 5 * 1024); f.write(os.urandom(3 * 1024))
PY
}
