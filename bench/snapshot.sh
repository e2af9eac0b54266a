#!/usr/bin/env bash
# Snapshot stop-window benchmark (issue 7): how long `scope snapshot` keeps a
# multi-threaded process stopped while it captures every thread's stack. Starts
# /usr/bin/python3 with THREADS threads (half busy in Python code, half asleep) and
# takes RUNS snapshots, printing `stopped_ms` from snapshot.json (min / median / max),
# the whole command's wall time, and the frame count as a sanity check.
#
# Usage: bench/snapshot.sh [THREADS] [RUNS]   (defaults 8 and 10)
# SCOPE=path/to/scope overrides the binary (default target/release/scope if present,
# else target/debug/scope). Figures are wall-clock: run it on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-8}
RUNS=${2:-10}
SCOPE=${SCOPE:-}
if [ -z "$SCOPE" ]; then
  SCOPE=target/release/scope
  [ -x "$SCOPE" ] || SCOPE=target/debug/scope
  [ -x "$SCOPE" ] || cargo build -p appscope-cli
fi
W=$(mktemp -d /tmp/scope-snap-bench.XXXXXX)
cleanup() { [ -n "${PY:-}" ] && kill "$PY" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

cat > "$W/threads.py" <<'PY'
import sys, threading, time
n = int(sys.argv[1])
def busy(i):
    def fib(k):
        return k if k < 2 else fib(k - 1) + fib(k - 2)
    while True:
        fib(18)
def sleepy(i):
    while True:
        time.sleep(0.05)
for i in range(n):
    threading.Thread(target=busy if i % 2 == 0 else sleepy, args=(i,), daemon=True).start()
print("ready", flush=True)
while True:
    time.sleep(1)
PY
/usr/bin/python3 "$W/threads.py" "$THREADS" > "$W/py.out" &
PY=$!
for _ in $(seq 1 200); do grep -q ready "$W/py.out" 2>/dev/null && break; sleep 0.05; done
sleep 0.5

STOPS=()
for i in $(seq 1 "$RUNS"); do
  t0=$(date +%s.%N)
  "$SCOPE" snapshot --json --library-wait 0 -o "$W/snap$i" "$PY" > "$W/out$i.json"
  t1=$(date +%s.%N)
  read -r ms threads frames < <(python3 - "$W/snap$i/snapshot.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{d['stopped_ms']:.2f}", len(d['threads']), sum(len(t['frames']) for t in d['threads']))
PY
)
  wall=$(python3 -c "print(f'{($t1-$t0)*1000:.0f}')")
  echo "run $i: stopped ${ms} ms, threads ${threads}, frames ${frames}, command ${wall} ms"
  STOPS+=("$ms")
  rm -rf "$W/snap$i"
done
printf '%s\n' "${STOPS[@]}" | sort -g | awk -v bin="$SCOPE" -v t="$THREADS" '
  { v[NR] = $1 } END {
    printf "%s, python3 with %d threads + main: stopped_ms min %.2f, median %.2f, max %.2f (%d runs)\n",
      bin, t, v[1], v[int((NR + 1) / 2)], v[NR], NR }'
