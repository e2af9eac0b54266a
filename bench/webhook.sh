#!/usr/bin/env bash
# Webhook load benchmark (not part of CI).
#
# Builds appscope-webhook in release mode and serves it over TLS on 127.0.0.1, pinned to
# one core (taskset -c 0). It loads the server with `oha` (installed from crates.io if
# missing), pinned to the other core, posting a realistic AdmissionReview (the nginx
# Deployment fixture, which gets an injection patch):
#   1. a fixed rate of 1,000 requests/s for $DURATION seconds (latency at a known load);
#   2. saturation: as fast as $CONNS keep-alive connections can go.
# It reports requests/s, p50/p99 latency, and the server's RSS (current and peak), and
# writes bench/results/webhook.md.
#
# Env: DURATION (default 20), CONNS (default 32), RATE (default 1000), PORT (default 18443).
# All traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-20}"
CONNS="${CONNS:-32}"
RATE="${RATE:-1000}"
PORT="${PORT:-18443}"
OUT=bench/results/webhook.md

command -v oha >/dev/null 2>&1 || cargo install --locked oha
cargo build --release -p appscope-webhook
BIN="${CARGO_TARGET_DIR:-target}/release/appscope-webhook"

work="$(mktemp -d)"
srv_pid=""
cleanup() { [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
cp webhook/tests/fixtures/01-nginx-deployment.json "$work/body.json"

RUST_LOG=warn taskset -c 0 "$BIN" --listen "127.0.0.1:$PORT" --certs files \
  --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" \
  --init-image ghcr.io/appscope/appscope-operator:bench --namespace appscope-system \
  2>"$work/server.log" &
srv_pid=$!
for _ in $(seq 100); do
  curl -sk "https://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -skf "https://127.0.0.1:$PORT/readyz" >/dev/null
# Sanity: the benchmarked request really gets a patch.
curl -sk -X POST -H 'Content-Type: application/json' --data-binary @"$work/body.json" \
  "https://127.0.0.1:$PORT/mutate" | grep -q '"patch"'

run() { # name, extra oha args...
  local name=$1; shift
  taskset -c 1 oha --no-tui --output-format json -z "${DURATION}s" --insecure -m POST \
    -H 'Content-Type: application/json' -D "$work/body.json" "$@" \
    "https://127.0.0.1:$PORT/mutate" >"$work/$name.json"
}
rss() { awk '/^VmRSS/{print $2}' "/proc/$srv_pid/status"; }
hwm() { awk '/^VmHWM/{print $2}' "/proc/$srv_pid/status"; }

load_before=$(cut -d" " -f1-3 /proc/loadavg)
rss_idle=$(rss)
run fixed -q "$RATE" -c "$CONNS"
rss_fixed=$(rss)
run saturation -c "$CONNS"
rss_sat=$(rss)
peak=$(hwm)
load_after=$(cut -d" " -f1-3 /proc/loadavg)
# Server-side handling time (body read to response), from its own histogram.
handler_us=$(curl -sk "https://127.0.0.1:$PORT/metrics" | awk '
  /^appscope_webhook_request_duration_seconds_sum/ {s=$2}
  /^appscope_webhook_request_duration_seconds_count/ {c=$2}
  END { if (c > 0) printf "%.1f", s / c * 1e6; else print "n/a" }')

summary() { # file -> "rps p50_ms p99_ms success_rate status_200"
  /usr/bin/python3 - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
print(f'{s["requestsPerSec"]:.0f} {p["p50"]*1000:.3f} {p["p99"]*1000:.3f} {s["successRate"]:.4f} {codes.get("200", 0)}')
EOF
}
read -r f_rps f_p50 f_p99 f_ok f_200 <<<"$(summary "$work/fixed.json")"
read -r s_rps s_p50 s_p99 s_ok s_200 <<<"$(summary "$work/saturation.json")"
body_bytes=$(wc -c <"$work/body.json")

mkdir -p bench/results
cat >"$OUT" <<EOF
# appscope-webhook benchmark

Run by \`bench/webhook.sh\` on $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)).
Release build; server pinned to CPU 0 (\`taskset -c 0\`), load generator \`oha\` $(oha --version | awk '{print $2}') pinned to CPU 1.
TLS 1.3 (rustls, ECDSA P-256), HTTP/1.1 keep-alive, ${CONNS} connections, ${DURATION} s per run.
Request: \`POST /mutate\` with the nginx Deployment fixture (${body_bytes} bytes of AdmissionReview), which receives an injection patch.

| Load | Requests/s | p50 | p99 | Success | 200s |
| --- | ---: | ---: | ---: | ---: | ---: |
| fixed ${RATE} req/s | ${f_rps} | ${f_p50} ms | ${f_p99} ms | ${f_ok} | ${f_200} |
| saturation (one core) | ${s_rps} | ${s_p50} ms | ${s_p99} ms | ${s_ok} | ${s_200} |

| Server RSS | KiB |
| --- | ---: |
| idle, after start | ${rss_idle} |
| after the fixed-rate run | ${rss_fixed} |
| after the saturation run | ${rss_sat} |
| peak (VmHWM) | ${peak} |

Mean server-side handling time per request (from \`appscope_webhook_request_duration_seconds\`,
excluding TLS and queueing): ${handler_us} µs.

Load average (1/5/15 min) before the runs: ${load_before}; after: ${load_after}. Other
processes compete for both cores when this is above ~0.5, and then the latency figures
measure scheduling delay as much as the webhook: rerun on an idle machine for the targets.

Targets: p99 under 2 ms at 1,000 req/s, RSS under 30 MB.
EOF
cat "$OUT"
