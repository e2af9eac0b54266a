#!/usr/bin/env bash
# Base packages the integration tests use: real programs run under libscope.so,
# gdb to load cores, unshare (util-linux) for namespace tests.
set -euo pipefail
need=()
for p in gdb nginx wrk curl util-linux procps iproute2 build-essential; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# nginx from Debian starts a service on install on some images; tests run their own.
service nginx stop >/dev/null 2>&1 || true
