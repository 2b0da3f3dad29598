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
