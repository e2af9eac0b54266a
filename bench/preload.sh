#!/usr/bin/env bash
# Preload library benchmark: unscoped vs scoped, side by side, median of interleaved runs.
#   process start (/bin/true), per-call cost (dd bs=512), nginx 1 worker under wrk
#   (events+metrics, metrics only), RSS added (sleep), nginx worker RSS under load.
# Writes bench/results/preload.md. Not a test: takes a few minutes. Loopback only.
# Knobs: ROUNDS (default 5), STARTS (default 300), WRK_SECS (default 5), LIB (prebuilt .so;
# default: the shipped build, `cargo build --profile release-lib -p preload-lib`).
# Needs nginx, wrk, curl, bc and /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
STARTS=${STARTS:-300}
WRK_SECS=${WRK_SECS:-5}
if [ -z "${LIB:-}" ]; then
  cargo build -q --profile release-lib -p preload-lib
  LIB="$PWD/target/release-lib/libscope.so"
fi
for t in nginx wrk /usr/bin/python3 dd; do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }; done
work=$(mktemp -d /tmp/scope-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; rm -rf "$work"' EXIT

# Sinks for events (tcp) and metrics (udp) that read and discard, counting bytes.
cat > "$work/sink.py" <<'PY'
import socket, sys, threading, os
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("127.0.0.1", 0)); tcp.listen(128)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 0))
open(sys.argv[1], "w").write(f"{tcp.getsockname()[1]} {udp.getsockname()[1]}\n")
def drain(c):
    while c.recv(1 << 16): pass
def acc():
    while True:
        c, _ = tcp.accept(); threading.Thread(target=drain, args=(c,), daemon=True).start()
threading.Thread(target=acc, daemon=True).start()
while True: udp.recv(1 << 16)
PY
/usr/bin/python3 "$work/sink.py" "$work/ports" & 
for _ in $(seq 50); do [ -s "$work/ports" ] && break; sleep 0.1; done
read -r EVPORT MPORT < "$work/ports"

scoped_env=(LD_PRELOAD="$LIB" SCOPE_CRIBL_ENABLE=false SCOPE_LOG_LEVEL=warning
  SCOPE_LOG_DEST="file://$work/scope.log"
  SCOPE_EVENT_DEST="tcp://127.0.0.1:$EVPORT" SCOPE_METRIC_DEST="udp://127.0.0.1:$MPORT")
events_on=(SCOPE_EVENT_ENABLE=true SCOPE_METRIC_ENABLE=true)
metrics_only=(SCOPE_EVENT_ENABLE=false SCOPE_METRIC_ENABLE=true)

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# --- process start and RSS: a python driver (itself unscoped) spawns the children ----
cat > "$work/drive.py" <<'PY'
import os, sys, time, subprocess
mode, n = sys.argv[1], int(sys.argv[2])
# The driver itself always runs unscoped; CHILD_<VAR> become the children's <VAR>.
env = {k: v for k, v in os.environ.items() if not k.startswith("CHILD_")}
if mode == "scoped":
    env.update({k[6:]: v for k, v in os.environ.items() if k.startswith("CHILD_")})
if sys.argv[3] == "start":
    t0 = time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn("/bin/true", ["/bin/true"], env)
        os.waitpid(pid, 0)
    print((time.perf_counter() - t0) / n * 1e3)   # ms per start
else:  # rss of `sleep` after 1.5 s
    p = subprocess.Popen(["/bin/sleep", "5"], env=env)
    time.sleep(1.5)
    rss = [l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")][0].split()[1]
    p.kill(); p.wait(); print(rss)            # KiB
PY
child_env=()
for kv in "${scoped_env[@]}" "${events_on[@]}"; do child_env+=("CHILD_$kv"); done
declare -A R
for r in $(seq "$ROUNDS"); do
  R[start_plain]+="$(/usr/bin/python3 "$work/drive.py" plain "$STARTS" start) "
  R[start_scoped]+="$(env "${child_env[@]}" /usr/bin/python3 "$work/drive.py" scoped "$STARTS" start) "
  R[rss_plain]+="$(/usr/bin/python3 "$work/drive.py" plain 1 rss) "
  R[rss_scoped]+="$(env "${child_env[@]}" /usr/bin/python3 "$work/drive.py" scoped 1 rss) "
  t0=$(date +%s.%N); dd if=/dev/zero of=/dev/null bs=512 count=200000 2>/dev/null; t1=$(date +%s.%N)
  R[dd_plain]+="$(echo "$t1 - $t0" | bc -l) "
  t0=$(date +%s.%N); env "${scoped_env[@]}" "${events_on[@]}" dd if=/dev/zero of=/dev/null bs=512 count=200000 2>/dev/null; t1=$(date +%s.%N)
  R[dd_scoped]+="$(echo "$t1 - $t0" | bc -l) "
done

# --- nginx -------------------------------------------------------------------------
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/www" "$work/tmp"
head -c 612 /dev/zero | tr '\0' 'x' > "$work/www/index.html"
cat > "$work/nginx.conf" <<NG
worker_processes 1;
daemon off;
master_process on;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  server { listen 127.0.0.1:$port; location / { root $work/www; } }
}
NG
nginx_run() { # mode -> prints "req/s worker_rss_kib"
  local mode=$1
  case $mode in
    plain) nginx -p "$work" -c "$work/nginx.conf" & ;;
    events) env "${scoped_env[@]}" "${events_on[@]}" nginx -p "$work" -c "$work/nginx.conf" & ;;
    metrics) env "${scoped_env[@]}" "${metrics_only[@]}" nginx -p "$work" -c "$work/nginx.conf" & ;;
  esac
  local master=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
  wrk -t1 -c16 -d1s "http://127.0.0.1:$port/" >/dev/null 2>&1   # warm-up
  local out; out=$(wrk -t1 -c16 -d"${WRK_SECS}s" "http://127.0.0.1:$port/" 2>&1)
  local worker; worker=$(pgrep -P "$master" | head -1)
  local rss; rss=$(awk '/VmRSS/ {print $2}' "/proc/$worker/status" 2>/dev/null || echo 0)
  kill -QUIT "$master"; wait "$master" 2>/dev/null || true
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $rss"
}
for r in $(seq "$ROUNDS"); do
  for m in plain events metrics; do
    read -r rps rss < <(nginx_run "$m")
    R[ng_${m}]+="$rps "; R[ngrss_${m}]+="$rss "
  done
done

# --- instruction counts (valgrind callgrind; reproducible on a loaded machine) ---------
# Whole-process instructions of /bin/true, and per read+write pair of dd (the slope
# between two record counts, so start-up cost cancels out).
IC=()
if command -v valgrind >/dev/null; then
  icount() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null \
    | awk '/Collected/ {print $4}'; }
  tp=$(icount /bin/true); ts=$(env "${scoped_env[@]}" "${events_on[@]}" valgrind --tool=callgrind \
    --callgrind-out-file=/dev/null /bin/true 2>&1 >/dev/null | awk '/Collected/ {print $4}')
  ddi() { # env... -> instructions per read+write pair
    local a b
    a=$(env "$@" valgrind --tool=callgrind --callgrind-out-file=/dev/null dd if=/dev/zero of=/dev/null bs=512 count=10000 2>&1 >/dev/null | awk '/Collected/ {print $4}')
    b=$(env "$@" valgrind --tool=callgrind --callgrind-out-file=/dev/null dd if=/dev/zero of=/dev/null bs=512 count=30000 2>&1 >/dev/null | awk '/Collected/ {print $4}')
    echo $(( (b - a) / 20000 ))
  }
  dp_i=$(ddi LD_PRELOAD=); ds_i=$(ddi "${scoped_env[@]}" "${events_on[@]}")
  IC=("$tp" "$ts" "$dp_i" "$ds_i")
fi

med() { tr ' ' '\n' <<<"${R[$1]}" | grep -v '^$' | median; }
sp=$(med start_plain); ss=$(med start_scoped)
dp=$(med dd_plain); ds=$(med dd_scoped)
rp=$(med rss_plain); rs=$(med rss_scoped)
np=$(med ng_plain); ne=$(med ng_events); nm=$(med ng_metrics)
wp=$(med ngrss_plain); we=$(med ngrss_events)
f() { printf '%.*f' "$1" "$2"; }
added_start=$(echo "$ss - $sp" | bc -l)
dd_ratio=$(echo "$ds / $dp" | bc -l)
ev_ratio=$(echo "$ne / $np" | bc -l)
m_ratio=$(echo "$nm / $np" | bc -l)
rss_added=$(echo "($rs - $rp) / 1024" | bc -l)
verdict() { if [ "$(echo "$1" | bc -l)" = 1 ]; then echo met; else echo "NOT met"; fi; }
out=bench/results/preload.md
{
  echo "# Preload library benchmark"
  echo
  echo "Generated by \`bench/preload.sh\` on $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $ROUNDS interleaved rounds (median)."
  echo "Library: $LIB; scoped runs send events (tcp) and metrics (udp) to local sinks."
  echo
  echo "| measure | unscoped | scoped | result | target | |"
  echo "|---|---|---|---|---|---|"
  echo "| process start (/bin/true x$STARTS) | $(f 3 "$sp") ms | $(f 3 "$ss") ms | +$(f 3 "$added_start") ms per start | < 0.5 ms | $(verdict "$added_start < 0.5") |"
  echo "| dd bs=512 count=200000 | $(f 3 "$dp") s | $(f 3 "$ds") s | $(f 2 "$dd_ratio")x | <= 1.3x | $(verdict "$dd_ratio <= 1.3") |"
  echo "| nginx 1 worker, wrk -t1 -c16, events+metrics | $(f 0 "$np") req/s | $(f 0 "$ne") req/s | $(f 3 "$ev_ratio")x | >= 0.90x | $(verdict "$ev_ratio >= 0.90") |"
  echo "| nginx 1 worker, wrk -t1 -c16, metrics only | $(f 0 "$np") req/s | $(f 0 "$nm") req/s | $(f 3 "$m_ratio")x | >= 0.97x | $(verdict "$m_ratio >= 0.97") |"
  echo "| RSS of sleep | $rp KiB | $rs KiB | +$(f 2 "$rss_added") MiB | < 2 MB | $(verdict "$rss_added < 2") |"
  echo "| nginx worker RSS under load, events on | $wp KiB | $we KiB | $(f 1 "$(echo "$we/1024" | bc -l)") MiB | < 32 MB | $(verdict "$we/1024 < 32") |"
  if [ ${#IC[@]} -eq 4 ]; then
    echo
    echo "Instruction counts (valgrind callgrind, user space, all threads; events+metrics on):"
    echo
    echo "| measure | unscoped | scoped |"
    echo "|---|---|---|"
    echo "| /bin/true, whole process | ${IC[0]} | ${IC[1]} |"
    echo "| dd bs=512, per read+write pair | ${IC[2]} | ${IC[3]} |"
  fi
  echo
  echo "Raw samples:"
  echo
  for k in start_plain start_scoped dd_plain dd_scoped rss_plain rss_scoped ng_plain ng_events ng_metrics ngrss_plain ngrss_events ngrss_metrics; do
    echo "- $k: ${R[$k]}"
  done
} > "$out"
cat "$out"
