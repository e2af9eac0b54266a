#!/usr/bin/env bash
# Checks of the Helm chart (issue 6); tools come from .ci/setup.d/60-chart.sh (.tools/).
#  1. helm lint --strict, with default values and with each certs mode.
#  2. helm template with default values and with each certs mode and persistence choice,
#     validated with kubernetes-validate --strict at the oldest and newest Kubernetes we
#     support (1.28 and 1.37), and yamllint on the rendered output.
#  3. examples/*.yaml custom resources validated against the CRD schemas in
#     charts/appscope/crds/ (check-jsonschema), other example objects with kubernetes-validate.
#  4. --set of bad values must fail with the schema's message.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
chart="$root/charts/appscope"
helm="$root/.tools/bin/helm"; [ -x "$helm" ] || helm=$(command -v helm || true)
venv="$root/.tools/venv/bin"
[ -n "$helm" ] && [ -x "$helm" ] || { echo "60-chart: helm not found (run .ci/setup.d/60-chart.sh)" >&2; exit 1; }
for t in kubernetes-validate check-jsonschema yamllint; do
  [ -x "$venv/$t" ] || { echo "60-chart: $venv/$t not found (run .ci/setup.d/60-chart.sh)" >&2; exit 1; }
done
KUBE_OLDEST=1.28.0
KUBE_NEWEST=1.37.0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail=0
yamllint_conf='{extends: default, rules: {line-length: {max: 200}, document-start: disable, comments: {min-spaces-from-content: 1}, indentation: {indent-sequences: whatever}}}'

# name|helm args
cases=(
  "default|"
  "certs-cert-manager|--set webhook.certs.mode=cert-manager"
  "certs-cert-manager-issuer|--set webhook.certs.mode=cert-manager --set webhook.certs.certManager.issuerRef.name=corp-ca --set webhook.certs.certManager.issuerRef.kind=ClusterIssuer"
  "certs-secret|--set webhook.certs.mode=secret --set webhook.certs.secretName=my-tls --set webhook.certs.caBundle=QUJDRA=="
  "persistence-rwo|--set crashReports.persistence.accessModes={ReadWriteOnce} --set crashReports.persistence.storageClass=standard"
  "persistence-existing|--set crashReports.persistence.existingClaim=my-reports"
  "persistence-hostpath|--set crashReports.persistence.enabled=false"
  "extras|--set serviceMonitor.enabled=true --set networkPolicy.enabled=true --set networkPolicy.apiServerCIDRs={172.18.0.2/32} --set webhook.podAntiAffinity=hard --set webhook.matchConditions=never --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  "minimal|--set agent.enabled=false --set controller.enabled=false --set webhook.enabled=false --set rbac.cliRoles=false --set rbac.aggregateToDefaultRoles=false"
)

echo "== helm lint --strict"
for c in "${cases[@]}"; do
  name=${c%%|*}; args=${c#*|}
  # shellcheck disable=SC2086
  if ! "$helm" lint --strict "$chart" $args >"$out/lint-$name.txt" 2>&1; then
    echo "FAIL lint $name"; cat "$out/lint-$name.txt"; fail=1
  else
    echo "ok   lint $name"
  fi
done

echo "== helm template + kubernetes-validate --strict ($KUBE_OLDEST, $KUBE_NEWEST) + yamllint"
for c in "${cases[@]}"; do
  name=${c%%|*}; args=${c#*|}
  for kv in "$KUBE_OLDEST" "$KUBE_NEWEST"; do
    f="$out/$name-$kv.yaml"
    # shellcheck disable=SC2086
    if ! "$helm" template appscope "$chart" -n appscope --include-crds --kube-version "$kv" $args >"$f" 2>"$out/err"; then
      echo "FAIL template $name @$kv"; cat "$out/err"; fail=1; continue
    fi
    if ! "$venv/kubernetes-validate" --strict --quiet --no-warn -k "$kv" "$f"; then
      echo "FAIL kubernetes-validate $name @$kv"; fail=1; continue
    fi
    # yamllint the chart's own templates' output; the generated CRDs are linted below
    # without the line-length rule (their descriptions come from the API reference).
    # shellcheck disable=SC2086
    "$helm" template appscope "$chart" -n appscope --kube-version "$kv" $args >"$out/nocrds.yaml"
    if ! "$venv/yamllint" -s -d "$yamllint_conf" "$out/nocrds.yaml"; then
      echo "FAIL yamllint $name @$kv"; fail=1; continue
    fi
    echo "ok   $name @$kv ($(grep -c '^kind:' "$f") objects)"
  done
done

echo "== yamllint of the generated CRDs and manifests"
crd_lint='{extends: default, rules: {line-length: disable, document-start: disable, indentation: {indent-sequences: whatever}}}'
if "$venv/yamllint" -s -d "$crd_lint" "$chart"/crds/*.yaml "$root"/manifests/*.yaml; then
  echo "ok   yamllint crds/ and manifests/"
else
  echo "FAIL yamllint crds/ or manifests/"; fail=1
fi

echo "== examples against the CRD schemas"
crds=$(ls "$chart"/crds/*.yaml 2>/dev/null || true)
if [ -z "$crds" ]; then
  echo "FAIL no CRDs in charts/appscope/crds/ (run charts/appscope/hack/gen-crds.sh)"; fail=1
else
  "$venv/python" "$chart/hack/crd_schemas.py" "$out/schemas" $crds
  shopt -s nullglob
  for ex in "$root"/examples/*.yaml; do
    # Split the example into one JSON document per object; each CR goes to check-jsonschema
    # with its kind's schema, everything else to kubernetes-validate.
    "$venv/python" "$chart/hack/split_docs.py" "$ex" "$out/ex" >"$out/list" || { echo "FAIL parse $ex"; fail=1; continue; }
    while read -r kind doc; do
      if [ -f "$out/schemas/$kind.json" ]; then
        if "$venv/check-jsonschema" -q --schemafile "$out/schemas/$kind.json" "$doc"; then
          echo "ok   $(basename "$ex") $kind (CRD schema)"
        else
          echo "FAIL $(basename "$ex") $kind against the CRD schema"; fail=1
        fi
      else
        for kv in "$KUBE_OLDEST" "$KUBE_NEWEST"; do
          if ! "$venv/kubernetes-validate" --strict --quiet -k "$kv" "$doc"; then
            echo "FAIL $(basename "$ex") $kind @$kv"; fail=1
          fi
        done
        echo "ok   $(basename "$ex") $kind (kubernetes-validate)"
      fi
    done <"$out/list"
  done
fi

echo "== bad values are refused with the schema's message"
# value|expected fragment of the error
bad=(
  "webhook.certs.mode=bogus|value must be one of 'self', 'cert-manager', 'secret'"
  "webhook.timeoutSeconds=60|/webhook/timeoutSeconds"
  "webhook.certs.mode=secret|/webhook/certs/secretName"
  "crashReports.persistence.accessModes={ReadOnlyMany}|/crashReports/persistence/accessModes/0"
  "agent.capabilities={SYS_MODULE}|/agent/capabilities/0"
  "webhook.failurePolicy=Sometimes|/webhook/failurePolicy"
  "agent.unknownKey=1|additional properties 'unknownKey' not allowed"
)
for b in "${bad[@]}"; do
  v=${b%%|*}; want=${b#*|}
  if "$helm" template appscope "$chart" -n appscope --set "$v" >/dev/null 2>"$out/err"; then
    echo "FAIL --set $v was accepted"; fail=1
  elif ! grep -qF -- "$want" "$out/err"; then
    echo "FAIL --set $v: error does not mention '$want':"; cat "$out/err"; fail=1
  else
    echo "ok   --set $v refused: $(grep -F -- "$want" "$out/err" | head -1 | sed 's/^ *//')"
  fi
done

if [ "$fail" -ne 0 ]; then
  echo "60-chart: FAILED" >&2
  exit 1
fi
echo "60-chart: all chart checks passed"
