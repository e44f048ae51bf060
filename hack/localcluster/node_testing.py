"""Helpers for the node's integration tests: manifests as dicts, polling, running inside a pod.

Tests talk to the cluster through `cp_testing.Cluster` (kubectl); these helpers add what a test
of the node needs: wait for a condition with a clear failure message, and reach a pod's network
namespace the way another pod would.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

from localcluster import netns

Obj = dict[str, Any]
PYTHON_IMAGE = "python:3.11"


def wait_until(
    check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.5
) -> Any:
    """Poll until `check` returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last = check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval)
        last = check()
    return last


def in_pod(pod: Obj, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command in the pod's network namespace (with its /etc/hosts), as a peer pod would."""
    name = netns.netns_name(pod["metadata"]["uid"])
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def container(name: str, command: list[str], **extra: Any) -> Obj:
    """A container of the python image (the venv's python, through images.yaml)."""
    return {"name": name, "image": PYTHON_IMAGE, "command": command, **extra}


def http_server(port: int = 8000, *, readiness: Obj | None = None) -> Obj:
    """`python -m http.server` serving a fresh emptyDir, with a `ready` file to probe."""
    script = f"touch /www/ready && exec python -m http.server {port} -d /www"
    extra: Obj = {
        "ports": [{"containerPort": port, "name": "http"}],
        "volumeMounts": [{"name": "www", "mountPath": "/www"}],
    }
    if readiness is not None:
        extra["readinessProbe"] = readiness
    return container("web", ["sh", "-c", script], **extra)


def deployment(name: str, *, replicas: int, pod_spec: Obj, strategy: Obj | None = None) -> Obj:
    labels = {"app": name}
    spec: Obj = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if strategy is not None:
        spec["strategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


def service(name: str, *, port: int, target: int | str, headless: bool = False) -> Obj:
    spec: Obj = {
        "selector": {"app": name},
        "ports": [{"name": "http", "port": port, "targetPort": target}],
    }
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def pod(name: str, spec: Obj, *, labels: Obj | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"terminationGracePeriodSeconds": 5, **spec},
    }


def is_ready(pod_obj: Obj) -> bool:
    conditions = pod_obj.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def container_status(pod_obj: Obj, name: str) -> Obj:
    statuses = pod_obj.get("status", {}).get("containerStatuses", [])
    return next((s for s in statuses if s["name"] == name), {})


def pid_of(pod_obj: Obj, name: str) -> int:
    """The container's PID, from its containerID `process://PID`."""
    return int(container_status(pod_obj, name)["containerID"].removeprefix("process://"))
