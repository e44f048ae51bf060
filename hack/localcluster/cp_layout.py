"""Where the local cluster keeps its state, which ports it listens on, and where its tools are.

Everything the control plane writes lives under one state folder (`$LLMOP_CLUSTER_DIR`, default
`~/.cache/llm-operator/cluster`), so `down` and the tests know exactly what belongs to it. The
binaries live in a separate, versioned cache that `hack/tools/build.sh` fills and names.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

HACK_DIR = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = HACK_DIR / "tools" / "build.sh"

# Names the kubeconfigs use; the test guard refuses any context not called this.
CONTEXT = "llm-operator-local"
# The one node the node agent registers; its client certificate is issued for this name.
NODE_NAME = "local-node"

APISERVER_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259
# Clients on this machine dial loopback; pods dial the bridge address (see cp_net).
APISERVER_URL = f"https://127.0.0.1:{APISERVER_PORT}"
SERVICE_CIDR = "198.19.0.0/16"
ADVERTISE_ADDRESS = "198.18.0.1"


def default_state_dir() -> Path:
    """`$LLMOP_CLUSTER_DIR`, else `~/.cache/llm-operator/cluster`."""
    env = os.environ.get("LLMOP_CLUSTER_DIR")
    return Path(env) if env else Path.home() / ".cache" / "llm-operator" / "cluster"


@dataclass(frozen=True)
class Layout:
    """The files of one cluster, all under `root`."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        """Pid files of the processes we started."""
        return self.root / "run"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters); what users and tests use."""
        return self.root / "kubeconfig"

    @property
    def node_kubeconfig(self) -> Path:
        """The node agent's kubeconfig: `system:node:<NODE_NAME>` in group `system:nodes`."""
        return self.root / "node.kubeconfig"

    def component_kubeconfig(self, name: str) -> Path:
        """Kubeconfig of a control-plane component (controller-manager, scheduler)."""
        return self.root / f"{name}.kubeconfig"

    @property
    def audit_policy(self) -> Path:
        """The apiserver's audit policy (`localcluster.audit`), written on every start."""
        return self.root / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        """The apiserver's audit log, JSON lines; rotated copies lie beside it."""
        return self.logs / "kube-apiserver-audit.log"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def make_dirs(self) -> None:
        for folder in (self.root, self.pki, self.logs, self.run):
            folder.mkdir(parents=True, exist_ok=True)
        self.pki.chmod(0o700)


@functools.cache
def bin_dir() -> Path:
    """The cached tools folder, as `build.sh --print-bindir` names it (one source of truth)."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-bindir"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def tool(name: str) -> Path:
    """A binary from the cached tools folder."""
    return bin_dir() / name
