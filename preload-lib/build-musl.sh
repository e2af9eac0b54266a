#!/usr/bin/env bash
# Builds the musl (Alpine) libscope.so and installs it as libscope-musl.so next to the glibc
# build of the same profile:
#
#   preload-lib/build-musl.sh [--profile dev|release|release-lib] [extra cargo args]
#   -> <target>/x86_64-unknown-linux-musl/<profile dir>/libscope.so   (cargo's output)
#   -> <target>/<profile dir>/libscope-musl.so                          (a copy, for `scope run`)
#
# What a musl cdylib needs (none of it changes the glibc build):
#  - `-C target-feature=-crt-static`: a shared object that links libc.so dynamically;
#  - `musl-gcc` (Debian `musl-tools`) as linker and C compiler (ring's C and assembly);
#  - an unwinder: the standard library (and the crash unwinder) link `-lgcc_s` for a dynamic
#    musl target, and Alpine images often have no libgcc_s.so.1. A `libgcc_s.so` linker
#    script that names the toolchain's self-contained LLVM `libunwind.a` links it statically
#    into the library instead, so the result needs only libc.so (musl's loader).
# Needs: rustup target x86_64-unknown-linux-musl, musl-gcc (.ci/setup.d/10-preload.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-musl
profile=dev
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    --release) profile=release; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
case "$profile" in dev) pdir=debug ;; *) pdir="$profile" ;; esac

command -v musl-gcc >/dev/null || { echo "build-musl: musl-gcc not found (apt-get install musl-tools)" >&2; exit 1; }
sysroot=$(rustc --print sysroot)
selfc="$sysroot/lib/rustlib/$triple/lib/self-contained"
[ -f "$selfc/libunwind.a" ] || {
  echo "build-musl: $selfc/libunwind.a not found (rustup target add $triple)" >&2; exit 1; }

tdir="${CARGO_TARGET_DIR:-target}"
case "$tdir" in /*) ;; *) tdir="$(pwd)/$tdir" ;; esac
link="$tdir/musl-link"
mkdir -p "$link"
printf 'INPUT(%s)\n' "$selfc/libunwind.a" >"$link/libgcc_s.so.tmp"
mv "$link/libgcc_s.so.tmp" "$link/libgcc_s.so"

export CC_x86_64_unknown_linux_musl=musl-gcc
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=musl-gcc
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=-crt-static -L native=$link"
cargo build -p preload-lib --lib --target "$triple" --profile "$profile" ${args[@]+"${args[@]}"}

out="$tdir/$triple/$pdir/libscope.so"
[ -f "$out" ] || { echo "build-musl: $out was not produced" >&2; exit 1; }
mkdir -p "$tdir/$pdir"
# Copy under a temporary name, then rename: a process starting meanwhile never maps a
# half-written library.
cp "$out" "$tdir/$pdir/.libscope-musl.so.$$"
mv "$tdir/$pdir/.libscope-musl.so.$$" "$tdir/$pdir/libscope-musl.so"
echo "$tdir/$pdir/libscope-musl.so"
