#!/usr/bin/env bash
# ferry-convert straight into S3: a real Ceph RGW on 127.0.0.1 (started
# here, tests/ceph-rgw.sh). From a cold mount, qcow2 and raw images are
# uploaded as multipart uploads in arrival order, fetched back with s3cmd
# (not ferry) and compared with the source (qemu-img compare, cmp). Killed
# with -9 mid-upload, a rerun sends no part the journal had saved, and the
# object is equal. --update after a resync uploads only the parts that
# changed (the rest copied inside S3), and --verify reads the object back.
# A wrong secret, a missing bucket and an RGW stopped
# mid-upload each give a clear error and a non-zero exit, and no object.
. "$(dirname "$0")/functions.sh"
requires qemu-img jq cmp s3cmd radosgw ceph-mon ceph-osd python3
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (Ceph daemons)"; exit 77; }
. "$(dirname "$0")/ceph-rgw.sh"

M=1048576
rgw_start
s3cmd_ mb s3://ferry-test >/dev/null || fail "s3cmd mb"
ok "Ceph RGW up on $S3_ENDPOINT"
make_disk "$T/disk.img"
start_export disk="$T/disk.img"

# put_count KEY PART: how many times RGW took part PART of KEY.
put_count() {
	grep -c "\"PUT /ferry-test/$1?partNumber=$2&uploadId=[^ ]* HTTP/1.1\" 200" "$T/ceph/log/rgw.log"
}

# qcow2 from a cold, capped mount: parts go as their data arrives.
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,bwlimit=40M"
timeout 300 "$FERRY_CONVERT" -O qcow2 --parallel 3 --part-size 5M --progress=json --verify \
	--journal "$T/q.journal" "$T/mnt/disk.raw" s3://ferry-test/disk.qcow2 >"$T/verify.out" 2>"$T/convert.log" ||
	fail "ferry-convert to s3:// qcow2: $(tail -3 "$T/convert.log")"
# --verify: the object read back by ranged GETs, its content hashed.
[ "$(cut -d' ' -f1 "$T/verify.out")" = "$(sha256sum <"$T/disk.img" | cut -d' ' -f1)" ] ||
	fail "--verify printed $(cat "$T/verify.out"), not the source's SHA-256"
gets=$(grep -c '"GET /ferry-test/disk.qcow2 HTTP/1.1" 206' "$T/ceph/log/rgw.log")
[ "$gets" -ge 1 ] || fail "--verify read nothing back from the object"
grep -q '"transfer":{"done":[0-9]*,"total":[0-9]*,"rate":[0-9]*},"convert":{"done":[0-9]*,"total":[0-9]*,"rate":[0-9]*},"upload":{"done":' "$T/convert.log" ||
	fail "no transfer, convert and upload progress: $(tail -2 "$T/convert.log")"
grep '^{' "$T/convert.log" | tail -1 | jq -e '.state == "done" and .upload.done == .upload.total' >/dev/null ||
	fail "the last progress line: $(grep "^{" "$T/convert.log" | tail -1)"
s3cmd_ get --force s3://ferry-test/disk.qcow2 "$T/got.qcow2" >/dev/null || fail "s3cmd get disk.qcow2"
qemu-img compare -q -f qcow2 -F raw "$T/got.qcow2" "$T/disk.img" || fail "the uploaded qcow2 differs from the source"
cmp "$T/got.qcow2" "$T/mnt/disk.qcow2" || fail "the uploaded qcow2 is not the mount's qcow2 view"
parts=$(grep -c '"PUT /ferry-test/disk.qcow2?partNumber=' "$T/ceph/log/rgw.log")
ok "cold mount -> s3://ferry-test/disk.qcow2 in $parts parts: s3cmd get, qemu-img compare identical; --verify read it back in $gets ranged GETs: the source's SHA-256"

# --update after 3 chunks changed: only the parts that hold them are
# uploaded; the rest are copied inside S3 from the earlier object.
for c in 3 45 100; do
	head -c 512 /dev/urandom | dd of="$T/disk.img" bs=1 seek=$((c * M + 4096)) conv=notrunc status=none
done
resync_mount "$T/mnt" disk
timeout 300 "$FERRY_CONVERT" --update --verify -O qcow2 --parallel 3 --part-size 5M \
	--journal "$T/q.journal" "$T/mnt/disk.raw" s3://ferry-test/disk.qcow2 >"$T/verify2.out" 2>"$T/update.log" ||
	fail "--update to s3://: $(tail -3 "$T/update.log")"
read -r up upmib copied < <(sed -n 's/.*updated: \([0-9]*\) parts (\([0-9]*\) MiB) uploaded, \([0-9]*\) .*/\1 \2 \3/p' "$T/update.log")
[ -n "$up" ] && [ "$up" -le 3 ] && [ "$upmib" -le 15 ] && [ "$copied" -ge 10 ] ||
	fail "--update uploaded ${up:-?} parts (${upmib:-?} MiB), copied ${copied:-?}: $(cat "$T/update.log")"
[ "$(cut -d' ' -f1 "$T/verify2.out")" = "$(sha256sum <"$T/disk.img" | cut -d' ' -f1)" ] ||
	fail "--update --verify printed $(cat "$T/verify2.out"), not the changed source's SHA-256"
s3cmd_ get --force s3://ferry-test/disk.qcow2 "$T/got2.qcow2" >/dev/null || fail "s3cmd get after --update"
qemu-img compare -q -f qcow2 -F raw "$T/got2.qcow2" "$T/disk.img" || fail "after --update the object differs from the source"
ok "--update after 3 changed chunks: $up parts ($upmib MiB) uploaded, $copied copied inside S3 (UploadPartCopy); qemu-img compare identical"

# raw, killed with -9 mid-upload, then rerun.
unmount_ferry "$T/mnt"
rm -rf "$T/cache"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,bwlimit=20M"
J=$T/raw.journal
"$FERRY_CONVERT" -O raw --parallel 2 --part-size 5M --journal "$J" \
	"$T/mnt/disk.raw" s3://ferry-test/disk.raw 2>"$T/convert-raw.log" &
cpid=$!
PIDS+=("$cpid")
for _ in $(seq 300); do
	[ -s "$J" ] && [ "$(jq '[.etags[] | select(. != null)] | length' "$J" 2>/dev/null)" -ge 4 ] && break
	kill -0 "$cpid" 2>/dev/null || fail "ferry-convert ended before the kill: $(tail -3 "$T/convert-raw.log")"
	sleep 0.1
done
kill -9 "$cpid"
wait "$cpid" 2>/dev/null
saved=$(jq -r '[.etags | to_entries[] | select(.value != null) | .key + 1] | join(" ")' "$J")
nparts=$(jq '.etags | length' "$J")
[ -n "$saved" ] && [ "$(wc -w <<<"$saved")" -lt "$nparts" ] || fail "the kill came too late: parts saved: $saved of $nparts"
timeout 300 "$FERRY_CONVERT" -O raw --parallel 2 --part-size 5M --journal "$J" \
	"$T/mnt/disk.raw" s3://ferry-test/disk.raw 2>"$T/convert-raw2.log" ||
	fail "the rerun: $(tail -3 "$T/convert-raw2.log")"
grep -q "continuing upload" "$T/convert-raw2.log" || fail "the rerun did not continue: $(cat "$T/convert-raw2.log")"
for p in $saved; do
	[ "$(put_count disk.raw "$p")" = 1 ] || fail "part $p, saved before the kill, was sent $(put_count disk.raw "$p") times"
done
[ ! -e "$J" ] || fail "the journal is left after the upload completed"
s3cmd_ get --force s3://ferry-test/disk.raw "$T/got.raw" >/dev/null || fail "s3cmd get disk.raw"
cmp "$T/got.raw" "$T/disk.img" || fail "the uploaded raw image differs from the source"
ok "kill -9 with $(wc -w <<<"$saved") of $nparts parts saved; the rerun sent none of them again; cmp equal"

# HTTPS: verified by default (a private CA is refused), --s3-ca trusts it.
rc=0
timeout 60 "$FERRY_CONVERT" -O raw --journal "$T/jt" --s3-endpoint "$S3_TLS_ENDPOINT" \
	"$T/mnt/disk.raw" s3://ferry-test/tls.raw 2>"$T/tls-refused.log" || rc=$?
[ "$rc" = 1 ] && grep -q "no answer from $S3_TLS_ENDPOINT: SSL peer certificate or SSH remote key was not OK" "$T/tls-refused.log" ||
	fail "an untrusted certificate: exit $rc: $(cat "$T/tls-refused.log")"
timeout 300 "$FERRY_CONVERT" -O raw --journal "$T/jt" --s3-endpoint "$S3_TLS_ENDPOINT" --s3-ca "$S3_CA" \
	"$T/mnt/disk.raw" s3://ferry-test/tls.raw 2>"$T/tls.log" || fail "--s3-ca: $(tail -3 "$T/tls.log")"
s3cmd_ get --force s3://ferry-test/tls.raw "$T/got-tls.raw" >/dev/null || fail "s3cmd get tls.raw"
cmp "$T/got-tls.raw" "$T/disk.img" || fail "the object uploaded over HTTPS differs"
ok "HTTPS: an unknown CA refused at once ($(grep -m1 -o 'SSL peer.*' "$T/tls-refused.log")), --s3-ca trusted: cmp equal"

# Refusals: nothing is left claimed done.
expect_s3_fail() {	# expect_s3_fail WHAT PATTERN ENV... -- ARGS...
	local what=$1 pat=$2 rc=0
	shift 2
	env "$@" 2>"$T/s3err.log" || rc=$?
	[ "$rc" = 1 ] || fail "$what: exit $rc: $(cat "$T/s3err.log")"
	grep -q -- "$pat" "$T/s3err.log" || fail "$what: message lacks '$pat': $(cat "$T/s3err.log")"
	ok "$what: exit 1: $(grep -m1 -- "$pat" "$T/s3err.log")"
}
expect_s3_fail "a wrong secret" "HTTP 403 SignatureDoesNotMatch" AWS_SECRET_ACCESS_KEY=wrong-secret \
	timeout 60 "$FERRY_CONVERT" -O raw --journal "$T/j1" "$T/mnt/disk.raw" s3://ferry-test/bad.raw
expect_s3_fail "a missing bucket" "no bucket no-such-bucket" \
	timeout 60 "$FERRY_CONVERT" -O raw --journal "$T/j2" "$T/mnt/disk.raw" s3://no-such-bucket/x.raw
! s3cmd_ ls s3://ferry-test/bad.raw | grep -q bad.raw || fail "an object was made with a wrong secret"

# RGW stopped mid-upload: a clear error after the retries, the upload kept.
unmount_ferry "$T/mnt"
rm -rf "$T/cache"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache,bwlimit=10M"
"$FERRY_CONVERT" -O raw --part-size 5M --journal "$T/j3" "$T/mnt/disk.raw" s3://ferry-test/gone.raw \
	2>"$T/convert-gone.log" &
cpid=$!
PIDS+=("$cpid")
for _ in $(seq 300); do
	[ -s "$T/j3" ] && [ "$(jq '[.etags[] | select(. != null)] | length' "$T/j3" 2>/dev/null)" -ge 1 ] && break
	sleep 0.1
done
rgw_stop
rc=0
timeout 120 tail --pid="$cpid" -f /dev/null || fail "ferry-convert hung with the RGW gone"
wait "$cpid" || rc=$?
[ "$rc" = 1 ] || fail "RGW stopped: exit $rc: $(tail -3 "$T/convert-gone.log")"
grep -q "no answer from $S3_ENDPOINT" "$T/convert-gone.log" && grep -q "the upload is kept" "$T/convert-gone.log" ||
	fail "RGW stopped: $(tail -3 "$T/convert-gone.log")"
! grep -q "complete," "$T/convert-gone.log" || fail "RGW stopped, yet complete"
ok "RGW stopped mid-upload: exit 1: $(grep -m1 "no answer" "$T/convert-gone.log" | cut -c1-120)"
