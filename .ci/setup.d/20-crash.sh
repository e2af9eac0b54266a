#!/usr/bin/env bash
# Crash-capture tests (preload-lib/tests/crash_*.rs, crashdump/tests): gcc builds the C
# test programs, gdb loads the cores, unshare runs the pid-1 crash loop, javac/java run
# the JVM test. 00-base.sh installs gdb, build-essential and util-linux already; this
# adds a JDK when javac is missing.
set -euo pipefail
if ! command -v javac >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jdk-headless \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends default-jdk-headless
fi
for t in gcc gdb unshare java javac; do
  command -v "$t" >/dev/null 2>&1 || { echo "20-crash.sh: $t is missing" >&2; exit 1; }
done
