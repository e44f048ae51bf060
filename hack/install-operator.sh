#!/usr/bin/env bash
# Installs (or upgrades) the llm-operator Helm chart into the current cluster and waits until the
# operator pods are rolled out and Ready. Used by `make demo`, the e2e tests and hack/kind-up.sh.
#
# Helm installs the chart's crds/ only on first install and never upgrades them, so this script
# applies them itself first (server-side, the same way on install and upgrade) and waits until the
# API server serves them.
#
# Usage: hack/install-operator.sh [--namespace NS] [--release NAME] [--tag TAG (default: appVersion)]
#                                 [--timeout SECONDS]
#                                 [-- extra helm arguments, e.g. --set replicaCount=2]
# Env:   KUBECONFIG / --kube-context via extra args; HELM and KUBECTL override the binaries (default:
#        the local cluster's tools from hack/tools/build.sh, then PATH).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
chart="$root/charts/llm-operator"

namespace=llm-operator-system
release=llm-operator
# The chart's appVersion, like a plain `helm install`: the runtime image name is part of every
# LLMDeployment's revision hash, so both ways of installing must agree or pods roll needlessly.
tag=$(awk '$1 == "appVersion:" { gsub(/"/, "", $2); print $2 }' "$chart/Chart.yaml")
timeout=180
helm_args=()
while (($#)); do
  case $1 in
    -n | --namespace) namespace=$2 && shift 2 ;;
    -r | --release) release=$2 && shift 2 ;;
    -t | --tag) tag=$2 && shift 2 ;;
    --timeout) timeout=$2 && shift 2 ;;
    --) shift && helm_args=("$@") && break ;;
    -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" && exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2 && exit 2 ;;
  esac
done

log() { printf '\033[1;34m[install-operator]\033[0m %s\n' "$*" >&2; }

# tool NAME: $NAME_UPPER if set, else the local cluster's bin dir, else PATH.
tool() {
  local override=${1^^} bindir
  if [[ -n ${!override:-} ]]; then
    echo "${!override}"
    return
  fi
  bindir=$(bash "$root/hack/tools/build.sh" --print-bindir 2>/dev/null || true)
  if [[ -n $bindir && -x $bindir/$1 ]]; then
    echo "$bindir/$1"
  else
    command -v "$1" || { echo "$1 not found: run make setup or set ${override}" >&2 && exit 1; }
  fi
}
helm=$(tool helm)
kubectl=$(tool kubectl)

log "applying CRDs from $chart/crds (server-side; Helm never upgrades them)"
"$kubectl" apply --server-side --force-conflicts --field-manager=llm-operator-install -f "$chart/crds/"
"$kubectl" wait --for=condition=Established --timeout=60s \
  crd/llmdeployments.llm-operator.io crd/kopfpeerings.kopf.dev crd/clusterkopfpeerings.kopf.dev

log "helm upgrade --install $release (namespace $namespace, image tag $tag)"
"$helm" upgrade --install "$release" "$chart" \
  --namespace "$namespace" --create-namespace \
  --set-string image.tag="$tag" \
  --set-string operator.runtimeImage.tag="$tag" \
  ${helm_args[@]+"${helm_args[@]}"}

deployment=$("$kubectl" -n "$namespace" get deployment \
  -l "app.kubernetes.io/instance=$release,app.kubernetes.io/component=operator" \
  -o jsonpath='{.items[0].metadata.name}')
log "waiting for deployment/$deployment to roll out (up to ${timeout}s)"
if ! "$kubectl" -n "$namespace" rollout status "deployment/$deployment" --timeout="${timeout}s"; then
  log "the operator did not become ready; what the cluster says:"
  "$kubectl" -n "$namespace" get pods -o wide -l "app.kubernetes.io/instance=$release" >&2 || true
  "$kubectl" -n "$namespace" describe pods -l "app.kubernetes.io/instance=$release" >&2 || true
  "$kubectl" -n "$namespace" logs --tail=50 -l "app.kubernetes.io/instance=$release" >&2 || true
  exit 1
fi
log "llm-operator is ready: $kubectl -n $namespace get pods -l app.kubernetes.io/instance=$release"
