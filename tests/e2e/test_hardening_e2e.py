"""Problems that need the cluster, end to end: the chart-installed operator (its own release,
watching only this module's namespace) and SmolLM2 on the local cluster.

- A Service named like the LLMDeployment that someone else made is never taken over: the status
  says NameConflict (naming Service/NAME and who holds it) and the Service stays as it was.
- A TLS Secret that does not exist is named in the status (SecretNotFound, phase Failed, never
  Loading) within a few ticks of the kubelet's FailedMount.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from bench import canary_kit as kit
from localcluster import cp_testing
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.e2e

RELEASE = "llm-hardening"
REPORT_TIMEOUT = 120.0  # the kubelet's first mount attempt, then one 2 s tick


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    """The module's namespace; it must exist before the operator's Role is installed into it."""
    name = cp_testing.namespace_name("hardening")
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator_ns(cluster: Cluster, ns: str) -> Iterator[str]:
    op_ns = cp_testing.namespace_name("hardening-op")
    kit.wait_for_no_foreign_operator(cluster, ns, RELEASE)
    done = kit.install_operator(cluster, namespace=op_ns, release=RELEASE, watch=ns)
    assert done.returncode == 0, done.stdout + done.stderr
    yield op_ns
    kit.uninstall_operator(cluster, namespace=op_ns, release=RELEASE)
    cluster.kubectl("delete", "namespace", op_ns, "--wait=false", check=False)


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
