#!/usr/bin/env bash
# `make demo`: the main job end to end on the local cluster. Every step is real (no canned output):
# the cluster, the Helm-installed operator, a SmolLM2 pod fetched by its init container, a gRPC call.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/hack${PYTHONPATH:+:$PYTHONPATH}"
PY=.venv/bin/python
NS=${DEMO_NAMESPACE:-llm-demo}
say() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }

say "Starting the local cluster (real kube-apiserver, etcd, controller-manager, scheduler, process node)"
$PY -m localcluster up
eval "$($PY -m localcluster env)"
kubectl get nodes -o wide

say "Installing the operator with Helm (CRDs, RBAC, operator pod running on its ServiceAccount)"
bash hack/install-operator.sh
kubectl -n llm-operator-system get pods

say "Deploying SmolLM2-135M-Instruct (examples/smollm2.yaml) into namespace $NS"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" apply -f examples/smollm2.yaml
# The Ready condition is True once the spec's revision serves at full size: what users wait on.
if ! kubectl -n "$NS" wait --for=condition=Ready llmd/smollm2 --timeout=15m; then
  kubectl -n "$NS" describe llmd smollm2
  exit 1
fi
kubectl -n "$NS" get llmd

say "Asking it over gRPC, through the Service"
ip=$(kubectl -n "$NS" get svc smollm2 -o jsonpath='{.spec.clusterIP}')
port=$(kubectl -n "$NS" get svc smollm2 -o jsonpath='{.spec.ports[0].port}')
grpcurl -plaintext -d '{"messages":[{"role":"user","content":"What is the capital of France?"}],"max_new_tokens":32}' \
  "$ip:$port" llm.runtime.v1.Runtime/Generate

if [[ -x hack/demo-rollout.sh ]]; then
  bash hack/demo-rollout.sh "$NS"
fi

say "Done. The cluster stays up:"
cat <<MSG
  eval "\$(PYTHONPATH=hack .venv/bin/python -m localcluster env)"   # kubectl, helm, grpcurl on PATH
  kubectl -n $NS get llmd,pods,svc
  make cluster-down                                                 # tear it all down
MSG
