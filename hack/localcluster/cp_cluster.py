"""The whole local cluster: the control plane plus the node agent, up and down in the right order.

Up: control plane first (the node registers with the apiserver), then the node agent, then wait
until its Node reports Ready. Down: the node agent first (it stops its pods while the apiserver
still answers), then its cleanup (namespaces, veths, mounts it may have left), then the control
plane, etcd's data and the bridge, so the machine looks as it did before `up`.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from localcluster import controlplane, cp_api, cp_layout, cp_procs, rn_config, rn_node
from localcluster.cp_layout import Layout

NODE = "node"
NODE_MODULE = "localcluster.node"


@contextlib.contextmanager
def exclusive(layout: Layout) -> Iterator[None]:
    """Serialise `up` and `down`: two test sessions or terminals must not start two etcds."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.root / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def node_agent_available() -> bool:
    """Whether the node agent's module is present (it is developed alongside)."""
    return importlib.util.find_spec(NODE_MODULE) is not None


def child_env(bindir: Path) -> dict[str, str]:
    """Pure given os.environ: our tools first on PATH, `hack/` importable, no foreign kubeconfig."""
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    paths = [str(cp_layout.HACK_DIR), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.pop("KUBECONFIG", None)
    return env


def node_argv(layout: Layout) -> list[str]:
    return [
        sys.executable,
        "-m",
        NODE_MODULE,
        "--state-dir",
        str(layout.root),
        "--node-name",
        cp_layout.NODE_NAME,
    ]


def start_node(layout: Layout, *, bindir: Path) -> bool:
    """Start the node agent unless it runs; False when its module does not exist yet."""
    if not node_agent_available():
        return False
    if cp_procs.running(layout.pidfile(NODE)) is None:
        layout.log(NODE).unlink(missing_ok=True)
        cp_procs.start(
            node_argv(layout),
            pidfile=layout.pidfile(NODE),
            log=layout.log(NODE),
            env=child_env(bindir),
            cwd=cp_layout.HACK_DIR.parent,
        )
    return True


def wait_node_ready(layout: Layout, *, timeout: float) -> str:
    """Poll until our Node is Ready; fail fast, naming the log, if the agent died."""
    client = cp_api.Client.from_layout(layout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cp_layout.NODE_NAME in cp_api.ready_nodes(client):
            return cp_layout.NODE_NAME
        if cp_procs.running(layout.pidfile(NODE)) is None:
            raise controlplane.StartError(f"the node agent exited; see {layout.log(NODE)}")
        time.sleep(0.2)
    raise controlplane.StartError(f"no Node Ready after {timeout:.0f}s; see {layout.log(NODE)}")


@dataclass(frozen=True)
class UpResult:
    """What `up` reports: the Ready node (None without a node agent) and how long it took."""

    node: str | None
    seconds: float
    real_node: str | None = None


def real_node_wanted(env: dict[str, str] | None = None) -> bool:
    """Pure given the environment: `LLMOP_REAL_NODE=1` asks `up` for the real node too."""
    return (env if env is not None else dict(os.environ)).get("LLMOP_REAL_NODE", "") == "1"


def up(
    layout: Layout, *, bindir: Path, timeout: float = 90.0, real_node: bool | None = None
) -> UpResult:
    """Start (or verify) everything; returns the Ready node (None without a node agent).

    `real_node` (default: `$LLMOP_REAL_NODE`) also starts containerd and the real kubelet.
    """
    began = time.monotonic()
    with exclusive(layout):
        result = up_holding_lock(layout, bindir=bindir, timeout=timeout)
        if not (real_node if real_node is not None else real_node_wanted()):
            return result
        rn_node.up(layout, timeout=max(timeout, 120.0))
        return UpResult(result.node, time.monotonic() - began, rn_config.NODE_NAME)


def up_holding_lock(layout: Layout, *, bindir: Path, timeout: float = 90.0) -> UpResult:
    """`up` for a caller already inside `exclusive(layout)` (a test that owns the cluster)."""
    began = time.monotonic()
    if not any(controlplane.status(layout).values()) and not cp_procs.running(layout.pidfile(NODE)):
        # A cold start. If the last run ended without `down` (a killed session, a reboot), its
        # etcd data would resurrect old pods and its namespaces, veths and mounts would linger:
        # clear them first, so every cold `up` starts from an empty cluster.
        down_holding_lock(layout, bindir=bindir)
    controlplane.start(layout, bindir=bindir, timeout=timeout)
    has_node = start_node(layout, bindir=bindir)
    controlplane.wait_controllers(layout, timeout=timeout)
    node = wait_node_ready(layout, timeout=timeout) if has_node else None
    return UpResult(node=node, seconds=time.monotonic() - began)


class CleanupError(Exception):
    """The node agent's cleanup failed; the control plane was still taken down."""


def node_cleanup(layout: Layout, *, bindir: Path) -> str | None:
    """Ask the node agent's code to remove what its pods left (netns, veths, mounts).

    Returns an error message instead of raising, so `down` still stops the control plane.
    """
    if not node_agent_available():
        return None
    done = subprocess.run(
        [*node_argv(layout), "--cleanup"],
        env=child_env(bindir),
        cwd=cp_layout.HACK_DIR.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        return f"node cleanup exited {done.returncode}: {done.stderr.strip()[-2000:]}"
    return None


def down(layout: Layout, *, bindir: Path) -> list[str]:
    """Stop everything `up` started and remove what it created; returns what was running."""
    with exclusive(layout):
        return down_holding_lock(layout, bindir=bindir)


def down_holding_lock(layout: Layout, *, bindir: Path) -> list[str]:
    """`down` for a caller already inside `exclusive(layout)`."""
    # The real node first: its pods' sandboxes go through containerd and CNI while they run.
    real = rn_node.down(layout)
    stopped = real + ([NODE] if cp_procs.stop(layout.pidfile(NODE), timeout=30.0) else [])
    problem = node_cleanup(layout, bindir=bindir)
    stopped = [*stopped, *controlplane.stop(layout)]
    if problem:
        raise CleanupError(problem)
    return stopped


def status(layout: Layout) -> dict[str, bool]:
    """Which processes run, the apiserver's readiness and whether a node is Ready."""
    found = controlplane.status(layout)
    found[NODE] = cp_procs.running(layout.pidfile(NODE)) is not None
    for name in (rn_node.CONTAINERD, rn_node.KUBELET):
        # The real node only when it was started: it is optional.
        if layout.pidfile(name).exists():
            found[name] = cp_procs.running(layout.pidfile(name)) is not None
    client = cp_api.Client.from_layout(layout) if (layout.pki / "admin.crt").exists() else None
    found["apiserver-ready"] = client is not None and client.ready()
    found["node-ready"] = client is not None and bool(cp_api.ready_nodes(client))
    return found


def env_lines(layout: Layout, *, bindir: Path) -> str:
    """Pure: shell lines that point kubectl and friends at this cluster."""
    kubeconfig = shlex.quote(str(layout.kubeconfig))
    path = shlex.quote(str(bindir))
    return f'export KUBECONFIG={kubeconfig} PATH={path}:"$PATH"\n'
