"""A real Kubernetes cluster on this one machine, without containers.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, built from the
upstream Go modules by `hack/tools/build.sh`) runs as local processes; a Python node agent plays
the kubelet and runs pods as processes in network namespaces behind the `llmop0` bridge.

Doors: `python -m localcluster up|down|status|env` (`make cluster-up`, `make cluster-down`).
Modules named `cp_*` and `controlplane` belong to the control plane; `node*`, `netns*`, `proxy*`,
`images*`, `pods*` and `probes*` to the node agent.
"""
