#!/usr/bin/env bash
# Regenerate charts/appscope/crds/appscope.dev.yaml from `appscope-operator crdgen` (the CRD
# types in the operator crate are the source of truth), then the manifests/ that embed them.
# Usage: charts/appscope/hack/gen-crds.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
cargo build --quiet -p appscope-operator
bin="${CARGO_TARGET_DIR:-$root/target}/debug/appscope-operator"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
  # crdgen prints its own "generated, do not edit" header; the file is its output verbatim.
  "$bin" crdgen
} >"$tmp"
grep -q '^kind: CustomResourceDefinition' "$tmp" || { echo "gen-crds: crdgen printed no CRD" >&2; exit 1; }
mkdir -p charts/appscope/crds
mv "$tmp" charts/appscope/crds/appscope.dev.yaml
trap - EXIT
echo "wrote charts/appscope/crds/appscope.dev.yaml ($(grep -c '^kind: CustomResourceDefinition' charts/appscope/crds/appscope.dev.yaml) CRDs)"
"$root/charts/appscope/hack/gen-manifests.sh"
