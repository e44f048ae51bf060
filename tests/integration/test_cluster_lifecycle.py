"""`up`, a pod, `down`: the machine ends as it began.

Runs last (marker `takes_cluster_down`): it stops the shared session cluster first, takes a
snapshot of the host (network namespaces, links, mounts, cluster processes), brings a fresh
cluster up, runs a pod that serves HTTP from its own network namespace, takes everything down and
compares. It leaves the cluster down; the session fixture's own `down` is then a no-op.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from localcluster import cp_cluster, cp_layout, cp_net, rn_config, rn_node
from localcluster.cp_layout import Layout
from localcluster.cp_testing import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.takes_cluster_down]

# Warm binaries, two shared cores: the brief says < 20 s; allow headroom for a loaded machine.
UP_BUDGET_S = 30.0


@dataclass(frozen=True)
class HostSnapshot:
    netns: frozenset[str]
    links: frozenset[str]
    mounts: frozenset[tuple[str, str, str]]
    cluster_processes: frozenset[str]


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _netns() -> frozenset[str]:
    return frozenset(line.split()[0] for line in _run("ip", "netns", "list").splitlines() if line)


def _links() -> frozenset[str]:
    """Link names from `ip -o link` (indexes and counters change, names are what leak)."""
    return frozenset(
        line.split(":")[1].strip().split("@")[0] for line in _run("ip", "-o", "link").splitlines()
    )


# iproute2 turns /run/netns into a shared mount point the first time any namespace is added
# and keeps it; the namespaces themselves are the mounts below it, and those must go.
IPROUTE2_RUNTIME_MOUNT = "/run/netns"


def _mounts() -> frozenset[tuple[str, str, str]]:
    """(mount point, fs type, source) from /proc/self/mountinfo; mount ids change, these do not."""
    found = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[4] != IPROUTE2_RUNTIME_MOUNT:
            found.add((fields[4], fields[sep + 1], fields[sep + 2]))
    return frozenset(found)


def is_cluster_daemon(cmdline: str, *, in_pod_netns: bool, markers: tuple[str, ...]) -> bool:
    """Pure: a process that is part of a running cluster, as opposed to a short-lived client.

    Pod processes live in a network namespace of their own; the control plane and the node agent
    run from our tools folder or name our state folder. `python -m localcluster ...` and the
    node's `--cleanup` are clients (another session may be running one right now), not leftovers.
    """
    if " -m localcluster " in f"{cmdline} " or cmdline.rstrip().endswith("--cleanup"):
        return False
    return in_pod_netns or any(m in cmdline for m in markers)


def _cluster_processes(markers: tuple[str, ...]) -> frozenset[str]:
    """Live cluster daemons and pod processes, as `pid cmdline`."""
    host_net = os.readlink("/proc/self/ns/net")
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            net = os.readlink(entry / "ns" / "net")
        except OSError:
            continue
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        if cmdline and is_cluster_daemon(cmdline, in_pod_netns=net != host_net, markers=markers):
            found.add(f"{entry.name} {cmdline}")
    return frozenset(found)


def snapshot(layout: Layout) -> HostSnapshot:
    markers = (str(cp_layout.bin_dir()), str(layout.root), "localcluster.node")
    return HostSnapshot(_netns(), _links(), _mounts(), _cluster_processes(markers))


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "python:3.11",
                    "command": ["python3", "-m", "http.server", "8080"],
                    "ports": [{"containerPort": 8080}],
                }
            ]
        },
    }


def _wait_pod_ip(cluster: Cluster, ns: str, name: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    pod: dict[str, Any] = {}
    while time.monotonic() < deadline:
        pod = cluster.kubectl_json("get", "pod", "-n", ns, name)
        status = pod.get("status", {})
        if status.get("phase") == "Running" and status.get("podIP"):
            return str(status["podIP"])
        time.sleep(0.5)
    raise AssertionError(f"pod never ran: {json.dumps(pod.get('status'), indent=1)}")


def _http_get(url: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return int(reply.status)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_up_pod_down_leaves_the_host_as_it_was(cluster: Cluster) -> None:
    """Holds the cluster lock throughout, so no other session's `up` or `down` runs meanwhile
    (theirs wait); `up`/`down` therefore run in-process, the CLI would wait for the lock too."""
    layout, bindir = cluster.layout, cluster.bin_dir
    with cp_cluster.exclusive(layout):
        _up_pod_down(cluster, layout=layout, bindir=bindir)


def _up_pod_down(cluster: Cluster, *, layout: Layout, bindir: Path) -> None:
    cp_cluster.down_holding_lock(layout, bindir=bindir)
    before = snapshot(layout)
    assert not cp_net.link_exists(), "down must remove the bridge"

    began = time.monotonic()
    cp_cluster.up_holding_lock(layout, bindir=bindir)
    up_seconds = time.monotonic() - began
    assert up_seconds < UP_BUDGET_S, f"warm up took {up_seconds:.1f}s"
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    assert [n["metadata"]["name"] for n in nodes] == [cp_layout.NODE_NAME]

    # A second `up` only verifies: same processes, seconds at most.
    pids = {p.name: p.read_text() for p in layout.run.glob("*.pid")}
    began = time.monotonic()
    cp_cluster.up_holding_lock(layout, bindir=bindir)
    assert time.monotonic() - began < 5.0
    assert {p.name: p.read_text() for p in layout.run.glob("*.pid")} == pids

    ns = "lifecycle"
    cluster.kubectl("create", "namespace", ns)
    cluster.apply(_pod("web"), namespace=ns)
    pod_ip = _wait_pod_ip(cluster, ns, "web")
    assert _http_get(f"http://{pod_ip}:8080/") == 200
    during = snapshot(layout)
    assert during.netns - before.netns, "the pod should run in a network namespace of its own"
    # The process check below sees both kinds of process it must see gone.
    assert any("kube-apiserver" in p for p in during.cluster_processes)
    assert any("http.server" in p for p in during.cluster_processes)

    cp_cluster.down_holding_lock(layout, bindir=bindir)
    after = snapshot(layout)
    assert after.netns == before.netns
    assert after.links == before.links
    assert after.mounts == before.mounts
    assert after.cluster_processes <= before.cluster_processes
    assert not layout.etcd_data.exists(), "down wipes etcd so the next up starts fresh"


def _our_cgroups() -> frozenset[str]:
    """The real node's cgroup folders, in every v1 controller."""
    return frozenset(
        str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{rn_config.CGROUP_ROOT.strip('/')}")
    )


def _pause_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": rn_config.NODE_NAME},
            "tolerations": [{"key": rn_config.TAINT_KEY, "operator": "Exists"}],
            "containers": [
                {
                    "name": "pause",
                    "image": rn_config.SANDBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "resources": {"limits": {"memory": "32Mi"}},
                }
            ],
        },
    }


def test_real_node_up_pod_down_leaves_the_host_as_it_was(cluster: Cluster) -> None:
    """The same for the real node: containerd, the kubelet, a real container with its cgroup, its
    network namespace and its snapshot mount; `down` must leave none of them, nor a shim."""
    layout, bindir = cluster.layout, cluster.bin_dir
    rl = rn_node.real_layout(layout)
    with cp_cluster.exclusive(layout):
        cp_cluster.down_holding_lock(layout, bindir=bindir)
        markers = (str(cp_layout.bin_dir()), str(rn_node.node_bindir()), str(layout.root))
        before = HostSnapshot(_netns(), _links(), _mounts(), _cluster_processes(markers))
        cgroups_before = _our_cgroups()
        cp_cluster.up_holding_lock(layout, bindir=bindir)
        rn_node.up(layout)
        nodes = {n["metadata"]["name"] for n in cluster.kubectl_json("get", "nodes")["items"]}
        assert nodes == {cp_layout.NODE_NAME, rn_config.NODE_NAME}

        ns = "lifecycle-real"
        cluster.kubectl("create", "namespace", ns)
        cluster.apply(_pause_pod("pause"), namespace=ns)
        pod_ip = _wait_pod_ip(cluster, ns, "pause")
        assert pod_ip.startswith("198.18.") and int(pod_ip.split(".")[2]) >= 128, pod_ip
        pod = cluster.kubectl_json("get", "pod", "-n", ns, "pause")
        uid = pod["metadata"]["uid"]
        assert pod["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
        # The container's memory limit is a real cgroup under the node's cgroup root.
        limits = [
            int(p.read_text())
            for p in Path("/sys/fs/cgroup/memory").glob(
                f"{rn_config.CGROUP_ROOT.strip('/')}/**/pod{uid}/*/memory.limit_in_bytes"
            )
        ]
        assert 32 << 20 in limits, limits
        during_mounts = _mounts()
        assert any(m[0].startswith(str(rl.state)) for m in during_mounts), "no pod netns mount"
        assert any(m[1] == "overlay" for m in during_mounts - before.mounts), "no rootfs mount"
        during = _cluster_processes(markers)
        assert any("containerd-shim" in p for p in during), during
        assert any("kubelet" in p for p in during), during

        cp_cluster.down_holding_lock(layout, bindir=bindir)
    after = HostSnapshot(_netns(), _links(), _mounts(), _cluster_processes(markers))
    assert after.netns == before.netns
    assert after.links == before.links
    assert after.mounts == before.mounts
    assert after.cluster_processes <= before.cluster_processes
    assert _our_cgroups() == cgroups_before == frozenset()
    assert not rl.state.exists() and not rl.root.exists()
    # containerd's image cache is kept on purpose (like a node's), but no container is left in it.
    assert not list((rl.containerd_root / "io.containerd.grpc.v1.cri" / "containers").glob("*"))
