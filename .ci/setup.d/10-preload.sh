#!/usr/bin/env bash
# Preload library: cargo-zigbuild + ziglang (PyPI) to build libscope.so against glibc 2.17
# (.ci/check.d/10-preload-glibc.sh); the rustup musl target and musl-tools (musl-gcc) for the
# musl build (preload-lib/build-musl.sh, .ci/check.d/15-preload-musl.sh, the musl_* tests);
# javac for the java program test. Idempotent.
set -euo pipefail
if ! command -v cargo-zigbuild >/dev/null 2>&1; then
  if command -v pip3 >/dev/null 2>&1 && pip3 install -q cargo-zigbuild ziglang; then
    :
  else
    /usr/bin/python3 -m pip install -q --break-system-packages cargo-zigbuild ziglang
  fi
  hash -r
fi
command -v cargo-zigbuild >/dev/null || { echo "cargo-zigbuild not on PATH after install" >&2; exit 1; }
if ! command -v javac >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jdk-headless
fi
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl
fi
if ! command -v musl-gcc >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl-tools
fi
