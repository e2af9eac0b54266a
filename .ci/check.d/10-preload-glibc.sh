#!/usr/bin/env bash
# libscope.so for old images: build with cargo-zigbuild against glibc 2.17, check that the
# highest GLIBC symbol version it needs is <= 2.17, and that it loads into /usr/bin/python3
# (both dlopen'ed and LD_PRELOADed) without changing the program's output.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=x86_64-unknown-linux-gnu
cargo zigbuild -q -p preload-lib --profile release-lib --target "$target.2.17"
so="${CARGO_TARGET_DIR:-target}/$target/release-lib/libscope.so"
test -f "$so"
versions=$(objdump -T "$so" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV)
max=$(printf '%s\n' $versions | tail -1)
echo "libscope.so ($(du -h "$so" | cut -f1)) needs GLIBC versions: $(echo $versions)"
if [ "$(printf '%s\n%s\n' "$max" 2.17 | sort -V | tail -1)" != "2.17" ]; then
  echo "FAIL: highest required GLIBC version $max > 2.17" >&2
  objdump -T "$so" | grep "GLIBC_$max" >&2
  exit 1
fi
out=$(/usr/bin/python3 -c "import ctypes; ctypes.CDLL('$(realpath "$so")'); print('dlopen ok')")
[ "$out" = "dlopen ok" ] || { echo "FAIL: dlopen into python3: $out" >&2; exit 1; }
out=$(env LD_PRELOAD="$(realpath "$so")" SCOPE_CRIBL_ENABLE=false SCOPE_METRIC_ENABLE=false \
      SCOPE_EVENT_ENABLE=false SCOPE_LOG_LEVEL=none /usr/bin/python3 -c 'print(6*7)')
[ "$out" = "42" ] || { echo "FAIL: python3 under LD_PRELOAD printed: $out" >&2; exit 1; }
echo "OK: highest GLIBC version $max <= 2.17; loads into /usr/bin/python3"
