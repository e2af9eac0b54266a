#!/usr/bin/env bash
# CPython's and tornado's own regression tests, unscoped and under the debug
# libscope.so: any test whose outcome differs fails CI (see docs/development.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash e2e/peer-suites.sh
