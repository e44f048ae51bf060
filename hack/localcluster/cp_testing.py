"""What tests need to drive the local cluster: a guarded handle, kubectl, the CLI as a child.

Kept out of `tests/conftest.py` so test modules can import it like any module.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localcluster import cp_cluster, cp_layout
from localcluster.cp_layout import Layout

REPO = cp_layout.HACK_DIR.parent


class ForeignClusterError(Exception):
    """The kubeconfig does not belong to the cluster these tests manage."""


def e2e_node() -> str:
    """Where a test session puts pods that do not choose a node: $LLMOP_E2E_NODE, "process"
    (the default) or "real" (tests/conftest.py moves them onto the real node)."""
    value = os.environ.get("LLMOP_E2E_NODE", "process")
    if value not in ("process", "real"):
        raise ValueError(f"LLMOP_E2E_NODE={value!r}: expected 'process' or 'real'")
    return value


def guard_kubeconfig(path: Path, *, layout: Layout) -> None:
    """Refuse any kubeconfig whose current context is not ours, on our server, with our CA."""
    config: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    current = config.get("current-context")
    if current != cp_layout.CONTEXT:
        raise ForeignClusterError(f"{path}: current context {current!r}, not {cp_layout.CONTEXT!r}")
    context = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    if cluster.get("server") != cp_layout.APISERVER_URL:
        raise ForeignClusterError(f"{path}: server {cluster.get('server')!r} is not ours")
    ca = base64.b64decode(cluster.get("certificate-authority-data", ""))
    if ca != (layout.pki / "ca.crt").read_bytes():
        raise ForeignClusterError(f"{path}: CA differs from {layout.pki / 'ca.crt'}")


def localcluster_cli(*args: str, layout: Layout, timeout: float = 300) -> str:
    """Run `python -m localcluster ARGS` as a child (its daemons outlive it, never as zombies)."""
    env = cp_cluster.child_env(cp_layout.bin_dir())
    cmd = [sys.executable, "-m", "localcluster", *args, "--state-dir", str(layout.root)]
    done = subprocess.run(
        cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def cluster_is_up(layout: Layout) -> bool:
    """Every process runs, the apiserver is ready and a node is Ready."""
    return all(cp_cluster.status(layout).values())


@dataclass(frozen=True)
class Cluster:
    """The running local cluster as tests see it."""

    layout: Layout
    bin_dir: Path
    started_here: bool

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    @property
    def env(self) -> dict[str, str]:
        """Environment for child processes: our kubeconfig, our tools first on PATH."""
        env = cp_cluster.child_env(self.bin_dir)
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the cached kubectl against this cluster; raise with its output when it fails."""
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        done = subprocess.run(
            cmd, input=input, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.returncode}\n{done.stderr}")
        return done

    def kubectl_json(self, *args: str) -> Any:
        """`kubectl ARGS -o json`, parsed."""
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply(self, manifest: dict[str, Any], *, namespace: str | None = None) -> None:
        """`kubectl apply` one object given as a dict."""
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", input=json.dumps(manifest))


def namespace_name(test_name: str) -> str:
    """Pure: a valid, unique namespace name (RFC 1123 label) derived from the test's name."""
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].rstrip("-")
    return f"t-{stem}-{uuid.uuid4().hex[:6]}"
