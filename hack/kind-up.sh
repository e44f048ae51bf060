#!/usr/bin/env bash
# The real-cluster path: build the operator and runtime images, make them available to the
# cluster, install the chart and deploy the example model. See docs/real-clusters.md.
#
# Three modes:
#   kind (default)  create a kind cluster if missing, `kind load` the images into it.
#   --registry REG  any cluster: push the images to REG (you are logged in) and install from there;
#                   the current kubectl context is used, nothing is created.
#   --localcluster  the local cluster's real node (kubelet + containerd, hack/localcluster): the
#                   images are built with buildah on an mmdebstrap base (hack/imagebuild) and
#                   imported into its containerd, the chart and the example are pinned to that
#                   node. This is the mode CI runs (tests/e2e/test_realnode_e2e.py): kind itself
#                   cannot run here, its node image cannot be fetched.
#
# Usage: hack/kind-up.sh [--cluster NAME] [--registry REG | --localcluster] [--tag TAG]
#                        [--torch VARIANT] [--namespace NS] [--release NAME] [--no-example]
#                        [-- extra helm arguments]
# Needs: docker (or DOCKER=podman), kubectl, helm, and kind for the kind mode; nothing more than
# `make setup` for --localcluster.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

cluster=llm-operator
registry=""
tag=$(awk '$1 == "appVersion:" { gsub(/"/, "", $2); print $2 }' "$root/charts/llm-operator/Chart.yaml")
torch=cpu
example=true
local=false
install_args=()
helm_args=()
while (($#)); do
  case $1 in
    --cluster) cluster=$2 && shift 2 ;;
    --registry) registry=${2%/} && shift 2 ;;
    --localcluster) local=true && shift ;;
    --namespace | --release) install_args+=("$1" "$2") && shift 2 ;;
    --tag) tag=$2 && shift 2 ;;
    --torch) torch=$2 && shift 2 ;;
    --no-example) example=false && shift ;;
    --) shift && helm_args=("$@") && break ;;
    -h | --help) sed -n '2,21p' "${BASH_SOURCE[0]}" && exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2 && exit 2 ;;
  esac
done

log() { printf '\033[1;34m[kind-up]\033[0m %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { echo "$1 is required for this step" >&2 && exit 1; }; }

if $local; then
  python=$root/.venv/bin/python
  export PYTHONPATH="$root/hack${PYTHONPATH:+:$PYTHONPATH}"
  log "local cluster with its real node (kubelet + containerd)"
  LLMOP_REAL_NODE=1 "$python" -m localcluster up
  eval "$("$python" -m localcluster env)"
  log "building the images (buildah, mmdebstrap base) and importing them into the node's containerd"
  "$python" -m localcluster load-images
  node=$("$python" -c 'from localcluster import rn_config as c; print(c.NODE_NAME)')
  taint=$("$python" -c 'from localcluster import rn_config as c; print(c.TAINT_KEY)')
  scheduling="{\"nodeSelector\":{\"kubernetes.io/hostname\":\"$node\"},\"tolerations\":[{\"key\":\"$taint\",\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}]}"
  # Imported images must never be pulled: there is no registry.
  bash "$root/hack/install-operator.sh" --tag "$tag" ${install_args[@]+"${install_args[@]}"} -- \
    --set-string image.pullPolicy=Never \
    --set-json "nodeSelector={\"kubernetes.io/hostname\":\"$node\"}" \
    --set-json "tolerations=[{\"key\":\"$taint\",\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}]" \
    ${helm_args[@]+"${helm_args[@]}"}
  if $example; then
    log "deploying examples/smollm2.yaml on $node"
    kubectl create --dry-run=client -o json -f "$root/examples/smollm2.yaml" |
      "$python" -c 'import json, sys; o = json.load(sys.stdin); o["spec"]["scheduling"] = json.loads(sys.argv[1]); print(json.dumps(o))' "$scheduling" |
      kubectl apply -f -
    kubectl wait llmd/smollm2 --for=jsonpath='{.status.phase}'=Ready --timeout=900s
    kubectl get llmd smollm2 -o wide
  fi
  log "done. The real node's pods: kubectl get pods -A --field-selector spec.nodeName=$node"
  exit 0
fi

docker=${DOCKER:-docker}
kubectl=${KUBECTL:-kubectl}
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
HELM=${HELM:-helm} KUBECTL=$kubectl bash "$root/hack/install-operator.sh" --tag "$tag" \
  ${install_args[@]+"${install_args[@]}"} -- \
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
