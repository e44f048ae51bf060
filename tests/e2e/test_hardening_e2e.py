"""Problems that need the cluster, end to end: the chart-installed operator (its own release,
watching only this module's namespace) and SmolLM2 on the local cluster.

- A Service named like the LLMDeployment that someone else made is never taken over: the status
  says NameConflict (naming Service/NAME and who holds it) and the Service stays as it was.
- A TLS Secret that does not exist is named in the status (SecretNotFound, phase Failed, never
  Loading) within a few ticks of the kubelet's FailedMount.
- With a TLS Secret, a pod turns Ready only once the model serves (the kubelet's gRPC probe asks
  the plaintext health-only port, which reports the main port's serving state), and a client that
  verifies the certificate gets an answer over TLS.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench import canary_kit as kit
from bench import podwatch
from llm_runtime.api import client, contract
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.e2e

RELEASE = "llm-hardening"
REPORT_TIMEOUT = 120.0  # the kubelet's first mount attempt, then one 2 s tick


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    """The module's namespace; it must exist before the operator's Role is installed into it."""
    with kit.own_namespace(cluster, "hardening") as name:
        yield name


@pytest.fixture(scope="module")
def operator_ns(cluster: Cluster, ns: str) -> Iterator[str]:
    """The chart installed under its own release, watching only `ns`; yields its namespace."""
    with kit.own_operator(cluster, ns, release=RELEASE, prefix="hardening-op") as op_ns:
        yield op_ns


def llmd(name: str, **spec: Any) -> dict[str, Any]:
    base = {
        "model": {"name": "smollm2", "source": "builtin://smollm2-135m-instruct"},
        "replicas": 1,
    }
    return {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": name},
        "spec": {**base, **spec},
    }


def condition(cluster: Cluster, ns: str, name: str, kind: str) -> dict[str, Any] | None:
    st = cluster.kubectl_json("get", "llmd", name, "-n", ns).get("status") or {}
    found = [c for c in st.get("conditions") or [] if c.get("type") == kind]
    return (
        {**found[0], "phase": st.get("phase")} if found and found[0]["status"] == "True" else None
    )


def warning_events(cluster: Cluster, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    items = cluster.kubectl_json("get", "events", "-n", ns)["items"]
    return [
        e
        for e in items
        if e.get("reason") == reason and (e.get("involvedObject") or {}).get("name") == name
    ]


def test_a_foreign_service_of_the_same_name_is_reported_and_left_alone(
    cluster: Cluster, ns: str, operator_ns: str
) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "taken", "labels": {"owner": "someone-else"}},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"name": "http", "port": 8080}]},
    }
    cluster.apply(foreign, namespace=ns)
    before = cluster.kubectl_json("get", "service", "taken", "-n", ns)
    cluster.apply(llmd("taken"), namespace=ns)
    cond = kit.wait_for(
        "a NameConflict condition",
        lambda: condition(cluster, ns, "taken", "NameConflict"),
        timeout=REPORT_TIMEOUT,
    )
    assert cond["reason"] == "NameConflict" and "Service/taken" in cond["message"]
    assert cond["phase"] == "Failed"
    assert warning_events(cluster, ns, "taken", "NameConflict"), "no NameConflict Event"
    after = cluster.kubectl_json("get", "service", "taken", "-n", ns)
    for key in ("spec", "metadata"):
        keep = ("labels", "ownerReferences", "resourceVersion") if key == "metadata" else None
        a = {k: after[key].get(k) for k in keep} if keep else after[key]
        b = {k: before[key].get(k) for k in keep} if keep else before[key]
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), key
    cluster.kubectl("delete", "llmd", "taken", "-n", ns, "--wait=true", "--timeout=120s")


def test_a_missing_tls_secret_is_named_and_the_phase_is_failed_not_loading(
    cluster: Cluster, ns: str, operator_ns: str
) -> None:
    cluster.apply(llmd("nosecret", security={"tlsSecretName": "absent-tls"}), namespace=ns)
    cond = kit.wait_for(
        "a SecretMissing condition",
        lambda: condition(cluster, ns, "nosecret", "SecretMissing"),
        timeout=REPORT_TIMEOUT,
    )
    assert cond["reason"] == "SecretNotFound" and "absent-tls" in cond["message"]
    assert cond["phase"] == "Failed"
    assert warning_events(cluster, ns, "nosecret", "SecretNotFound"), "no SecretNotFound Event"
    cluster.kubectl("delete", "llmd", "nosecret", "-n", ns, "--wait=true", "--timeout=120s")


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}"),
            *("-addext", f"subjectAltName=DNS:{name}"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _ready_at(pod: dict[str, Any]) -> str | None:
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready" and c.get("status") == "True":
            return str(c.get("lastTransitionTime"))
    return None


def test_with_tls_a_pod_is_ready_once_the_model_serves_and_answers_over_tls(
    cluster: Cluster, ns: str, operator_ns: str, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path, "tlsready")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tlsready-tls"},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(cert.read_bytes()).decode(),
            "tls.key": base64.b64encode(key.read_bytes()).decode(),
        },
    }
    cluster.apply(secret, namespace=ns)
    cluster.apply(llmd("tlsready", security={"tlsSecretName": "tlsready-tls"}), namespace=ns)
    selector = f"{contract.LABEL_INSTANCE}=tlsready"

    def ready_pod() -> dict[str, Any] | None:
        pods = cluster.kubectl_json("get", "pods", "-n", ns, "-l", selector)["items"]
        return next((p for p in pods if _ready_at(p)), None)

    pod = kit.wait_for("a Ready TLS pod", ready_pod, timeout=600, interval=2)
    (runtime,) = [c for c in pod["spec"]["containers"] if c["name"] == "runtime"]
    probe = runtime["readinessProbe"]["grpc"]
    assert probe["port"] == contract.RUNTIME_HEALTH_PORT, runtime["readinessProbe"]
    # Ready came from the model serving, not from an open port (the health port reports the
    # main port's state: tests/unit/runtime/test_runtime_hardening.py follows it through loading).
    logs = cluster.kubectl("logs", "-n", ns, pod["metadata"]["name"], "-c", "runtime").stdout
    assert "serving smollm2" in logs, logs[-2000:]
    target = f"{pod['status']['podIP']}:{contract.RUNTIME_GRPC_PORT}"
    conn = client.Connection(target=target, ca_file=cert, server_name="tlsready")
    with client.RuntimeClient(conn) as rt:
        reply = rt.generate(
            client.build_request(messages=[("user", "What is the capital of France?")],
                                 max_new_tokens=8, temperature=0.0)
        )  # fmt: skip
    assert reply.text.strip(), reply
    st = kit.wait_for(
        "status ready 1/1",
        lambda: (s := cluster.kubectl_json("get", "llmd", "tlsready", "-n", ns)["status"])
        .get("ready") == "1/1" and s,
        timeout=60,
    )  # fmt: skip
    assert st["phase"] not in ("Failed", "Loading"), st
    cluster.kubectl("delete", "llmd", "tlsready", "-n", ns, "--wait=true", "--timeout=120s")


def test_a_stable_deployment_deleted_mid_canary_is_rebuilt_as_it_was(
    cluster: Cluster, ns: str, operator_ns: str
) -> None:
    chat = kit.Target(cluster, ns, name="rebuilt")
    cluster.apply(kit.cache_claim(), namespace=ns)
    chat.apply(kit.spec_with())
    kit.wait_for(
        "rebuilt Ready and Stable",
        lambda: chat.status().get("ready") == "1/1" and chat.rollout().get("phase") == "Stable",
        timeout=600,
        interval=3,
    )
    stable = chat.rollout()["stableRevision"]
    assert chat.status()["stableTemplate"]["revision"] == stable
    held = {"steps": [{"weight": 50, "pause": {}}], "analysis": {"interval": f"{kit.INTERVAL}s"}}
    chat.apply(kit.spec_with(env="rebuild-canary", rollout=held))
    canary = chat.new_revision()
    kit.wait_for(
        "the canary held at 50%",
        lambda: (
            (r := chat.rollout()).get("phase") == "Paused" and r.get("canaryRevision") == canary
        ),
        timeout=600,
        interval=2,
    )
    name = f"rebuilt-{stable}"
    cluster.kubectl("delete", "deployment", name, "-n", ns, "--wait=true", "--timeout=60s")
    # The spec now describes the canary: only the recorded stable spec can bring this back.
    kit.wait_for(
        "the stable revision serving again from a rebuilt Deployment",
        lambda: any(podwatch.is_ready(p) for p in chat.live_pods(stable)),
        timeout=600,
        interval=2,
    )
    rebuilt = cluster.kubectl_json("get", "deployment", name, "-n", ns)
    labels = rebuilt["spec"]["template"]["metadata"]["labels"]
    assert labels[contract.LABEL_REVISION] == stable, labels
    assert chat.rollout()["stableRevision"] == stable
    cluster.kubectl("delete", "llmd", "rebuilt", "-n", ns, "--wait=true", "--timeout=120s")


# Mistakes only the cluster can see: each is accepted at apply and must be named by a condition
# (type, reason, and a text the message contains) within a few ticks of the first signal.
CLUSTER_CORPUS: dict[str, tuple[dict[str, Any], str, str, str]] = {
    "no-token-secret": (
        {"security": {"authTokenSecretName": "absent-token"}},
        "SecretMissing", "SecretNotFound", "absent-token",
    ),
    "env-secret-missing": (
        {"runtime": {"env": [{"name": "HF_TOKEN", "valueFrom": {
            "secretKeyRef": {"name": "absent-hf", "key": "token"}}}]}},
        "SecretMissing", "SecretNotFound", "absent-hf",
    ),
    "no-priority-class": (
        {"scheduling": {"priorityClassName": "absent-priority"}},
        "PriorityClassMissing", "PriorityClassNotFound", "absent-priority",
    ),
    "image-never-pulled": (
        {"runtime": {"image": "registry.invalid/llm/none:v1", "imagePullPolicy": "Never"}},
        "ImagePullFailed", "ErrImageNeverPull", "registry.invalid/llm/none:v1",
    ),
    "kv-cache-too-big": (
        {"runtime": {
            "limits": {"maxBatchSize": 256, "maxInputTokens": 65536, "maxNewTokens": 32768},
            "resources": {"limits": {"memory": "2Gi"}}}},
        "KVCacheExceedsMemory", "KVCacheExceedsMemoryLimit", "maxBatchSize",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def cluster_corpus(cluster: Cluster, ns: str, operator_ns: str) -> Iterator[list[str]]:
    """Every cluster-corpus object applied at once (they fail independently)."""
    names = [f"cc-{key}" for key in CLUSTER_CORPUS]
    for name, (spec, *_) in zip(names, CLUSTER_CORPUS.values(), strict=True):
        cluster.apply(llmd(name, **spec), namespace=ns)
    yield names
    # While the operator still runs: its finalizer would otherwise hold the objects for ever.
    cluster.kubectl(
        "delete", "llmd", *names, "-n", ns, "--wait=true", "--timeout=120s", check=False
    )


@pytest.mark.parametrize("key", list(CLUSTER_CORPUS))
def test_a_mistake_only_the_cluster_sees_is_named_by_a_condition(
    cluster: Cluster, ns: str, cluster_corpus: list[str], key: str
) -> None:
    _, kind, reason, text = CLUSTER_CORPUS[key]
    cond = kit.wait_for(
        f"a {kind} condition on cc-{key}",
        lambda: condition(cluster, ns, f"cc-{key}", kind),
        timeout=REPORT_TIMEOUT,
    )
    assert cond["reason"] == reason and text in cond["message"], cond
    if key != "kv-cache-too-big":  # that one loads (and would OOM once the cache fills)
        assert cond["phase"] == "Failed", cond  # never "Loading" for what will never load
