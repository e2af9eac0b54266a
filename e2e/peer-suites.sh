#!/usr/bin/env bash
# Peer suites: the regression tests of two real programs nobody here wrote, run once
# without the library and once under it (LD_PRELOAD of the debug libscope.so, events
# and metrics written to files), compared test by test.
#
#   CPython's own `test` package (threads, signals, subprocess, fork, sockets, os)
#   tornado's own suite (HTTP/TCP servers and clients, IOStream, process, IOLoop)
#
# Any test whose outcome differs is printed and the script exits 1. Tests the unscoped
# run skips are left out of the comparison, and so are the exclusions below.
#
#   bash e2e/peer-suites.sh --setup   install what it needs (tornado in .tools/peer-venv)
#   bash e2e/peer-suites.sh           run both suites twice and compare
#
# Environment: PEER_OUT (result directory, default a new temp dir, kept;
# PEER_COMPARE_ONLY=1 compares the results already in it without running),
# PEER_CPYTHON_TESTS / PEER_TORNADO_TESTS (module lists), SCOPE_LIB (library).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tornado_version=6.6.1
venv=$root/.tools/peer-venv

# The interpreter: pyenv's 3.11 (the real binary, not the shim) when present, else
# Debian's python3.11 with its test package (libpython3.11-testsuite).
pick_python() {
  local p
  for p in /root/.pyenv/versions/3.11.*/bin/python3.11 /usr/bin/python3.11; do
    if [ -x "$p" ] && "$p" -c 'import test.test_threading' >/dev/null 2>&1; then
      echo "$p"
      return
    fi
  done
  return 1
}

if [ "${1:-}" = "--setup" ]; then
  if ! py=$(pick_python); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3.11 python3.11-venv libpython3.11-testsuite
    py=$(pick_python)
  fi
  if ! "$venv/bin/python" -c "import tornado, sys; sys.exit(tornado.version != '$tornado_version')" 2>/dev/null; then
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q "tornado==$tornado_version"
  fi
  echo "peer suites: $py, tornado $("$venv/bin/python" -c 'import tornado; print(tornado.version)')"
  exit 0
fi

py=$(pick_python) || { echo "no python3.11 with its test package: run $0 --setup" >&2; exit 1; }
[ -x "$venv/bin/python" ] || { echo "no $venv: run $0 --setup" >&2; exit 1; }
lib=$(realpath "${SCOPE_LIB:-${CARGO_TARGET_DIR:-target}/debug/libscope.so}")
[ -f "$lib" ] || { echo "no $lib: cargo build --workspace first" >&2; exit 1; }
out=${PEER_OUT:-$(mktemp -d /tmp/peer-suites.XXXXXX)}
mkdir -p "$out"

cpython_tests=${PEER_CPYTHON_TESTS:-test_fork1 test_signal test_threading test_os test_subprocess test_selectors}
tornado_tests=${PEER_TORNADO_TESTS:-tornado.test.httpserver_test tornado.test.web_test tornado.test.websocket_test tornado.test.tcpserver_test tornado.test.tcpclient_test tornado.test.iostream_test tornado.test.process_test tornado.test.netutil_test tornado.test.ioloop_test tornado.test.http1connection_test tornado.test.httpclient_test tornado.test.asyncio_test tornado.test.locks_test tornado.test.queues_test tornado.test.concurrent_test tornado.test.gen_test}
# Per-module bound: a module that hangs is a result ("timeout"), not a stuck CI.
module_timeout=${PEER_MODULE_TIMEOUT:-240}

# Left out of the comparison, by name, with the reason.
excluded=(
)

# run MODE: every module once, results in $out/MODE/results (id TAB outcome).
run() {
  local mode=$1 dir=$out/$1 m rc
  rm -rf "$dir"
  mkdir -p "$dir/cwd"
  : >"$dir/results"
  local envs=()
  if [ "$mode" = scoped ]; then
    envs=(LD_PRELOAD="$lib" SCOPE_CRIBL_ENABLE=false SCOPE_SUMMARY_PERIOD=1
      SCOPE_EVENT_DEST="file://$dir/events.ndjson" SCOPE_METRIC_DEST="file://$dir/metrics.ndjson"
      SCOPE_LOG_DEST="file://$dir/scope.log")
  fi
  for m in $cpython_tests; do
    rc=0
    (cd "$dir/cwd" && env "${envs[@]}" timeout -k 10 "$module_timeout" \
      "$py" -m test -v --junit-xml "$dir/$m.xml" "$m" >"$dir/$m.log" 2>&1) || rc=$?
    if [ -s "$dir/$m.xml" ]; then
      "$py" "$root/e2e/peer/junit_results.py" "$dir/$m.xml" >>"$dir/results"
    fi
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      printf 'cpython:%s\ttimeout after %ss (last: %s)\n' "$m" "$module_timeout" \
        "$(grep -E ' \.\.\. ?$' "$dir/$m.log" | tail -1)" >>"$dir/results"
    fi
    printf '  %-8s %-40s exit %s\n' "$mode" "$m" "$rc"
  done
  for m in $tornado_tests; do
    rc=0
    (cd "$dir/cwd" && env "${envs[@]}" timeout -k 10 "$module_timeout" \
      "$venv/bin/python" "$root/e2e/peer/tornado_run.py" "$dir/$m.res" "$m" >"$dir/$m.log" 2>&1) || rc=$?
    cat "$dir/$m.res" >>"$dir/results" 2>/dev/null || true
    # runtests fails a run that logged warnings or wrote to stderr: a result of its own.
    printf 'tornado:%s\texit %s\n' "$m" "$rc" >>"$dir/results"
    printf '  %-8s %-40s exit %s\n' "$mode" "$m" "$rc"
  done
  sort -o "$dir/results" "$dir/results"
}

start=$(date +%s)
echo "peer suites: $py; tornado $("$venv/bin/python" -c 'import tornado; print(tornado.version)'); library $lib; results in $out"
if [ -z "${PEER_COMPARE_ONLY:-}" ]; then
  run unscoped
  run scoped
fi
elapsed=$(( $(date +%s) - start ))

# The library really recorded: events and metrics from the scoped run.
ev=$(cat "$out"/scoped/events.ndjson 2>/dev/null | wc -l)
me=$(cat "$out"/scoped/metrics.ndjson 2>/dev/null | wc -l)

# Compared: what the unscoped run did not skip, minus the exclusions.
printf '%s\n' "${excluded[@]}" | sed '/^$/d' >"$out/excluded"
awk -F'\t' 'FILENAME == ARGV[1] { ex[$1] = 1; next } !($1 in ex) && $2 != "skip"' \
  "$out/excluded" "$out/unscoped/results" >"$out/unscoped.compared"
awk -F'\t' 'FILENAME == ARGV[1] { want[$1] = 1; next } $1 in want' \
  "$out/unscoped.compared" "$out/scoped/results" >"$out/scoped.compared"
# A compared test the scoped run did not report at all (a module that hung or died).
awk -F'\t' 'FILENAME == ARGV[1] { seen[$1] = 1; next } !($1 in seen) { print $1 "\tmissing" }' \
  "$out/scoped.compared" "$out/unscoped.compared" >>"$out/scoped.compared"
sort -o "$out/scoped.compared" "$out/scoped.compared"

summary() { awk -F'\t' '{split($2, w, " "); n[w[1]]++} END {for (k in n) printf "%s=%d ", k, n[k]; print ""}' "$1"; }
echo
echo "unscoped: $(wc -l <"$out/unscoped/results") results: $(summary "$out/unscoped/results")"
echo "scoped:   $(wc -l <"$out/scoped/results") results: $(summary "$out/scoped/results")"
echo "compared: $(wc -l <"$out/unscoped.compared") (unscoped skips and ${#excluded[@]} exclusions left out)"
echo "scoped run recorded $ev events and $me metric lines; both runs took ${elapsed}s"
[ -s "$out/unscoped.compared" ] || { echo "FAIL: nothing to compare" >&2; exit 1; }
if diff -u --label unscoped --label scoped "$out/unscoped.compared" "$out/scoped.compared" >"$out/diff"; then
  [ "$ev" -gt 0 ] && [ "$me" -gt 0 ] || { echo "FAIL: the scoped run recorded no events or metrics" >&2; exit 1; }
  echo "OK: identical outcomes scoped and unscoped"
else
  echo "FAIL: $(grep -c '^+[^+]' "$out/diff") outcomes differ (- unscoped, + scoped; all in $out/diff):"
  grep '^[-+][^-+]' "$out/diff" | head -80
  grep -h $'\ttimeout' "$out"/scoped/results "$out"/unscoped/results || true
  exit 1
fi
