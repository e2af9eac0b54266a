#!/usr/bin/env bash
# Cluster end-to-end test on kind: build the image, install the chart, walk the user journeys.
#
#   e2e/kind/run.sh              # or: APPSCOPE_E2E_KIND=1 cargo test -p e2e --test kind
#
# Needs docker (with a running engine), kind, kubectl and helm (.tools/bin or PATH). Where one
# is missing it prints "SKIP: ..." and exits 0 without touching anything.
#
# Journeys (each one fails the run with a message and the relevant logs):
#   1. helm install: agent, controller and webhook ready; the webhook's CA is in its
#      MutatingWebhookConfiguration.
#   2. annotate: a Deployment annotated appscope.dev/scope=true gets injected.
#   3. crash: a scoped process that segfaults yields a ScopeCrashReport, and its report.json is
#      read from the crash-report PVC through a reader pod.
#   4. ScopeConfig: applied settings show in `kubectl scope inspect`; `kubectl scope ps` lists
#      the scoped pod; `kubectl scope snapshot` writes a snapshot.
#
# Env: APPSCOPE_KIND_CLUSTER (default appscope-e2e), APPSCOPE_KIND_KEEP=1 keeps the cluster,
#      APPSCOPE_KIND_IMAGE (default appscope-k8s:e2e), APPSCOPE_KIND_NODE_IMAGE (kind node image).
set -euo pipefail
root=$(cd "${0%/*}/../.." && pwd)
cd "$root"

skip() { echo "SKIP: kind e2e: $*"; exit 0; }
fail() { echo "FAIL: kind e2e: $*" >&2; exit 1; }
step() { printf '\n=== [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

find_tool() {
  if [ -x "$root/.tools/bin/$1" ]; then echo "$root/.tools/bin/$1"; else command -v "$1" || true; fi
}
docker=$(command -v docker || true)
kind=$(command -v kind || true)
kubectl=$(find_tool kubectl)
helm=$(find_tool helm)
[ -n "$docker" ] || skip "docker is not installed"
timeout 20 "$docker" info >/dev/null 2>&1 || skip "docker is installed but no engine answers (docker info failed)"
[ -n "$kind" ] || skip "kind is not installed"
[ -n "$kubectl" ] || skip "kubectl is not installed (run .ci/setup.d/60-chart.sh)"
[ -n "$helm" ] || skip "helm is not installed (run .ci/setup.d/60-chart.sh)"

cluster=${APPSCOPE_KIND_CLUSTER:-appscope-e2e}
image=${APPSCOPE_KIND_IMAGE:-appscope-k8s:e2e}
ns=appscope
demo=demo  # the namespace of examples/
work=$(mktemp -d)
export KUBECONFIG="$work/kubeconfig"
k() { "$kubectl" "$@"; }

dump() {
  echo "--- diagnostics" >&2
  k get pods -A -o wide >&2 || true
  k -n "$ns" logs -l app.kubernetes.io/component=webhook --tail=50 --prefix >&2 || true
  k -n "$ns" logs -l app.kubernetes.io/component=agent --tail=80 --prefix >&2 || true
  k -n "$ns" logs -l app.kubernetes.io/component=controller --tail=50 --prefix >&2 || true
  k get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -30 >&2 || true
}
cleanup() {
  rc=$?
  [ $rc -ne 0 ] && dump
  if [ "${APPSCOPE_KIND_KEEP:-}" = 1 ]; then
    echo "keeping cluster $cluster (KUBECONFIG=$KUBECONFIG)"
  else
    "$kind" delete cluster --name "$cluster" >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
  exit $rc
}
trap cleanup EXIT

# Waits up to $1 seconds for the command "$@" (after the timeout) to succeed.
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt "$end" ] || return 1
    sleep 3
  done
}

step "kind create cluster $cluster"
node_image=()
[ -n "${APPSCOPE_KIND_NODE_IMAGE:-}" ] && node_image=(--image "$APPSCOPE_KIND_NODE_IMAGE")
"$kind" create cluster --name "$cluster" --kubeconfig "$KUBECONFIG" --wait 180s "${node_image[@]}"

step "docker build -t $image ."
timeout 3600 "$docker" build -t "$image" --build-arg REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" .

step "kind load docker-image $image"
"$kind" load docker-image "$image" --name "$cluster"

step "helm install (single node: ReadWriteOnce crash-report PVC)"
"$helm" install appscope charts/appscope -n "$ns" --create-namespace \
  --set image.repository="${image%%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never \
  --set 'crashReports.persistence.accessModes={ReadWriteOnce}' \
  --set webhook.replicas=1 --set webhook.podDisruptionBudget.enabled=false \
  --wait --timeout 5m
k -n "$ns" rollout status daemonset/appscope-agent --timeout=180s
k -n "$ns" rollout status deployment/appscope-controller --timeout=180s
k -n "$ns" rollout status deployment/appscope-webhook --timeout=180s
has_ca() { [ -n "$(k get mutatingwebhookconfiguration appscope-webhook -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ]; }
wait_for 120 has_ca || fail "the webhook did not write its caBundle into the MutatingWebhookConfiguration"
echo "ok: components ready, caBundle written"

step "journey: annotate a deployment and get it injected"
k apply -f examples/annotated-deployment.yaml
k -n "$demo" rollout status deployment/web --timeout=300s
web=$(k -n "$demo" get pod -l app=web -o jsonpath='{.items[0].metadata.name}')
injected=$(k -n "$demo" get pod "$web" -o jsonpath='{.metadata.annotations.appscope\.dev/injected}')
[ -n "$injected" ] || fail "pod $web has no appscope.dev/injected annotation"
k -n "$demo" get pod "$web" -o jsonpath='{.spec.initContainers[*].name}' | grep -qw appscope-init \
  || fail "pod $web has no appscope-init container"
k -n "$demo" exec "$web" -c web -- sh -c 'grep -l libscope.so /proc/1/maps' >/dev/null \
  || fail "libscope.so is not loaded in $web's main process"
echo "ok: $web injected ($injected)"

step "journey: a crash gives a ScopeCrashReport and a report on the PVC"
k apply -f examples/crashing-deployment.yaml
has_report() { [ -n "$(k -n "$demo" get scopecrashreports -o name)" ]; }
wait_for 300 has_report || fail "no ScopeCrashReport in $demo after 300s"
report=$(k -n "$demo" get scopecrashreports -o jsonpath='{.items[0].metadata.name}')
path=$(k -n "$demo" get scopecrashreport "$report" -o jsonpath='{.spec.path}')
signal=$(k -n "$demo" get scopecrashreport "$report" -o jsonpath='{.spec.signal}')
[ "$signal" = SIGSEGV ] || fail "crash report $report has signal '$signal', want SIGSEGV"
k apply -f examples/crash-report-reader.yaml
k -n "$ns" wait pod/crash-report-reader --for=condition=Ready --timeout=180s
k -n "$ns" exec crash-report-reader -- cat "/reports/$path/report.json" >"$work/report.json" \
  || fail "report.json not found at /reports/$path on the PVC"
grep -q '"SIGSEGV"' "$work/report.json" || fail "report.json does not name SIGSEGV"
echo "ok: crash report $report at $path"

step "journey: kubectl scope ps / ScopeConfig + inspect / snapshot"
cargo build --quiet -p appscope-cli
plugin_dir="$work/bin"
mkdir -p "$plugin_dir"
ln -sf "${CARGO_TARGET_DIR:-$root/target}/debug/scope" "$plugin_dir/kubectl-scope"
export PATH="$plugin_dir:$PATH"
k scope ps -n "$demo" | tee "$work/ps.txt"
grep -q "$web" "$work/ps.txt" || fail "kubectl scope ps does not list $web"
k apply -f examples/scopeconfig.yaml
applied() { k scope inspect -n "$demo" "$web" | grep -Eq 'SCOPE_METRIC_VERBOSITY.*9|"verbosity": *9'; }
wait_for 120 applied || { k scope inspect -n "$demo" "$web" || true; fail "ScopeConfig web-debug not in effect in $web after 120s"; }
ready=$(k -n "$demo" get scfg web-debug -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')
[ "$ready" = True ] || fail "ScopeConfig web-debug is not Ready (status: $ready)"
echo "ok: ScopeConfig in effect"
k scope snapshot -n "$demo" "$web" | tee "$work/snapshot.txt" || fail "kubectl scope snapshot failed"
echo "ok: snapshot taken"

step "kind e2e: all journeys passed"
