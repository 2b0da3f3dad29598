#!/usr/bin/env bash
# A lying exporter: a man in the middle with the exporter's own key
# (tests/tools/liar.py) rewrites its answers into well-formed HTTP that says
# something false: another Content-Range, a 200 or a 500 for a 206, a body
# too long or too short, a listing or an extent map that is not JSON, or
# whose extents overlap or leave the disk, garbage or wrong digests. Each
# lie is refused with a log line naming it and retried where a retry may
# help; reads end with the right bytes or EIO, and no cache ever holds a
# byte the liar sent in place of the disk's.
. "$(dirname "$0")/functions.sh"
requires jq cmp python3 openssl

LIAR="$(dirname "$0")/tools/liar.py"
make_disk "$T/disk.img"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$T/key.pem" -out "$T/cert.pem" -days 2 -subj /CN=ferry-test \
	2>/dev/null || fail "openssl could not make a key"
start_export --cert "$T/cert.pem" --key "$T/key.pem" disk="$T/disk.img"
PORT=${HOSTPORT##*:}

# start_liar LIE COUNT: the liar in front of the exporter; sets LURL.
start_liar() {
	rm -f "$T/liar.port"
	python3 "$LIAR" --upstream "$PORT" --port-file "$T/liar.port" \
		--cert "$T/cert.pem" --key "$T/key.pem" --lie "$1" \
		--count "$2" 2>>"$T/liar.log" &
	LIAR_PID=$!
	PIDS+=("$LIAR_PID")
	local port
	port=$(port_of "$T/liar.port" "$LIAR_PID" "the liar") || exit 1
	LURL="ferry://$TOKEN@127.0.0.1:$port/?pin=$PIN"
}

# liar_asked: how many GET .../digests the liar stopped last saw.
liar_asked() { tail -1 "$T/liar.log" | sed -n 's/.* \([0-9]*\) digests asked$/\1/p'; }

# stop_liar: stop it and check it told at least one lie.
stop_liar() {
	kill "$LIAR_PID"
	wait "$LIAR_PID" 2>/dev/null
	tail -1 "$T/liar.log" | grep -q ", [1-9][0-9]* lies" || fail "the liar told no lie: $(tail -1 "$T/liar.log")"
}

OPTS="prefetch=0,compress=0,chunk=256K,views=raw,stall_timeout=2"

# Lies about data, on the first 3 answers: each is refused for what it is,
# retried on a fresh connection, and the whole disk reads right.
while read -r lie why; do
	start_liar "$lie" 3
	: >"$T/ferryfs.log"
	mount_ferry "$LURL" "$T/mnt" "cache=$T/cache-$lie,$OPTS"
	timeout 120 cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "$lie: the view differs from the source"
	grep -q "$why" "$T/ferryfs.log" || fail "$lie: no log line saying '$why'"
	failures=$(jq .link.failures "$T/mnt/.ferry/status.json")
	[ "$failures" -ge 1 ] || fail "$lie: no failure counted"
	unmount_ferry "$T/mnt"
	stop_liar
	ok "$lie: refused ($why), $failures failed attempts, then read right"
done <<'LIES'
range-start another range than asked
range-total another range than asked
status-200 ignored the Range request
status-500 HTTP 500
extra more bytes than the range
short short body
LIES

# The same lie on zstd answers (compress=1): the decoded bytes are checked
# against the same range, so it is refused the same way.
start_liar extra 3
: >"$T/ferryfs.log"
mount_ferry "$LURL" "$T/mnt" "cache=$T/cache-extra-zstd,prefetch=0,compress=1,chunk=256K,views=raw,stall_timeout=2"
timeout 120 cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "extra (zstd): the view differs from the source"
grep -Eq "corrupt zstd body|more bytes than the range" "$T/ferryfs.log" || fail "extra (zstd): no log line"
unmount_ferry "$T/mnt"
stop_liar
ok "extra bytes after a zstd body: refused, then read right"

# A liar on every answer: the reader gets EIO once -o timeout= runs out,
# and nothing is cached.
start_liar range-start 0
: >"$T/ferryfs.log"
mount_ferry "$LURL" "$T/mnt" "cache=$T/cache-always,$OPTS,timeout=3"
if timeout 60 dd if="$T/mnt/disk.raw" of=/dev/null bs=256K skip=160 count=1 status=none 2>"$T/dd.err"; then
	fail "a range the liar always moved was read"
fi
grep -q "Input/output error" "$T/dd.err" || fail "not EIO: $(cat "$T/dd.err")"
[ "$(status "$T/mnt" disk chunks_cached)" = 0 ] || fail "a lied-about chunk was cached"
unmount_ferry "$T/mnt"
stop_liar
ok "lying on every answer: EIO after the timeout, nothing cached"

# Lies about digests, on the first 2 answers of .../digests, which a client
# asks when the data comes without in-band digests (the liar takes them
# out): garbage is refused and asked again; a wrong digest makes the right
# data look wrong, so the chunk is fetched again (never cached on a
# mismatch) and then reads right.
start_liar digests-json 2
: >"$T/ferryfs.log"
mount_ferry "$LURL" "$T/mnt" "cache=$T/cache-digests-json,$OPTS"
timeout 120 cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "digests-json: the view differs"
grep -q "bad digests" "$T/ferryfs.log" || fail "digests-json: no log line"
unmount_ferry "$T/mnt"
stop_liar
[ "$(liar_asked)" -ge 1 ] || fail "digests-json: no .../digests asked: $(tail -1 "$T/liar.log")"
ok "digests-json: refused ('bad digests'), asked again, read right"

# A wrong digest, from .../digests (digests-wrong) or in-band with a run's
# data (inband-wrong, where no .../digests is asked on the way), makes the
# chunk look wrong: it is fetched again (with its digest) and reads right.
for lie in digests-wrong inband-wrong; do
	start_liar "$lie" 2
	: >"$T/ferryfs.log"
	mount_ferry "$LURL" "$T/mnt" "cache=$T/cache-$lie,$OPTS"
	timeout 120 cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "$lie: the view differs"
	bad=$(status "$T/mnt" disk digest_mismatches)
	[ "$bad" -ge 1 ] || fail "$lie: no mismatch counted"
	grep -q "differs from the source's digest" "$T/ferryfs.log" || fail "$lie: no log line"
	unmount_ferry "$T/mnt"
	stop_liar
	asked=$(liar_asked)
	case $lie in
	digests-*) [ "${asked:-0}" -ge 1 ] || fail "$lie: no .../digests asked: $(tail -1 "$T/liar.log")" ;;
	*) [ "$asked" = 0 ] || fail "$lie: .../digests asked apart: $(tail -1 "$T/liar.log")" ;;
	esac
	ok "$lie: $bad mismatches, the chunk fetched again, read right ($asked .../digests asked)"
done

# Small reads (-o smallread=) are checked too, by the digests that come
# in-band with their data: a 4 KiB read whose bytes were changed, or whose
# digest was, is not answered with them; its chunk is fetched and checked
# instead, and the read is right.
want=$T/small.want
dd if="$T/disk.img" of="$want" bs=4096 skip=$((44 * 256 + 3)) count=1 status=none
for lie in small-flip inband-wrong; do
	start_liar "$lie" 1
	: >"$T/ferryfs.log"
	mount_ferry "$LURL" "$T/mnt" "cache=$T/small-cache-$lie,$OPTS"
	timeout 60 dd if="$T/mnt/disk.raw" of="$T/small" bs=4096 skip=$((44 * 256 + 3)) count=1 \
		status=none || fail "$lie: the 4 KiB read failed"
	cmp "$T/small" "$want" || fail "$lie: the 4 KiB read is wrong"
	bad=$(status "$T/mnt" disk digest_mismatches)
	[ "$bad" -ge 1 ] || fail "$lie: no mismatch counted"
	grep -q "differs from the source's digest; reading its chunk" "$T/ferryfs.log" ||
		fail "$lie: no log line"
	[ "$(status "$T/mnt" disk small_reads)" = 0 ] || fail "$lie: answered as a small read"
	unmount_ferry "$T/mnt"
	stop_liar
	ok "$lie: the small read's block differed, its chunk was read instead, right"
done

# Lies about what the disks are: ferryfs refuses to mount, in a line or
# two that say what was wrong, and writes no cache file.
while read -r lie why; do
	start_liar "$lie" 0
	expect_refused "$LURL" "cache=$T/cache-refused" "$why"
	stop_liar
	[ -z "$(find "$T/cache-refused" -type f ! -name .lock 2>/dev/null)" ] ||
		fail "$lie: a cache was written: $(find "$T/cache-refused" -type f ! -name .lock)"
done <<'LIES'
listing-json bad disk listing: not JSON
extents-json bad extent map
extents-overlap bad extent map
extents-oob bad extent map
LIES

# No cache holds a lie: remounted straight on the exporter, each cache
# reads equal to the source without fetching anything again.
for c in "$T"/cache-*; do
	[ "$(basename "$c")" = cache-always ] && continue
	[ "$(basename "$c")" = cache-refused ] && continue
	mount_ferry "$URL" "$T/mnt" "cache=$c,$OPTS"
	cmp "$T/mnt/disk.raw" "$T/disk.img" || fail "$(basename "$c"): wrong bytes after remount"
	wire=$(status "$T/mnt" disk wire_bytes)
	[ "$wire" = 0 ] || fail "$(basename "$c"): $wire bytes fetched again after remount"
	unmount_ferry "$T/mnt"
done
ok "every cache equals the source after remount, nothing fetched again"
