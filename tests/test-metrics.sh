#!/usr/bin/env bash
# .ferry/metrics: Prometheus text format that promtool accepts, with
# values equal to status.json's; then a real Prometheus on 127.0.0.1
# scrapes it (through a small file server, as node_exporter's textfile
# collector or any web server would) and its HTTP API gives the value back.
. "$(dirname "$0")/functions.sh"
requires promtool prometheus jq python3 curl

truncate -s 64M "$T/disk.img"
head -c $((9 << 20)) /dev/urandom | dd of="$T/disk.img" bs=1M seek=5 conv=notrunc status=none
start_export --metrics-listen 127.0.0.1:0 disk="$T/disk.img"
mport=
for _ in $(seq 50); do
	mport=$(sed -n 's|.*metrics on http://127\.0\.0\.1:\([0-9]*\)/metrics.*|\1|p' "$T/export.log" | tail -1)
	[ -n "$mport" ] && break
	sleep 0.1
done
[ -n "$mport" ] || fail "ferry-export logged no --metrics-listen address: $(cat "$T/export.log")"
mount_ferry "$URL" "$T/mnt" "cache=$T/cache"
wait_state "$T/mnt" disk complete 60
promtool check metrics <"$T/mnt/.ferry/metrics" >"$T/promtool.log" 2>&1 ||
	fail "promtool check metrics: $(cat "$T/promtool.log")"
[ ! -s "$T/promtool.log" ] || fail "promtool warns: $(cat "$T/promtool.log")"
metric() { awk -v m="$1" '$1 ~ "^"m"[{]" {print $2}' "$T/mnt/.ferry/metrics"; }
for pair in bytes_received_total:data_bytes wire_bytes_total:wire_bytes cached_bytes:cached \
	    used_bytes:used chunks_cached:chunks_cached size_bytes:size; do
	m=ferry_disk_${pair%%:*} f=${pair##*:}
	[ "$(metric "$m")" = "$(status "$T/mnt" disk "$f")" ] ||
		fail "$m is $(metric "$m"), status.json's $f $(status "$T/mnt" disk "$f")"
done
[ "$(metric ferry_disk_complete)" = 1 ] && [ "$(metric ferry_link_up)" = 1 ] || fail "complete/link_up: $(cat "$T/mnt/.ferry/metrics")"
ok "promtool check metrics passes; values equal status.json's"

# A real Prometheus scrapes it.
python3 - "$T/mnt/.ferry/metrics" "$T/fileport" <<'PY' 2>"$T/fileserver.log" &
import http.server, sys
path, portfile = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(path, "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(portfile, "w").write(str(s.server_port))
s.serve_forever()
PY
PIDS+=($!)
fport=$(port_of "$T/fileport" "${PIDS[-1]}" "the file server")
pport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$T/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: ferryfs
    static_configs:
      - targets: ['127.0.0.1:$fport']
  - job_name: ferry-export
    scheme: https
    tls_config:
      insecure_skip_verify: true
    authorization:
      credentials: '$TOKEN'
    static_configs:
      - targets: ['$HOSTPORT']
  - job_name: ferry-export-plain
    static_configs:
      - targets: ['127.0.0.1:$mport']
YML
promtool check config "$T/prometheus.yml" >/dev/null 2>&1 || fail "promtool check config: $(promtool check config "$T/prometheus.yml" 2>&1)"
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/prom" \
	--web.listen-address="127.0.0.1:$pport" 2>"$T/prometheus.log" &
PIDS+=($!)
want=$(status "$T/mnt" disk data_bytes)
got=
for _ in $(seq 300); do
	got=$(curl -s "http://127.0.0.1:$pport/api/v1/query?query=ferry_disk_bytes_received_total" |
		jq -r '.data.result[0].value[1] // empty' 2>/dev/null)
	[ -n "$got" ] && break
	sleep 0.1
done
[ "$got" = "$want" ] || fail "Prometheus has ferry_disk_bytes_received_total=${got:-nothing}, not $want: $(tail -3 "$T/prometheus.log")"
served=
for _ in $(seq 300); do
	served=$(curl -s "http://127.0.0.1:$pport/api/v1/query?query=ferry_export_disk_served_bytes_total" |
		jq -r '.data.result[0].value[1] // empty' 2>/dev/null)
	[ -n "$served" ] && break
	sleep 0.1
done
[ -n "$served" ] && [ "$served" -ge "$want" ] || fail "Prometheus has ferry_export_disk_served_bytes_total=${served:-nothing}"
for _ in $(seq 100); do
	n=$(curl -s "http://127.0.0.1:$pport/api/v1/query?query=count(up==1)" | jq -r '.data.result[0].value[1] // 0')
	[ "$n" = 3 ] && break
	sleep 0.1
done
[ "$n" = 3 ] || fail "Prometheus has $n of 3 targets up: $(curl -s "http://127.0.0.1:$pport/api/v1/query?query=up")"
ok "Prometheus scraped .ferry/metrics (ferry_disk_bytes_received_total = $got) and the exporter over HTTPS with the token (ferry_export_disk_served_bytes_total = $served) and over --metrics-listen; 3 targets up"

# The exporter's GET /metrics, behind the token.
[ "$(api /metrics)" = 200 ] || fail "GET /metrics: $(cat "$T/body")"
cp "$T/body" "$T/export.metrics"
promtool check metrics <"$T/export.metrics" >"$T/promtool2.log" 2>&1 && [ ! -s "$T/promtool2.log" ] ||
	fail "promtool check metrics on the exporter's: $(cat "$T/promtool2.log")"
served=$(awk '$1 == "ferry_export_disk_served_bytes_total{disk=\"disk\"}" {print $2}' "$T/export.metrics")
[ "$served" -ge "$want" ] || fail "the exporter served ${served:-?} bytes, the mount received $want"
code=$(curl -sk -o /dev/null -w '%{http_code}' "https://$HOSTPORT/metrics")
[ "$code" = 401 ] || fail "GET /metrics without the token: $code"
[ "$(api /metrics)" = 200 ] || fail "GET /metrics again"
refused=$(awk '$1 == "ferry_export_refused_total{cause=\"token\"}" {print $2}' "$T/body")
[ "$refused" -ge 1 ] || fail "the refusal without a token is not counted: $(grep refused "$T/body")"
ok "ferry-export GET /metrics: promtool passes, $served bytes served >= $want received; 401 without the token, counted"

# --metrics-listen: plain HTTP, no token, /metrics only.
code=$(curl -s -o "$T/plain.metrics" -w '%{http_code}' "http://127.0.0.1:$mport/metrics")
[ "$code" = 200 ] || fail "GET /metrics on --metrics-listen: $code"
promtool check metrics <"$T/plain.metrics" >"$T/promtool3.log" 2>&1 && [ ! -s "$T/promtool3.log" ] ||
	fail "promtool on --metrics-listen's: $(cat "$T/promtool3.log")"
grep -q '^ferry_export_disk_served_bytes_total{disk="disk"} ' "$T/plain.metrics" || fail "no served bytes on --metrics-listen"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$mport/v1/disks")" = 404 ] || fail "--metrics-listen serves more than /metrics"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$mport/metrics")" = 405 ] || fail "POST on --metrics-listen not refused"
ok "--metrics-listen: GET /metrics in plain HTTP without a token (promtool passes); /v1/disks 404, POST 405"
