#!/usr/bin/env bash
# Webhook tests and checks:
# - kubernetes-validate (PyPI) validates mutated pods against the Kubernetes OpenAPI schema
#   (webhook/tests/fixtures_e2e.rs calls it as a subprocess).
# - nightly toolchain + cargo-fuzz for the bounded fuzz run in .ci/check.d/40-webhook-fuzz.sh.
# Idempotent: every step is skipped when its tool is already present.
set -euo pipefail

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  /usr/bin/python3 -m pip install --quiet --break-system-packages kubernetes-validate \
    || /usr/bin/python3 -m pip install --quiet kubernetes-validate
fi
kubernetes-validate --version >/dev/null 2>&1 || {
  echo "kubernetes-validate is not on PATH after install" >&2; exit 1; }

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo +nightly install --locked cargo-fuzz
fi
