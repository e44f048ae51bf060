#!/usr/bin/env bash
# The real-cluster path: build the operator and runtime images, make them available to the
# cluster, install the chart and deploy the example model. NOT exercised by CI here (this machine
# has no container engine); CI runs the same chart on hack/localcluster. See docs/real-clusters.md.
#
# Two modes:
#   kind (default)  create a kind cluster if missing, `kind load` the images into it.
#   --registry REG  any cluster: push the images to REG (you are logged in) and install from there;
#                   the current kubectl context is used, nothing is created.
#
# Usage: hack/kind-up.sh [--cluster NAME] [--registry REG] [--tag TAG] [--torch VARIANT]
#                        [--no-example] [-- extra helm arguments]
# Needs: docker (or DOCKER=podman), kubectl, helm, and kind for the kind mode.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

cluster=llm-operator
registry=""
tag=$(awk '$1 == "appVersion:" { gsub(/"/, "", $2); print $2 }' "$root/charts/llm-operator/Chart.yaml")
torch=cpu
example=true
helm_args=()
while (($#)); do
  case $1 in
    --cluster) cluster=$2 && shift 2 ;;
    --registry) registry=${2%/} && shift 2 ;;
    --tag) tag=$2 && shift 2 ;;
    --torch) torch=$2 && shift 2 ;;
    --no-example) example=false && shift ;;
    --) shift && helm_args=("$@") && break ;;
    -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" && exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2 && exit 2 ;;
  esac
done

docker=${DOCKER:-docker}
kubectl=${KUBECTL:-kubectl}
log() { printf '\033[1;34m[kind-up]\033[0m %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { echo "$1 is required for this step" >&2 && exit 1; }; }
need "$docker"
need "$kubectl"
need "${HELM:-helm}"

prefix=${registry:+$registry/}
operator_image="${prefix}llm-operator/operator:$tag"
runtime_image="${prefix}llm-operator/runtime:$tag"

if [[ -z $registry ]]; then
  need kind
  if ! kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    log "creating kind cluster $cluster"
    kind create cluster --name "$cluster" --wait 120s
  fi
  "$kubectl" config use-context "kind-$cluster" >/dev/null
fi

log "building $operator_image"
"$docker" build -f "$root/images/operator.Dockerfile" -t "$operator_image" "$root"
log "building $runtime_image (torch variant $torch)"
"$docker" build -f "$root/images/runtime.Dockerfile" --build-arg "TORCH_VARIANT=$torch" \
  -t "$runtime_image" "$root"

if [[ -z $registry ]]; then
  log "loading images into kind cluster $cluster"
  kind load docker-image --name "$cluster" "$operator_image" "$runtime_image"
else
  log "pushing images to $registry"
  "$docker" push "$operator_image"
  "$docker" push "$runtime_image"
fi

# Images loaded into kind must never be pulled (there is no registry to pull them from).
pull_policy=$([[ -z $registry ]] && echo IfNotPresent || echo Always)
HELM=${HELM:-helm} KUBECTL=$kubectl bash "$root/hack/install-operator.sh" --tag "$tag" -- \
  --set-string "image.repository=${prefix}llm-operator/operator" \
  --set-string "image.pullPolicy=$pull_policy" \
  --set-string "operator.runtimeImage.repository=${prefix}llm-operator/runtime" \
  ${helm_args[@]+"${helm_args[@]}"}

if $example; then
  log "deploying examples/smollm2.yaml (runtime image $runtime_image)"
  "$kubectl" apply -f "$root/examples/smollm2.yaml"
  name=$("$kubectl" get -f "$root/examples/smollm2.yaml" -o jsonpath='{.metadata.name}')
  namespace=$("$kubectl" get -f "$root/examples/smollm2.yaml" -o jsonpath='{.metadata.namespace}')
  log "waiting for llmd/$name to be Ready (model fetch and load take a few minutes on CPU)"
  "$kubectl" -n "${namespace:-default}" wait "llmd/$name" --for=jsonpath='{.status.phase}'=Ready \
    --timeout=900s
  "$kubectl" -n "${namespace:-default}" get llmd "$name"
fi
log "done. Try: kubectl get llmd -A; docs/real-clusters.md shows how to call the model over gRPC."
