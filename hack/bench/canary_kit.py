"""What the canary e2e tests and the rollback benchmark share: an operator of their own, one
LLMDeployment driven through kubectl (`Target`), model folders on the node (a tiny model, a
corrupt one) and the operator's metrics. Pod watching and timestamps are in `podwatch`.

The operator is installed with the chart (`hack/install-operator.sh`) under its own release and
namespace and watches only the test namespace, so it never competes with the cluster-wide
operator other test modules install - but a cluster-wide operator would also act on the test
namespace, so `wait_for_no_foreign_operator` waits until none runs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import stat
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import analysis_trail, podwatch
from llm_runtime.api import contract
from localcluster import cp_testing
from localcluster.cp_testing import Cluster
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "hack" / "install-operator.sh"
OPERATOR_SELECTOR = "app.kubernetes.io/component=operator"
LABEL_DEPLOYMENT = contract.LABEL_DEPLOYMENT
LABEL_REVISION = contract.LABEL_REVISION
# Under /var/tmp, not /tmp: the runtime pod mounts an emptyDir over /tmp, which hides the host's.
NODE_MODELS = Path("/var/tmp/llm-operator-canary-e2e")

Pod = podwatch.Pod
CACHE_CLAIM = "model-cache"
INTERVAL = 5  # seconds between analyses in tests and the benchmark (the CRD default is 10)

# SmolLM2 with a model cache claim (a new pod skips the fetch) and short analysis intervals.
BASE_SPEC: dict[str, Any] = {
    "model": {
        "name": "smollm2-135m-instruct",
        "source": "builtin://smollm2-135m-instruct",
        "cacheClaimName": CACHE_CLAIM,
    },
    "replicas": 1,
    "runtime": {"limits": {"maxBatchSize": 8, "maxWaiting": 64, "maxNewTokens": 64}},
    "startupBudgetSeconds": 600,
    "drainGracePeriodSeconds": 10,
    "rollout": {
        "strategy": "Canary",
        "steps": [{"weight": 50}],
        "analysis": {"interval": f"{INTERVAL}s"},
    },
}


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


def foreign_operators(cluster: Cluster, namespace: str, own_release: str) -> list[str]:
    """Operator Deployments of other releases that would also act on `namespace`."""
    found = cluster.kubectl_json("get", "deployments", "-A", "-l", OPERATOR_SELECTOR)["items"]
    foreign = []
    for d in found:
        labels = d["metadata"].get("labels") or {}
        if labels.get(contract.LABEL_INSTANCE) == own_release or not d["spec"].get("replicas"):
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


def drift_values(seconds: float) -> list[str]:
    """Pure: the Helm arguments that set the operator's idle re-check interval (the chart's
    default leaves the operator's, 300 s)."""
    env = [{"name": "LLM_OPERATOR_DRIFT_INTERVAL_SECONDS", "value": f"{seconds:g}"}]
    return ["--set-json", f"operator.extraEnv={json.dumps(env)}"]


def install_operator(
    cluster: Cluster, *, namespace: str, release: str, watch: str, extra: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """hack/install-operator.sh: one replica in `namespace` watching only `watch`; `extra`:
    more Helm arguments (values)."""
    env = cluster.env
    env["HELM"] = str(cluster.bin_dir / "helm")
    env["KUBECTL"] = str(cluster.bin_dir / "kubectl")
    return subprocess.run(
        [
            "bash", str(INSTALL), "--namespace", namespace, "--release", release,
            "--timeout", "240", "--",
            "--set", f"operator.watchNamespaces={{{watch}}}",
            "--set", "operator.logFormat=text", *extra,
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


@contextlib.contextmanager
def own_namespace(cluster: Cluster, prefix: str) -> Iterator[str]:
    """A fresh namespace for one test module (it must exist before an operator's Role is
    installed into it); deleted, without waiting, at the end."""
    name = cp_testing.namespace_name(prefix)
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@contextlib.contextmanager
def own_operator(
    cluster: Cluster, watch: str, *, release: str, prefix: str, extra: Sequence[str] = ()
) -> Iterator[str]:
    """The chart installed under its own release in its own namespace, watching only `watch`,
    once no other operator acts there; yields the operator's namespace."""
    op_ns = cp_testing.namespace_name(prefix)
    wait_for_no_foreign_operator(cluster, watch, release)
    done = install_operator(cluster, namespace=op_ns, release=release, watch=watch, extra=extra)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield op_ns
    finally:
        uninstall_operator(cluster, namespace=op_ns, release=release)
        cluster.kubectl("delete", "namespace", op_ns, "--wait=false", check=False)


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


def spec_with(*, env: str | None = None, **changes: Any) -> dict[str, Any]:
    """Pure: BASE_SPEC with top-level `changes` merged one level deep and, optionally, a marker
    env variable whose value makes a new revision that serves the same model."""
    spec = copy.deepcopy(BASE_SPEC)
    for key, value in changes.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
    if env is not None:
        spec["runtime"] = {**spec["runtime"], "env": [{"name": "CANARY_E2E", "value": env}]}
    return spec


def cache_claim() -> dict[str, Any]:
    """The claim `BASE_SPEC` keeps fetched weights in (the node provisions it)."""
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": CACHE_CLAIM},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
    }  # fmt: skip


@dataclass
class Target:
    """One LLMDeployment, driven and read the way a user would with kubectl."""

    cluster: Cluster
    namespace: str
    name: str = "chat"
    asked_before: str | None = None  # status.currentRevision when the spec was last applied

    @property
    def selector(self) -> str:
        return f"{LABEL_DEPLOYMENT}={self.name}"

    def apply(self, spec: dict[str, Any]) -> None:
        """Applies `spec`, remembering the revision asked for until now (see new_revision)."""
        found = self.cluster.kubectl_json("get", "llmd", "-n", self.namespace)["items"]
        mine = [o for o in found if o["metadata"]["name"] == self.name]
        self.asked_before = (mine[0].get("status") or {}).get("currentRevision") if mine else None
        obj = {
            "apiVersion": f"{contract.GROUP}/v1alpha1",
            "kind": "LLMDeployment",
            "metadata": {"name": self.name},
            "spec": spec,
        }
        self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(obj))

    def get(self) -> dict[str, Any]:
        return dict(self.cluster.kubectl_json("get", "llmd", self.name, "-n", self.namespace))

    def status(self) -> dict[str, Any]:
        return dict(self.get().get("status") or {})

    def rollout(self) -> dict[str, Any]:
        return dict(self.status().get("rollout") or {})

    def new_revision(self) -> str:
        """The revision the last applied spec asks for, once the operator has seen it (the
        previous one may be a rejected canary, not the stable: compare with what was asked)."""
        rev = wait_for(
            "status.currentRevision to move",
            lambda: (r := self.status().get("currentRevision")) != self.asked_before and r,
            timeout=30,
            interval=0.5,
        )
        return str(rev)

    def settled(self, *, timeout: float = 120) -> str:
        """Waits until nothing is in flight (Stable or RolledBack); returns the stable revision."""
        ro = wait_for(
            "no rollout in flight",
            lambda: (r := self.rollout()).get("phase") in ("Stable", "RolledBack") and r,
            timeout=timeout,
        )
        return str(ro["stableRevision"])

    def promoted(
        self, rev: str, *, timeout: float, on_poll: Callable[[], None] | None = None
    ) -> None:
        wait_for(
            f"{rev} promoted",
            lambda: (
                (r := self.rollout()).get("phase") == "Stable" and r.get("stableRevision") == rev
            ),
            timeout=timeout,
            on_poll=on_poll,
        )

    def rolled_back(
        self, rev: str, *, timeout: float, trail: analysis_trail.Trail | None = None
    ) -> dict[str, Any]:
        """Waits for `rev` to be rolled back; returns the whole status. Every status read,
        the last included, also goes to `trail` (one read a poll: polls stay frequent)."""

        def probe() -> dict[str, Any] | None:
            st = self.status()
            ro, rb = st.get("rollout") or {}, st.get("rollback") or {}
            if trail is not None:
                trail.record(ro)
            return st if ro.get("phase") == "RolledBack" and rb.get("from") == rev else None

        result: dict[str, Any] = wait_for(
            f"{rev} rolled back", probe, timeout=timeout, interval=0.5
        )
        return result

    def events(self, reason: str) -> list[dict[str, Any]]:
        got = self.cluster.kubectl_json(
            "get", "events", "-n", self.namespace, "--field-selector",
            f"involvedObject.name={self.name}",
        )  # fmt: skip
        return [e for e in got["items"] if e.get("reason") == reason]

    def service_target(self) -> str:
        """host:port of the ClusterIP Service, reachable from the node (and this machine)."""
        svc = self.cluster.kubectl_json("get", "service", self.name, "-n", self.namespace)
        return f"{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"

    def deployments(self) -> dict[str, int]:
        """Deployment name -> spec.replicas of every revision's Deployment."""
        items = self.cluster.kubectl_json(
            "get", "deployments", "-n", self.namespace, "-l", self.selector
        )["items"]
        return {d["metadata"]["name"]: int(d["spec"].get("replicas") or 0) for d in items}

    def live_pods(self, rev: str | None = None) -> list[Pod]:
        sel = self.selector + (f",{LABEL_REVISION}={rev}" if rev else "")
        pods = self.cluster.kubectl_json("get", "pods", "-n", self.namespace, "-l", sel)["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def watch(self, rev: str | None = None) -> podwatch.PodWatch:
        sel = self.selector + (f",{LABEL_REVISION}={rev}" if rev else "")
        return podwatch.PodWatch(self.cluster, self.namespace, sel)


def operator_metrics(cluster: Cluster, *, namespace: str, release: str) -> str:
    """The running operator pod's /metrics page, read on its pod IP as Prometheus would."""
    sel = f"{contract.LABEL_INSTANCE}={release},{OPERATOR_SELECTOR}"
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", sel)["items"]
    (pod,) = [
        p for p in pods if podwatch.is_ready(p) and not p["metadata"].get("deletionTimestamp")
    ]
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    url = f"http://{pod['status']['podIP']}:{ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def sample(text: str, name: str, **labels: str) -> float:
    """Pure: the sum of the samples called `name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total
