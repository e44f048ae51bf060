"""What the canary e2e tests need beyond kubectl: an operator of their own, a pod watch that
never misses a status, time arithmetic on Kubernetes timestamps, and model folders on the node.

The operator is installed with the chart (`hack/install-operator.sh`) under its own release and
namespace and watches only the test namespace, so it never competes with the cluster-wide
operator other test modules install - but a cluster-wide operator would also act on the test
namespace, so `wait_for_no_foreign_operator` waits until none runs.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localcluster.cp_testing import Cluster

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "hack" / "install-operator.sh"
OPERATOR_SELECTOR = "app.kubernetes.io/component=operator"
LABEL_DEPLOYMENT = "llm-operator.io/deployment"
LABEL_REVISION = "llm-operator.io/revision"
# Under /var/tmp, not /tmp: the runtime pod mounts an emptyDir over /tmp, which hides the host's.
NODE_MODELS = Path("/var/tmp/llm-operator-canary-e2e")

Pod = dict[str, Any]


def wait_for(
    what: str,
    probe: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 1.0,
    on_poll: Callable[[], None] | None = None,
) -> Any:
    """Polls `probe` until it returns something truthy; fails with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if on_poll is not None:
            on_poll()
        try:
            last = probe()
        except (AssertionError, KeyError, json.JSONDecodeError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def parse_time(text: str | None) -> datetime | None:
    """Pure: a Kubernetes RFC 3339 timestamp ("2026-11-29T01:00:12Z", fractions allowed)."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def seconds_between(start: str | None, end: str | None) -> float:
    """Pure: `end - start` in seconds; both must be present."""
    a, b = parse_time(start), parse_time(end)
    assert a is not None and b is not None, (start, end)
    return (b - a).total_seconds()


def _terminations(pod: Pod) -> Iterator[str]:
    status = pod.get("status") or {}
    for cs in (
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
    ):
        for which in ("state", "lastState"):
            ended = (cs.get(which) or {}).get("terminated") or {}
            if ended.get("finishedAt"):
                yield str(ended["finishedAt"])


def first_termination(pods: list[Pod]) -> str | None:
    """Pure: the earliest `finishedAt` of any container (init or main) of `pods`: the first crash."""
    times = [t for pod in pods for t in _terminations(pod)]
    return min(times, key=lambda t: parse_time(t) or datetime.max.replace(tzinfo=UTC), default=None)


def is_ready(pod: Pod) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def revision(pod: Pod) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION, ""))


@dataclass
class PodWatch:
    """`kubectl get pods -w -o json` in the background: every version of every pod, in order.

    Polling could miss a container's short life between two polls; a watch cannot. `versions`
    holds each pod object as the API server sent it (a rolled-back canary's pod is gone soon).
    """

    cluster: Cluster
    namespace: str
    selector: str
    versions: list[Pod] = field(default_factory=list)
    _proc: subprocess.Popen[str] | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> PodWatch:
        cmd = [
            str(self.cluster.bin_dir / "kubectl"), f"--kubeconfig={self.cluster.kubeconfig}",
            "get", "pods", "-n", self.namespace, "-l", self.selector, "-w", "-o", "json",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            cmd, env=self.cluster.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self._proc.stdout:
            buffer += line
            try:
                obj, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                continue
            buffer = buffer.lstrip()[end:]
            with self._lock:
                self.versions.append(obj)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def of_revision(self, rev: str) -> list[Pod]:
        with self._lock:
            return [p for p in self.versions if revision(p) == rev]

    def pod_uids(self, rev: str) -> set[str]:
        return {str(p["metadata"]["uid"]) for p in self.of_revision(rev)}

    def min_ready(self, rev: str, *, after: int = 0) -> int:
        """The fewest Ready pods of `rev` at any moment seen (from the `after`-th version on)."""
        with self._lock:
            history = list(self.versions)
        ready: dict[str, bool] = {}
        lowest: int | None = None
        for i, pod in enumerate(history):
            if revision(pod) != rev:
                continue
            ready[pod["metadata"]["uid"]] = is_ready(pod) and not pod["metadata"].get(
                "deletionTimestamp"
            )
            if i >= after:
                count = sum(ready.values())
                lowest = count if lowest is None else min(lowest, count)
        return lowest if lowest is not None else 0

    def mark(self) -> int:
        """The number of versions seen so far, for `min_ready(after=...)`."""
        with self._lock:
            return len(self.versions)


def foreign_operators(cluster: Cluster, namespace: str, own_release: str) -> list[str]:
    """Operator Deployments of other releases that would also act on `namespace`."""
    found = cluster.kubectl_json("get", "deployments", "-A", "-l", OPERATOR_SELECTOR)["items"]
    foreign = []
    for d in found:
        labels = d["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/instance") == own_release or not d["spec"].get("replicas"):
            continue
        env = {
            e["name"]: e.get("value", "")
            for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])
        }
        watched = [n for n in env.get("LLM_OPERATOR_NAMESPACES", "").split(",") if n]
        if not watched or namespace in watched:
            foreign.append(f"{d['metadata']['namespace']}/{d['metadata']['name']}")
    return foreign


def wait_for_no_foreign_operator(cluster: Cluster, namespace: str, own_release: str) -> None:
    """Two operators on one LLMDeployment would fight; wait for a cluster-wide one to go."""
    wait_for(
        "no other llm-operator watching the test namespace (a cluster-wide release is installed)",
        lambda: not foreign_operators(cluster, namespace, own_release),
        timeout=900,
        interval=5,
    )


def install_operator(
    cluster: Cluster, *, namespace: str, release: str, watch: str
) -> subprocess.CompletedProcess[str]:
    """hack/install-operator.sh: one replica in `namespace` watching only `watch`."""
    env = cluster.env
    env["HELM"] = str(cluster.bin_dir / "helm")
    env["KUBECTL"] = str(cluster.bin_dir / "kubectl")
    return subprocess.run(
        [
            "bash", str(INSTALL), "--namespace", namespace, "--release", release,
            "--timeout", "240", "--",
            "--set", f"operator.watchNamespaces={{{watch}}}",
            "--set", "operator.logFormat=text",
        ],
        env=env, capture_output=True, text=True, timeout=420, check=False,
    )  # fmt: skip


def uninstall_operator(cluster: Cluster, *, namespace: str, release: str) -> None:
    subprocess.run(
        [
            str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}",
            "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "120s",
        ],
        env=cluster.env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def node_folder(name: str) -> Path:
    """A fresh folder on the node that the runtime's user (65532) can read."""
    path = NODE_MODELS / name
    path.mkdir(parents=True, exist_ok=True)
    for p in (NODE_MODELS, path):
        p.chmod(0o755)
    return path


def make_readable(root: Path) -> None:
    """chmod a+rX: the runtime pod runs as a non-root user and must read the model files."""
    for dirpath, _dirs, files in os.walk(root):
        Path(dirpath).chmod(0o755)
        for name in files:
            f = Path(dirpath) / name
            f.chmod(f.stat().st_mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def tiny_model_on_node(name: str) -> Path:
    """A tiny random HF model (loads in seconds, never answers "Paris") the pods can read."""
    from llm_runtime.models import tiny

    folder = node_folder(name)
    tiny.make_tiny_model(folder / "model")
    make_readable(folder)
    return folder / "model"


def corrupt_gguf_on_node(name: str) -> Path:
    """A file named like a GGUF model that is garbage: fetching or loading it must fail."""
    path = node_folder(name) / "corrupt.gguf"
    path.write_bytes(b"GGUF" + os.urandom(4096))
    path.chmod(0o644)
    return path
