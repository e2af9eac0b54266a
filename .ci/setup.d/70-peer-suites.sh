#!/usr/bin/env bash
# Peer suites (.ci/check.d/70-peer-suites.sh): a python3.11 with its own test package,
# and tornado in .tools/peer-venv. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash e2e/peer-suites.sh --setup
