#!/usr/bin/env bash
# ferryfs on a plain https:// URL of one image served by nginx (any
# range-capable server stands in for ferry-export when only bytes are
# needed): the raw view equals the image, and a server that ignores Range
# or a certificate nobody vouches for is refused with a clear message.
. "$(dirname "$0")/functions.sh"
requires curl jq openssl nginx python3

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

mkdir -p "$T/www"
make_disk "$T/www/vm-disk.img"
# nginx's workers run as another user: let them read the image.
chmod 755 "$T" "$T/www"
chmod 644 "$T/www/vm-disk.img"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null || fail "openssl req"

# start_nginx EXTRA-DIRECTIVES: nginx in the foreground on a free port.
start_nginx() {
	PORT=$(free_port)
	mkdir -p "$T/nginx"
	cat > "$T/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path $T/nginx; proxy_temp_path $T/nginx;
	fastcgi_temp_path $T/nginx; uwsgi_temp_path $T/nginx; scgi_temp_path $T/nginx;
	server {
		listen 127.0.0.1:$PORT ssl;
		ssl_certificate $T/cert.pem;
		ssl_certificate_key $T/key.pem;
		root $T/www;
		$1
	}
}
CONF
	nginx -c "$T/nginx.conf" -e "$T/nginx.log" &
	NGINX_PID=$!
	PIDS+=("$NGINX_PID")
	for _ in $(seq 50); do
		curl -s --cacert "$T/cert.pem" -o /dev/null "https://127.0.0.1:$PORT/" && return 0
		curl -s --cacert "$T/cert.pem" -o /dev/null -w '%{http_code}' \
			"https://127.0.0.1:$PORT/vm-disk.img" -r 0-0 | grep -q 206 && return 0
		sleep 0.1
	done
	fail "nginx did not start: $(cat "$T/nginx.log")"
}

start_nginx ""
SRC="https://127.0.0.1:$PORT/vm-disk.img"

mount_ferry "$SRC" "$T/mnt" "cache=$T/cache,cacert=$T/cert.pem,prefetch=0"
ls "$T/mnt" | grep -qx vm-disk.raw || fail "no vm-disk.raw: $(ls "$T/mnt")"
[ "$(stat -c %s "$T/mnt/vm-disk.raw")" = "$(stat -c %s "$T/www/vm-disk.img")" ] || fail "size"
cmp "$T/mnt/vm-disk.raw" "$T/www/vm-disk.img" || fail "view differs from the image"
[ "$(status "$T/mnt" vm-disk state)" = complete ] || fail "not complete after a full read"
unmount_ferry "$T/mnt"
ok "https:// URL on nginx: raw view == image"

# The object replaced while mounted: no read mixes the two versions. Range
# requests carry the ETag mounted (If-Match); nginx answers 412 for the new
# one, and the read fails with a line that says why.
mount_ferry "$SRC" "$T/mnt" "cache=$T/cache6,cacert=$T/cert.pem,prefetch=0,views=raw,timeout=30"
cmp -n $((8 * 1048576)) "$T/mnt/vm-disk.raw" "$T/www/vm-disk.img" || fail "the first 8 MiB"
make_disk "$T/new.img"
chmod 644 "$T/new.img"
touch -d @$(($(date +%s) + 100)) "$T/new.img"	# nginx's ETag: mtime and size
mv "$T/new.img" "$T/www/vm-disk.img"
rc=0
timeout 20 dd if="$T/mnt/vm-disk.raw" of="$T/after.bin" bs=1M skip=72 count=4 status=none 2>"$T/dd.err" || rc=$?
[ "$rc" != 124 ] || fail "a read of the replaced object hung"
[ "$rc" != 0 ] || fail "a read after the object was replaced went through: the disk mixes two versions"
err=$(status "$T/mnt" vm-disk error)
echo "$err" | grep -q "changed on the server" || fail "no 'changed on the server' in the disk's state: $err"
unmount_ferry "$T/mnt"
ok "the object replaced while mounted: the read fails ($(cat "$T/dd.err")); the state says: $err"

# Statuses: 400, 405 and 501 will not change with another try, and fail
# the read at once; 429 (busy) is retried, no sooner than its Retry-After.
# nginx answers the mount's one-byte probe, then the status for the data.
kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null
for c in 400 405 501 429; do
	ln -f "$T/www/vm-disk.img" "$T/www/s$c.img"
	locs="${locs:-}location = /s$c.img { if (\$http_range != \"bytes=0-0\") { add_header Retry-After 2 always; return $c; } } "
done
start_nginx "access_log $T/access.log; $locs"
for c in 400 405 501 429; do
	mount_ferry "https://127.0.0.1:$PORT/s$c.img" "$T/mnt" "cache=$T/cache-s$c,cacert=$T/cert.pem,prefetch=0,views=raw,timeout=5"
	t0=$(date +%s.%N)
	rc=0
	timeout 60 dd if="$T/mnt/s$c.raw" of=/dev/null bs=1M skip=40 count=1 status=none 2>/dev/null || rc=$?
	took=$(echo "$(date +%s.%N) - $t0" | bc)
	n=$(grep -c "/s$c.img HTTP/1.1\" $c " "$T/access.log")
	[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "HTTP $c: the read ended $rc after $took s"
	err=$(status "$T/mnt" s$c error)
	echo "$err" | grep -q "$c" || fail "HTTP $c: the state says $err"
	if [ "$c" = 429 ]; then
		# -o timeout=5: tries at 0, 2 and 4 s, a last one at 5, and
		# the kernel's second read (without Retry-After, the backoff
		# from 0.2 s would try 7 times).
		[ "$(echo "$took >= 4" | bc)" = 1 ] || fail "HTTP 429 given up after $took s, before -o timeout=5"
		[ "$n" -ge 2 ] && [ "$n" -le 5 ] || fail "HTTP 429 with Retry-After 2: $n requests in $took s"
	else
		[ "$(echo "$took < 3" | bc)" = 1 ] || fail "HTTP $c retried: the read took $took s"
		# The kernel asks once more after a failed readahead.
		[ "$n" -le 2 ] || fail "HTTP $c asked $n times"
	fi
	unmount_ferry "$T/mnt"
	ok "HTTP $c: the read fails after $took s, $n request(s): $err"
done
SRC="https://127.0.0.1:$PORT/vm-disk.img"

# Without the CA: TLS verification fails, clearly, and nothing mounts.
expect_refused "$SRC" "cache=$T/cache2" "certificate"

# A server that ignores Range (nginx max_ranges 0 answers 200 with the
# whole file) must never be taken for disk data.
kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null
start_nginx "max_ranges 0;"
SRC="https://127.0.0.1:$PORT/vm-disk.img"
expect_refused "$SRC" "cache=$T/cache3,cacert=$T/cert.pem" "ignored the Range"

# A missing file is a clear 404, a forbidden one a clear 403.
chmod 600 "$T/www/vm-disk.img"
expect_refused "$SRC" "cache=$T/cache5,cacert=$T/cert.pem" "access denied (HTTP 403)"
expect_refused "https://127.0.0.1:$PORT/nope.img" "cache=$T/cache4,cacert=$T/cert.pem" "not found (HTTP 404)"
