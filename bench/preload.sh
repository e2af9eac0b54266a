#!/usr/bin/env bash
# Preload library benchmark: unscoped vs scoped, side by side, median of interleaved runs,
# in three modes: crash capture only (events and metrics off, backtrace and core on),
# metrics only, events+metrics.
#   process start (/bin/true), per-call cost (dd bs=512), nginx 1 worker under wrk,
#   RSS added (sleep), nginx worker RSS under load, and instruction counts (callgrind).
# Writes bench/results/preload.md. Not a test: takes a few minutes. Loopback only.
# Knobs: ONLY_IC=1 (instruction counts only, fast and valid on a loaded machine), ROUNDS (default 5), STARTS (default 300), WRK_SECS (default 5), LIB (prebuilt .so;
# default: the shipped build, `cargo build --profile release-lib -p preload-lib`).
# Needs nginx, wrk, curl, bc and /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
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
crash_only=(SCOPE_EVENT_ENABLE=false SCOPE_METRIC_ENABLE=false SCOPE_SNAPSHOT_BACKTRACE=true
  SCOPE_SNAPSHOT_COREDUMP=true SCOPE_SNAPSHOT_DIR="$work/snap")
MODES=(crash metrics events)
mode_env() { # mode -> the scoped environment of that mode, one word a line
  printf '%s\n' "${scoped_env[@]}"
  case $1 in
    crash) printf '%s\n' "${crash_only[@]}" ;;
    metrics) printf '%s\n' "${metrics_only[@]}" ;;
    events) printf '%s\n' "${events_on[@]}" ;;
  esac
}

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
declare -A R
ONLY_IC=${ONLY_IC:-}
[ -n "$ONLY_IC" ] && ROUNDS=0
for r in $(seq "$ROUNDS"); do
  R[start_plain]+="$(/usr/bin/python3 "$work/drive.py" plain "$STARTS" start) "
  R[rss_plain]+="$(/usr/bin/python3 "$work/drive.py" plain 1 rss) "
  t0=$(date +%s.%N); dd if=/dev/zero of=/dev/null bs=512 count=200000 2>/dev/null; t1=$(date +%s.%N)
  R[dd_plain]+="$(echo "$t1 - $t0" | bc -l) "
  for m in "${MODES[@]}"; do
    mapfile -t menv < <(mode_env "$m")
    child_env=()
    for kv in "${menv[@]}"; do child_env+=("CHILD_$kv"); done
    R[start_$m]+="$(env "${child_env[@]}" /usr/bin/python3 "$work/drive.py" scoped "$STARTS" start) "
    R[rss_$m]+="$(env "${child_env[@]}" /usr/bin/python3 "$work/drive.py" scoped 1 rss) "
    t0=$(date +%s.%N); env "${menv[@]}" dd if=/dev/zero of=/dev/null bs=512 count=200000 2>/dev/null; t1=$(date +%s.%N)
    R[dd_$m]+="$(echo "$t1 - $t0" | bc -l) "
  done
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
  if [ "$mode" = plain ]; then
    nginx -p "$work" -c "$work/nginx.conf" &
  else
    mapfile -t menv < <(mode_env "$mode")
    env "${menv[@]}" nginx -p "$work" -c "$work/nginx.conf" &
  fi
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
  for m in plain "${MODES[@]}"; do
    read -r rps rss < <(nginx_run "$m")
    R[ng_${m}]+="$rps "; R[ngrss_${m}]+="$rss "
  done
done

# --- instruction counts (valgrind callgrind; reproducible on a loaded machine) ---------
# Instructions of the application's main thread (the library's own thread works on its
# own core and is counted apart): /bin/true whole, and per read+write pair of dd (the
# slope between two record counts, so start-up cost cancels out).
declare -A IC
if command -v valgrind >/dev/null; then
  cg="$work/cg"; mkdir -p "$cg"
  icount() { # env... -- cmd... -> "main-thread all-threads"
    local e=(); while [ "$1" != -- ]; do e+=("$1"); shift; done; shift
    rm -f "$cg"/*
    env "${e[@]}" valgrind --tool=callgrind --separate-threads=yes \
      --callgrind-out-file="$cg/out.%p" "$@" >/dev/null 2>&1
    local main all
    main=$(grep -h '^summary:' "$cg"/out.*-01 | awk '{print $2}')
    all=$(cat "$cg"/out.* | awk '/^summary:/ {s += $2} END {print s}')
    echo "$main $all"
  }
  per_pair() { # env... -> main-thread instructions per read+write pair
    local a b
    read -r a _ < <(icount "$@" -- dd if=/dev/zero of=/dev/null bs=512 count=10000)
    read -r b _ < <(icount "$@" -- dd if=/dev/zero of=/dev/null bs=512 count=30000)
    echo $(( (b - a) / 20000 ))
  }
  read -r IC[true_plain] IC[trueall_plain] < <(icount X=1 -- /bin/true)
  IC[dd_plain]=$(per_pair X=1)
  for m in "${MODES[@]}"; do
    mapfile -t menv < <(mode_env "$m")
    read -r IC[true_$m] IC[trueall_$m] < <(icount "${menv[@]}" -- /bin/true)
    IC[dd_$m]=$(per_pair "${menv[@]}")
  done
fi

ic_table() {
  echo "Instruction counts (valgrind callgrind, user space; the application's main thread, and all threads for /bin/true):"
  echo
  echo "| mode | /bin/true, main thread | /bin/true, all threads | dd bs=512, per read+write pair |"
  echo "|---|---|---|---|"
  echo "| unscoped | ${IC[true_plain]} | ${IC[trueall_plain]} | ${IC[dd_plain]} |"
  for m in "${MODES[@]}"; do
    echo "| ${NAME[$m]} | ${IC[true_$m]} | ${IC[trueall_$m]} | ${IC[dd_$m]} |"
  done
}
declare -A NAME=([crash]="crash capture only" [metrics]="metrics only" [events]="events + metrics")
if [ -n "$ONLY_IC" ]; then
  out=bench/results/preload-instructions.md
  {
    echo "# Preload library: instruction counts"
    echo
    echo "Generated by \`ONLY_IC=1 bench/preload.sh\` on $(date -u +%Y-%m-%dT%H:%MZ). Library: $LIB."
    echo
    ic_table
  } > "$out"
  cat "$out"
  exit 0
fi

med() { tr ' ' '\n' <<<"${R[$1]}" | grep -v '^$' | median; }
f() { printf '%.*f' "$1" "$2"; }
verdict() { if [ "$(echo "$1" | bc -l)" = 1 ]; then echo met; else echo "NOT met"; fi; }
sp=$(med start_plain); dp=$(med dd_plain); rp=$(med rss_plain); np=$(med ng_plain)
wp=$(med ngrss_plain)
# Targets per mode: start added (ms), dd ratio, nginx ratio, RSS added (MiB).
declare -A T_START=([crash]=0.15 [metrics]=0.3 [events]=0.3)
declare -A T_DD=([crash]=1.03 [metrics]=1.15 [events]=1.3)
declare -A T_NG=([crash]=0.99 [metrics]=0.96 [events]=0.92)
declare -A T_RSS=([crash]=1 [metrics]=2 [events]=2)
out=bench/results/preload.md
{
  echo "# Preload library benchmark"
  echo
  echo "Generated by \`bench/preload.sh\` on $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average at start: $LOAD_AT_START, $ROUNDS interleaved rounds (median)."
  echo "Library: $LIB; scoped runs send events (tcp) and metrics (udp) to local sinks; crash capture only has events and metrics off, backtrace and core on."
  echo
  echo "Unscoped: /bin/true $(f 3 "$sp") ms per start, dd bs=512 count=200000 $(f 3 "$dp") s, nginx $(f 0 "$np") req/s (worker RSS $wp KiB), sleep RSS $rp KiB."
  echo
  echo "| mode | start added | dd bs=512 | nginx 1 worker, wrk -t1 -c16 | RSS added (sleep) | nginx worker RSS |"
  echo "|---|---|---|---|---|---|"
  for m in "${MODES[@]}"; do
    ss=$(med "start_$m"); ds=$(med "dd_$m"); rs=$(med "rss_$m"); ns=$(med "ng_$m"); ws=$(med "ngrss_$m")
    a=$(echo "$ss - $sp" | bc -l); d=$(echo "$ds / $dp" | bc -l); n=$(echo "$ns / $np" | bc -l)
    rr=$(echo "($rs - $rp) / 1024" | bc -l)
    echo "| ${NAME[$m]} | +$(f 3 "$a") ms (target <= +${T_START[$m]}: $(verdict "$a <= ${T_START[$m]}")) | $(f 2 "$d")x (<= ${T_DD[$m]}x: $(verdict "$d <= ${T_DD[$m]}")) | $(f 3 "$n")x, $(f 0 "$ns") req/s (>= ${T_NG[$m]}x: $(verdict "$n >= ${T_NG[$m]}")) | +$(f 2 "$rr") MiB (< ${T_RSS[$m]} MB: $(verdict "$rr < ${T_RSS[$m]}")) | $(f 1 "$(echo "$ws/1024" | bc -l)") MiB |"
  done
  if [ -n "${IC[true_plain]:-}" ]; then
    echo
    ic_table
  fi
  echo
  echo "Raw samples:"
  echo
  for k in start_plain dd_plain rss_plain ng_plain ngrss_plain; do echo "- $k: ${R[$k]}"; done
  for m in "${MODES[@]}"; do
    for k in start dd rss ng ngrss; do echo "- ${k}_$m: ${R[${k}_$m]}"; done
  done
} > "$out"
cat "$out"
