#!/usr/bin/env bash
# Preload library: cargo-zigbuild + ziglang (PyPI) to build libscope.so against glibc 2.17
# (.ci/check.d/10-preload-glibc.sh), javac for the java program test. Idempotent.
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
