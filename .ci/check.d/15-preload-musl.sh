#!/usr/bin/env bash
# libscope.so for musl (Alpine) programs: build it with preload-lib/build-musl.sh (the debug
# build the tests preload, and the release-lib build the image ships), then check that
#  - its NEEDED entries are only what musl provides (libc.so; musl's loader is its libc),
#    with no glibc loader, libgcc_s or versioned GLIBC symbol;
#  - every symbol it imports is defined by musl's libc.so;
#  - a musl-gcc program under it prints the same, exits the same, and the loader prints
#    nothing on stderr.
# Needs the rustup musl target and musl-tools (.ci/setup.d/10-preload.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
tdir="${CARGO_TARGET_DIR:-target}"
musl_libc=/usr/lib/x86_64-linux-musl/libc.so
[ -f "$musl_libc" ] || { echo "FAIL: $musl_libc missing (apt-get install musl-tools)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '#include <stdio.h>\n#include <unistd.h>\nint main(void){printf("pid ok %%d\\n", getpid() > 0); fprintf(stderr, "to stderr\\n"); return 7;}\n' >"$work/m.c"
musl-gcc -o "$work/m" "$work/m.c"

check() {
  local so=$1
  test -f "$so"
  local needed
  needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u | tr '\n' ' ')
  echo "$so ($(du -h "$so" | cut -f1)) NEEDED: $needed"
  for n in $needed; do
    case "$n" in
      libc.so|ld-musl-*) ;;
      *) echo "FAIL: $so needs $n, which musl does not provide" >&2; exit 1 ;;
    esac
  done
  if readelf -W --dyn-syms "$so" | grep -q '@GLIBC_'; then
    echo "FAIL: $so has versioned GLIBC symbols:" >&2
    readelf -W --dyn-syms "$so" | grep '@GLIBC_' | head >&2
    exit 1
  fi
  # Imports (strong undefined symbols) must all be defined by musl's libc.so.
  readelf -W --dyn-syms "$musl_libc" | awk '$7 != "UND" && $8 != "" {sub(/@.*/, "", $8); print $8}' | sort -u >"$work/defined"
  readelf -W --dyn-syms "$so" | awk '$7 == "UND" && $5 == "GLOBAL" && $8 != "" {sub(/@.*/, "", $8); print $8}' | sort -u >"$work/imports"
  local missing
  missing=$(comm -23 "$work/imports" "$work/defined" | tr '\n' ' ')
  [ -z "$missing" ] || { echo "FAIL: $so imports symbols musl lacks: $missing" >&2; exit 1; }
  echo "  $(wc -l <"$work/imports") imported symbols, all in $musl_libc"
  local plain_out plain_rc=0 out rc=0
  plain_out=$("$work/m" 2>"$work/plain.err") || plain_rc=$?
  out=$(env LD_PRELOAD="$(realpath "$so")" SCOPE_CRIBL_ENABLE=false SCOPE_METRIC_ENABLE=false \
        SCOPE_EVENT_ENABLE=false SCOPE_LOG_LEVEL=none "$work/m" 2>"$work/scoped.err") || rc=$?
  [ "$out" = "$plain_out" ] || { echo "FAIL: musl program printed '$out', unscoped '$plain_out'" >&2; exit 1; }
  [ "$rc" = "$plain_rc" ] || { echo "FAIL: musl program exited $rc, unscoped $plain_rc" >&2; exit 1; }
  cmp -s "$work/scoped.err" "$work/plain.err" || {
    echo "FAIL: stderr of the musl program under $so:" >&2; cat "$work/scoped.err" >&2; exit 1; }
  echo "  a musl-gcc program under it: same stdout, exit $rc, same stderr"
}

bash preload-lib/build-musl.sh --quiet >/dev/null
check "$tdir/debug/libscope-musl.so"
bash preload-lib/build-musl.sh --quiet --profile release-lib >/dev/null
check "$tdir/release-lib/libscope-musl.so"
echo "OK: the musl builds need only musl's libc.so and load into musl programs"
