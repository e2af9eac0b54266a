#!/usr/bin/env bash
# Local agent benchmark (issue 5 "Speed"): one scan cycle of `scope agent --local` with
# 1,000 scoped processes (sleepers started here), the agent's RSS, and the apply latency
# of command files (written -> status file shows the setting applied).
#
# Runs in a private pid + mount namespace (unshare, needs root): the agent sees only the
# processes started here, and tmpfs over /tmp, /root and /home hides every other crash
# directory on the machine, so the bench never collects (and deletes) anybody else's
# crash bundles. Everything started here dies with the namespace.
#
# Writes bench/results/agent.md (a "## Notes" section already there is kept).
# Knobs: SCOPED (1000), UNSCOPED (200, plain sleepers: a node is not only scoped
# processes), INTERVAL (agent --interval, 2), CYCLES (measured cycles, 15),
# PERIOD (SCOPE_SUMMARY_PERIOD of the sleepers, 2), APPLY (processes for apply latency, 20),
# NO_BUILD=1 (use the existing target/release binaries), SCOPE_BIN and LIB (other builds
# of the agent and the library; imply NO_BUILD), OUT (results file; not under /tmp, which
# is private in the namespace).
# Needs unshare, curl, /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

if [ "${1:-}" != "--inside" ]; then
  for t in unshare curl /usr/bin/python3; do
    command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
  done
  [ "$(id -u)" = 0 ] || { echo "bench/agent.sh needs root (unshare --pid --mount)" >&2; exit 1; }
  if [ -z "${NO_BUILD:-}${SCOPE_BIN:-}${LIB:-}" ]; then
    cargo build -q --release -p appscope-cli -p preload-lib
  fi
  exec unshare --mount --pid --fork --mount-proc --propagation private \
    bash "$REPO/bench/agent.sh" --inside
fi

# ---- inside the namespace: we are pid 1 here; our exit kills everything left --------
SCOPED=${SCOPED:-1000}
UNSCOPED=${UNSCOPED:-200}
INTERVAL=${INTERVAL:-2}
CYCLES=${CYCLES:-15}
PERIOD=${PERIOD:-2}
APPLY=${APPLY:-20}
OUT=${OUT:-$REPO/bench/results/agent.md}
LIB=${LIB:-$REPO/target/release/libscope.so}
SCOPE=${SCOPE_BIN:-$REPO/target/release/scope}
[ -f "$LIB" ] && [ -x "$SCOPE" ] || { echo "build first: $LIB, $SCOPE" >&2; exit 1; }

for d in /tmp /root /home; do mount -t tmpfs -o mode=1777 bench "$d"; done
export HOME=/root
W=/tmp/agent-bench
mkdir -p "$W"/{cmd,status,snap,store,log}
agent_pid=
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
  # shellcheck disable=SC2046
  kill $(jobs -p) 2>/dev/null || true
  [ -s "$W/pids" ] && xargs -r kill -9 <"$W/pids" 2>/dev/null || true
}
trap cleanup EXIT

log() { echo "agent bench: $*" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
load_start=$(load)

# ---- the processes ----------------------------------------------------------------
log "starting $SCOPED scoped and $UNSCOPED unscoped sleepers"
t0=$(date +%s.%N)
scoped_seq=$(seq "$SCOPED") # not in the scoped subshell: seq would be scoped too
(
  export LD_PRELOAD=$LIB SCOPE_CRIBL_ENABLE=false SCOPE_EVENT_ENABLE=false \
    SCOPE_METRIC_DEST=file:///dev/null SCOPE_LOG_DEST=file://$W/log/scope.log \
    SCOPE_LOG_LEVEL=warning SCOPE_SUMMARY_PERIOD=$PERIOD \
    SCOPE_CMD_DIR=$W/cmd SCOPE_STATUS_DIR=$W/status SCOPE_SNAPSHOT_DIR=$W/snap
  for _ in $scoped_seq; do /bin/sleep 3600 & echo $! >>"$W/pids"; done
)
for _ in $(seq "$UNSCOPED"); do /bin/sleep 3600 & echo $! >>"$W/pids"; done
# Every scoped process has written its first status file.
for _ in $(seq 600); do
  n=$(find "$W/status" -name '*.json' | wc -l)
  [ "$n" -ge "$SCOPED" ] && break
  sleep 0.5
done
[ "$n" -ge "$SCOPED" ] || { log "only $n of $SCOPED status files after 300 s"; exit 1; }
t1=$(date +%s.%N)
log "$n status files after $(echo "$t1 - $t0" | bc -l | cut -c1-5) s"

# ---- the agent ----------------------------------------------------------------------
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SCOPE" agent --local --store "$W/store" --listen "127.0.0.1:$port" \
  --interval "$INTERVAL" 2>"$W/agent.log" &
agent_pid=$!

metric() { # metric NAME: value from /metrics (empty if not up)
  curl -sf "http://127.0.0.1:$port/metrics" 2>/dev/null |
    awk -v m="$1" '$1 == m || $1 == m"_total" {print $2; exit}'
}
cpu_ns() { # on-CPU time of every live thread of the agent, ns (schedstat)
  cat /proc/"$agent_pid"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'
}
cpu_ticks() { # utime + stime of the agent (all threads, dead ones too), clock ticks
  sed 's/.*) //' /proc/"$agent_pid"/stat | awk '{print $12 + $13}'
}
vm() { awk -v k="$1:" '$1 == k {print $2}' /proc/"$agent_pid"/status; } # KiB
# Wait until the scan counter passes $1; polls every 20 ms.
scans_past() {
  local want=$1 s
  for _ in $(seq 3000); do
    s=$(metric appscope_agent_scans)
    if [ -n "$s" ] && [ "$s" -gt "$want" ]; then echo "$s"; return; fi
    sleep 0.02
  done
  log "agent made no scan past $want"; exit 1
}

# First cycle: everything is new to the agent (includes its start-up).
s=$(scans_past 0)
first_ns=$(cpu_ns)
first_ticks=$(cpu_ticks)
scoped_seen=$(metric appscope_agent_scoped_processes)
log "first pass done: $scoped_seen scoped processes seen, $((first_ns / 1000000)) ms CPU"
[ "$scoped_seen" = "$SCOPED" ] || log "WARNING: the agent saw $scoped_seen scoped processes, expected $SCOPED"

# Steady state: CPU over CYCLES passes, measured between two scan-counter increments.
s=$(scans_past "$s")
a_ns=$(cpu_ns); a_ticks=$(cpu_ticks); a_scans=$s
sleep "$(echo "($CYCLES - 1) * $INTERVAL" | bc -l)"
s=$(scans_past $((a_scans + CYCLES - 1)))
b_ns=$(cpu_ns); b_ticks=$(cpu_ticks); b_scans=$s
cycles=$((b_scans - a_scans))
hz=$(getconf CLK_TCK)
per_ms=$(echo "($b_ns - $a_ns) / $cycles / 1000000" | bc -l)
per_ms_ticks=$(echo "($b_ticks - $a_ticks) * 1000 / $hz / $cycles" | bc -l)
first_ms=$(echo "$first_ns / 1000000" | bc -l)
scoped_end=$(metric appscope_agent_scoped_processes)
rss=$(vm VmRSS); hwm=$(vm VmHWM)
log "steady: $cycles cycles, $(printf %.1f "$per_ms") ms CPU per cycle (ticks: $(printf %.1f "$per_ms_ticks") ms); RSS $rss KiB, HWM $hwm KiB"

# ---- apply latency --------------------------------------------------------------------
mapfile -t apply_pids < <(head -n "$APPLY" "$W/pids")
log "apply latency for ${#apply_pids[@]} processes (period $PERIOD s)"
/usr/bin/python3 "$REPO/bench/agent_apply.py" "$W/cmd" "$W/status" "$PERIOD" "${apply_pids[@]}" >"$W/apply"
lat=$(awk '$2 != "timeout" {print $2}' "$W/apply" | sort -g)
timeouts=$(grep -c timeout "$W/apply" || true)
n_lat=$(echo "$lat" | grep -c . || true)
lat_min=$(echo "$lat" | head -1)
lat_max=$(echo "$lat" | tail -1)
lat_med=$(echo "$lat" | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}')
load_end=$(load)

# ---- results --------------------------------------------------------------------------
verdict() { if [ "$(echo "$1" | bc -l)" = 1 ]; then echo met; else echo "NOT met"; fi; }
cpu_ok=$(verdict "$per_ms < 50")
rss_ok=$(verdict "$rss < 40960 && $hwm < 40960")
apply_ok="NOT met"
if [ "$timeouts" = 0 ] && [ -n "$lat_max" ]; then apply_ok=$(verdict "$lat_max <= $PERIOD + 1"); fi
notes=
[ -f "$OUT" ] && notes=$(sed -n '/^## Notes/,$p' "$OUT")
rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
  echo "# Local agent benchmark"
  echo
  echo "Generated by \`bench/agent.sh\` on $(date -u +%Y-%m-%dT%H:%MZ) at commit $rev (plus the working tree),"
  echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r), release build."
  echo "Load average at start $load_start, at end $load_end: the machine is shared (other"
  echo "engineers compile and test on the same cores), so CPU time, not wall time, is reported."
  echo
  echo "Setup: $SCOPED scoped \`sleep 3600\` (LD_PRELOAD=libscope.so, SCOPE_SUMMARY_PERIOD=$PERIOD,"
  echo "status files on) and $UNSCOPED unscoped sleepers in a private pid namespace; \`scope agent --local"
  echo "--interval $INTERVAL\`. CPU per cycle = agent on-CPU time (sum of /proc/<agent>/task/*/schedstat)"
  echo "between two scan-counter increments (\`appscope_agent_scans\`), divided by the passes."
  echo
  echo "| measure | result | target | |"
  echo "|---|---|---|---|"
  printf '| agent CPU per scan cycle, steady state (%d cycles) | %.1f ms (stat ticks: %.1f ms) | < 50 ms | %s |\n' \
    "$cycles" "$per_ms" "$per_ms_ticks" "$cpu_ok"
  printf '| agent CPU of the first pass (all %d new, incl. start-up) | %.1f ms | | |\n' "$SCOPED" "$first_ms"
  printf '| scoped processes the agent saw (first pass / end) | %s / %s | %d | |\n' "$scoped_seen" "$scoped_end" "$SCOPED"
  printf '| agent RSS after %d passes (VmRSS / VmHWM) | %.1f / %.1f MiB | < 40 MB | %s |\n' \
    "$b_scans" "$(echo "$rss / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)" "$rss_ok"
  printf '| apply latency, %d command files (min / median / max) | %s / %s / %s s | <= period + 1 s = %s s | %s |\n' \
    "${#apply_pids[@]}" "${lat_min:-n/a}" "${lat_med:-n/a}" "${lat_max:-n/a}" "$((PERIOD + 1))" "$apply_ok"
  echo
  echo "Apply latency: command files written (temp + rename) staggered over one period, so they"
  echo "land at every phase of the library's summary timer; the library reads its command file"
  echo "once per period, so latency is spread over 0..period plus the status write."
  echo "$n_lat applied, $timeouts timed out. Raw (pid latency): $(tr '\n' ' ' <"$W/apply")"
  if [ -n "$notes" ]; then echo; echo "$notes"; fi
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
