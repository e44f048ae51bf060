"""`python -m localcluster up|down|status|env`: the local cluster's command line.

`up` is idempotent (a running cluster is only verified; with `LLMOP_REAL_NODE=1` it also starts
the real node, containerd and the kubelet: see `rn_config`), `down` leaves no process, network
namespace, link, mount or address behind and wipes etcd, `env` prints shell exports for
kubectl, helm and grpcurl.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from localcluster import controlplane, cp_cluster, cp_layout, rn_config, rn_node
from localcluster.cp_layout import Layout


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    parser.add_argument(
        "command",
        choices=("up", "down", "status", "env", "real-node", "load-images"),
        help="what to do with the cluster (real-node: start the real node in a running cluster; "
        "load-images: build the project's images and import them into the real node)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="cluster state folder (default: $LLMOP_CLUSTER_DIR or ~/.cache/llm-operator/cluster)",
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait per step")
    return parser


def _up(layout: Layout, bindir: Path, timeout: float) -> int:
    result = cp_cluster.up(layout, bindir=bindir, timeout=timeout)
    node = result.node or "none (the node agent module localcluster.node is not there yet)"
    print(f"cluster up in {result.seconds:.1f}s; Ready node: {node}")
    if result.real_node:
        print(
            f"real node (kubelet + containerd): {result.real_node}, tainted {rn_config.TAINT_KEY}"
        )
    print(f"kubeconfig: {layout.kubeconfig} (also the current context of ~/.kube/config)")
    print('use it:   eval "$(PYTHONPATH=hack .venv/bin/python -m localcluster env)"')
    print("          kubectl get nodes;  make cluster-down  # stop and remove everything")
    return 0


def _status(layout: Layout) -> int:
    found = cp_cluster.status(layout)
    for name, ok in found.items():
        print(f"{name:<24} {'yes' if ok else 'no'}")
    return 0 if all(found.values()) else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    layout = Layout(args.state_dir or cp_layout.default_state_dir())
    bindir = cp_layout.bin_dir()
    try:
        if args.command == "up":
            return _up(layout, bindir, args.timeout)
        if args.command == "down":
            stopped = cp_cluster.down(layout, bindir=bindir)
            print(f"cluster down; stopped: {', '.join(stopped) or 'nothing was running'}")
            return 0
        if args.command == "real-node":
            seconds = rn_node.up(layout, timeout=max(args.timeout, 120.0))
            print(f"real node {rn_config.NODE_NAME} Ready in {seconds:.1f}s")
            return 0
        if args.command == "load-images":
            for line in rn_node.load_project_images(layout):
                print(line)
            return 0
        if args.command == "status":
            return _status(layout)
        sys.stdout.write(cp_cluster.env_lines(layout, bindir=bindir))
        return 0
    except (controlplane.StartError, cp_cluster.CleanupError, rn_node.RealNodeError) as err:
        print(f"localcluster {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
