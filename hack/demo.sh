#!/usr/bin/env bash
# `make demo`: the main job end to end on the local cluster. Grows with each landed feature;
# every step below is real (no canned output).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/hack${PYTHONPATH:+:$PYTHONPATH}"
PY=.venv/bin/python
say() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }

say "Starting the local cluster (real kube-apiserver, etcd, controller-manager, scheduler, process node)"
$PY -m localcluster up
eval "$($PY -m localcluster env)"
kubectl get nodes -o wide

say "Done. The cluster stays up:"
cat <<MSG
  eval "\$(PYTHONPATH=hack .venv/bin/python -m localcluster env)"   # kubectl, helm, grpcurl on PATH
  kubectl get pods -A
  make cluster-down                                                 # tear it all down
MSG
