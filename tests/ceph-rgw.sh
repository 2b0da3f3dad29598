# A single-node Ceph cluster with an S3 gateway, for tests: sourced by a
# test after functions.sh (root; Debian's ceph-mon, ceph-osd, radosgw).
#
#   rgw_start     one monitor and one memstore OSD on 127.0.0.1, radosgw on
#                 a free port, an S3 user; sets S3_ENDPOINT, S3_ACCESS,
#                 S3_SECRET, RGW_PID and exports AWS_* for the user; also
#                 HTTPS on another port with a certificate of a CA made
#                 here: S3_TLS_ENDPOINT, S3_CA
#   rgw_stop      stop radosgw only (a test of an S3 server going away)
#   s3cmd_ ARGS   Debian's s3cmd, configured for it
#
# Everything lives under $T/ceph; the daemons run in the foreground (-f),
# started here and stopped by PID in functions.sh's cleanup.

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rgw_start() {
	local D=$T/ceph fsid mon_port i
	mkdir -p "$D/mon" "$D/osd" "$D/rgw" "$D/run" "$D/log"
	fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
	mon_port=$(free_port)
	RGW_PORT=$(free_port)
	RGW_TLS_PORT=$(free_port)
	CEPH_CONF=$D/ceph.conf
	# A private CA and a certificate for 127.0.0.1 signed by it.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=ferry test CA" -keyout "$D/ca.key" -out "$D/ca.pem" 2>/dev/null || fail "openssl: CA"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
		-keyout "$D/rgw.key" -out "$D/rgw.csr" 2>/dev/null || fail "openssl: key"
	printf 'subjectAltName=IP:127.0.0.1\n' >"$D/san.ext"
	openssl x509 -req -in "$D/rgw.csr" -CA "$D/ca.pem" -CAkey "$D/ca.key" -CAcreateserial \
		-days 2 -extfile "$D/san.ext" -out "$D/rgw.pem" 2>/dev/null || fail "openssl: certificate"
	S3_CA=$D/ca.pem
	cat >"$CEPH_CONF" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
mon initial members = a
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
# Daemons prefer msgr2's "secure" mode, which needs cephx's session keys.
ms client mode = crc
ms cluster mode = crc
ms service mode = crc
ms mon client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms bind ipv4 = true
ms bind ipv6 = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = ${RGW_MEMSTORE_BYTES:-2147483648}
osd class dir = /usr/lib/x86_64-linux-gnu/rados-classes
erasure code dir = /usr/lib/x86_64-linux-gnu/ceph/erasure-code
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
keyring = $D/keyring
mon data = $D/mon
osd data = $D/osd
mon cluster log file = $D/log/cluster.log
mgr initial modules =
mon warn on pool no redundancy = false
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT ssl_endpoint=127.0.0.1:$RGW_TLS_PORT ssl_certificate=$D/rgw.pem ssl_private_key=$D/rgw.key
rgw data = $D/rgw
rgw dns name = 127.0.0.1
log file = $D/log/rgw.log
debug rgw = 1
debug ms = 0
EOF
	export CEPH_CONF
	ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null ||
		fail "ceph-authtool"
	monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$D/monmap" >/dev/null ||
		fail "monmaptool"
	ceph-mon -c "$CEPH_CONF" --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring" 2>"$D/log/mkfs-mon.err" ||
		fail "ceph-mon --mkfs: $(cat "$D/log/mkfs-mon.err")"
	ceph-mon -c "$CEPH_CONF" -f -i a 2>>"$D/log/mon.err" &
	PIDS+=($!)
	timeout 30 ceph -c "$CEPH_CONF" osd create >/dev/null 2>"$D/log/osd-create.err" ||
		fail "ceph osd create: $(cat "$D/log/osd-create.err")"
	ceph-osd -c "$CEPH_CONF" -i 0 --mkfs 2>"$D/log/mkfs-osd.err" >/dev/null ||
		fail "ceph-osd --mkfs: $(tail -3 "$D/log/mkfs-osd.err")"
	ceph-osd -c "$CEPH_CONF" -f -i 0 2>>"$D/log/osd.err" &
	PIDS+=($!)
	for i in $(seq 60); do
		timeout 10 ceph -c "$CEPH_CONF" osd stat 2>/dev/null | grep -q "1 up" && break
		sleep 0.5
	done
	timeout 10 ceph -c "$CEPH_CONF" osd stat 2>/dev/null | grep -q "1 up" || fail "the OSD did not come up"
	radosgw -c "$CEPH_CONF" -f -n client.rgw 2>>"$D/log/rgw.err" &
	RGW_PID=$!
	PIDS+=("$RGW_PID")
	for i in $(seq 120); do
		curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" && break
		kill -0 "$RGW_PID" 2>/dev/null || fail "radosgw exited: $(tail -5 "$D/log/rgw.log" "$D/log/rgw.err")"
		sleep 0.5
	done
	curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" || fail "radosgw did not answer on $RGW_PORT"
	S3_ACCESS=FERRYTESTACCESSKEY01
	S3_SECRET=$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
	timeout 60 radosgw-admin -c "$CEPH_CONF" -n client.rgw user create --uid=ferry --display-name=ferry \
		--access-key="$S3_ACCESS" --secret-key="$S3_SECRET" >/dev/null 2>"$D/log/user.err" ||
		fail "radosgw-admin user create: $(tail -3 "$D/log/user.err")"
	S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
	S3_TLS_ENDPOINT=https://127.0.0.1:$RGW_TLS_PORT
	export AWS_ACCESS_KEY_ID=$S3_ACCESS AWS_SECRET_ACCESS_KEY=$S3_SECRET
	export AWS_ENDPOINT_URL=$S3_ENDPOINT AWS_DEFAULT_REGION=us-east-1
	cat >"$D/s3cfg" <<EOF
[default]
access_key = $S3_ACCESS
secret_key = $S3_SECRET
host_base = 127.0.0.1:$RGW_PORT
host_bucket = 127.0.0.1:$RGW_PORT
use_https = False
signature_v2 = False
EOF
}

rgw_stop() {
	kill "$RGW_PID" 2>/dev/null
	timeout 10 tail --pid="$RGW_PID" -f /dev/null || kill -9 "$RGW_PID" 2>/dev/null
}

s3cmd_() {
	timeout 120 s3cmd -c "$T/ceph/s3cfg" "$@"
}
