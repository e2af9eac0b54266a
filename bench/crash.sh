#!/usr/bin/env bash
# Crash-capture benchmark (issue 3): core of a process with 1 GiB of touched heap, our
# in-process writer vs gdb's gcore on the same kind of process, plus the time to write
# a crash bundle without a core. Writes bench/results/crash.md.
#
# Usage: bench/crash.sh [MiB] (default 1024). Needs gcc, gdb (gcore), python3.
# Uses target/release/libscope.so if present (cargo build --release -p preload-lib),
# else the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
LIB=target/release/libscope.so
[ -f "$LIB" ] || LIB=target/debug/libscope.so
[ -f "$LIB" ] || cargo build -p preload-lib
LIB=$(realpath "$LIB")
W=$(mktemp -d /tmp/scope-crash-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
gcc -O2 -g -o "$W/big" bench/crash_big.c

now() { date +%s.%N; }
mtime() { stat -c %.9Y "$1"; }
wait_ready() { # file
  for _ in $(seq 1 6000); do grep -q '^ready' "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "target not ready" >&2; return 1
}

# 1. gcore of a live process with MIB touched.
"$W/big" "$MIB" "$W/go1" sleep > "$W/out1" &
P1=$!
wait_ready "$W/out1"; touch "$W/go1"; sleep 0.2
t0=$(now)
gcore -o "$W/gcore" "$P1" > "$W/gc.log" 2>&1
t1=$(now)
kill "$P1"; wait "$P1" 2>/dev/null || true
GCORE_S=$(python3 -c "print(f'{$t1-$t0:.3f}')")
GCORE_BYTES=$(stat -c %s "$W"/gcore.*)
rm -f "$W"/gcore.*

# 2. Our core at crash time (in-process, from the SIGSEGV handler).
run_crash() { # name, coredump(true|false), backtrace
  local d="$W/snap-$1"
  SCOPE_SNAPSHOT_DIR="$d" SCOPE_SNAPSHOT_COREDUMP="$2" SCOPE_SNAPSHOT_BACKTRACE="$3" \
  SCOPE_METRIC_ENABLE=false SCOPE_EVENT_ENABLE=false SCOPE_CMD_DIR="$W" \
    LD_PRELOAD="$LIB" "$W/big" "$MIB" "$W/go-$1" crash > "$W/out-$1" 2>/dev/null &
  local p=$!
  wait_ready "$W/out-$1"; touch "$W/go-$1"
  wait "$p" 2>/dev/null || true
  local crash_at done
  crash_at=$(awk '/^crash_at/{print $2}' "$W/out-$1")
  done=$(mtime "$d"/*/done_*)
  python3 -c "print(f'{$done-$crash_at:.4f}')"
}
OURS_S=$(run_crash core true true)
OURS_BYTES=$(stat -c %s "$W"/snap-core/*/core_*)
# gdb can use it.
GDB_OK=$(gdb -nx -batch -ex bt "$W/big" "$W"/snap-core/*/core_* 2>&1 | grep -c 'crash_now' || true)
rm -f "$W"/snap-core/*/core_*
BT_S=(); for i in 1 2 3 4 5; do BT_S+=("$(run_crash bt$i false true)"); done
BT_MED=$(printf '%s\n' "${BT_S[@]}" | sort -n | sed -n 3p)

mbs() { python3 -c "print(f'{$1/1048576/$2:.0f}')"; }
RATIO=$(python3 -c "print(f'{$OURS_S/$GCORE_S:.2f}')")
{
  echo "# Crash capture benchmark"
  echo
  echo "Run: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uname -r), library: ${LIB#$PWD/}"
  echo "Target: bench/crash_big.c with ${MIB} MiB of touched heap. Command: \`bench/crash.sh $MIB\`."
  echo
  echo "| what | time | size | throughput |"
  echo "|---|---|---|---|"
  echo "| gdb \`gcore\` of the live process | ${GCORE_S} s | ${GCORE_BYTES} B | $(mbs "$GCORE_BYTES" "$GCORE_S") MB/s |"
  echo "| libscope crash bundle with core (fault to \`done_\`) | ${OURS_S} s | ${OURS_BYTES} B | $(mbs "$OURS_BYTES" "$OURS_S") MB/s |"
  echo "| libscope crash bundle without core (median of 5) | ${BT_MED} s | | |"
  echo
  echo "Ratio ours/gcore: ${RATIO} (target: at most 2). Bundle without core: target under 0.050 s."
  echo "gdb \`bt\` on our core names the crashing function: $([ "$GDB_OK" -gt 0 ] && echo yes || echo NO)."
  echo "All runs without core: ${BT_S[*]} s."
} | tee bench/results/crash.md
