"""The chart end to end: `hack/install-operator.sh` installs it into the local cluster with two
replicas in a namespace that enforces the `restricted` Pod Security Standard; the operators run
in-cluster as pods under the chart's RBAC with their ServiceAccount token, coordinate through kopf
peering (distinct priorities, so one works), reconcile an LLMDeployment with nothing more than
those grants, and `helm uninstall` removes what it installed.

The release watches only its own test namespace (the per-namespace Role path), so it never
competes with a cluster-wide operator installed by other tests.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
RELEASE = "chart-e2e"
FULLNAME = "chart-e2e-llm-operator"
REPLICAS = 2
SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator"


def wait_for(what: str, probe: Callable[[], Any], *, timeout: float, interval: float = 2.0) -> Any:
    """Poll `probe` until it returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def tools_env(cluster: Cluster) -> dict[str, str]:
    """The cluster's environment, with the scripts pointed at its helm and kubectl."""
    env = cluster.env
    env["HELM"] = str(cluster.bin_dir / "helm")
    env["KUBECTL"] = str(cluster.bin_dir / "kubectl")
    return env


def install(cluster: Cluster, namespace: str) -> subprocess.CompletedProcess[str]:
    """hack/install-operator.sh into `namespace`: two replicas watching only that namespace."""
    return subprocess.run(
        [
            "bash", str(REPO / "hack/install-operator.sh"),
            "--namespace", namespace, "--release", RELEASE, "--timeout", "240",
            "--", "--set", f"operator.watchNamespaces={{{namespace}}}",
            "--set", "operator.logLevel=debug", "--set", "operator.logFormat=text",
            "--set", f"replicaCount={REPLICAS}",
        ],
        env=tools_env(cluster), capture_output=True, text=True, timeout=420, check=False,
    )  # fmt: skip


def can_i(cluster: Cluster, verb: str, resource: str, namespace: str) -> bool:
    """Whether the operator's ServiceAccount may do `verb` on `resource`, as RBAC decides."""
    sa = f"system:serviceaccount:{namespace}:{FULLNAME}"
    done = cluster.kubectl(
        "auth", "can-i", verb, resource, "-n", namespace, f"--as={sa}", check=False
    )
    return done.stdout.strip() == "yes"


def ready_pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]] | None:
    """The release's operator pods once all REPLICAS are Ready, else None."""
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", SELECTOR)["items"]
    ready = [
        pod
        for pod in pods
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        )
    ]
    return ready if len(pods) == len(ready) == REPLICAS else None


def peers(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """The replicas kopf lists in the release's peering object (keyed by POD_ID)."""
    peering = cluster.kubectl_json("get", "kopfpeerings.kopf.dev", FULLNAME, "-n", namespace)
    result: dict[str, Any] = peering.get("status") or {}
    return result


def exists(cluster: Cluster, *args: str) -> bool:
    """Whether `kubectl get ARGS` finds the object."""
    return cluster.kubectl("get", *args, check=False).returncode == 0


def minimal_llmd(name: str) -> dict[str, Any]:
    """An LLMDeployment with no replicas: children without loading a model."""
    return {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "smollm2", "source": "builtin://smollm2-135m-instruct"},
            "replicas": 0,
        },
    }


def owned_children(cluster: Cluster, namespace: str, owner_uid: str) -> set[str]:
    """Kinds of the objects in `namespace` whose ownerReferences name `owner_uid`."""
    listing = cluster.kubectl_json(
        "get", "deployments,services,serviceaccounts,poddisruptionbudgets", "-n", namespace
    )
    return {
        item["kind"]
        for item in listing["items"]
        if any(ref["uid"] == owner_uid for ref in item["metadata"].get("ownerReferences", []))
    }


def test_chart_runs_the_operator_in_cluster_under_its_rbac_and_uninstalls_cleanly(
    cluster: Cluster, namespace: str
) -> None:
    # Pod Security Admission's strictest level: the operator pods must be admitted under it.
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    done = install(cluster, namespace)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        pods = wait_for(
            "both operator pods Ready", lambda: ready_pods(cluster, namespace), timeout=90
        )
        names = {pod["metadata"]["name"] for pod in pods}
        for pod in pods:
            assert pod["spec"]["serviceAccountName"] == FULLNAME
            assert pod["spec"]["securityContext"]["runAsUser"] == 65532

        # Both heartbeats in the peering object, written with their own tokens (the Role allows
        # patching that one object), with distinct priorities: kopf pauses every replica on a tie.
        status = wait_for(
            "both replicas in the peering status",
            lambda: (st := peers(cluster, namespace)).keys() >= names and st,
            timeout=60,
        )
        assert len({status[name]["priority"] for name in names}) == REPLICAS, status

        # The chart's RBAC is enough to reconcile: children appear, owned by the LLMDeployment.
        cluster.apply(minimal_llmd("chart-probe"), namespace=namespace)
        uid = cluster.kubectl_json("get", "llmd", "chart-probe", "-n", namespace)["metadata"]["uid"]
        expected = {"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"}
        wait_for(
            "children owned by the LLMDeployment",
            lambda: owned_children(cluster, namespace, uid) >= expected,
            timeout=90,
        )

        for name in sorted(names):
            logs = cluster.kubectl("logs", "-n", namespace, name, "-c", "operator").stdout
            assert "configured in cluster with service account" in logs, logs[-3000:]
            assert "forbidden" not in logs.lower(), logs[-3000:]

        # Least privilege, as the API server's authorizer sees it.
        assert can_i(cluster, "patch", "llmdeployments.llm-operator.io", namespace)
        assert can_i(cluster, "create", "deployments.apps", namespace)
        assert not can_i(cluster, "patch", "llmdeployments.llm-operator.io", "default")
        assert not can_i(cluster, "get", "secrets", namespace)
        # Deleting is for a retired revision's Deployment (and, with the front door, its own
        # Service) only; everything else goes by the GC. ConfigMaps (the front door's routes) are
        # read only to check who owns one of that name before writing it (no takeover).
        assert can_i(cluster, "delete", "deployments.apps", namespace)
        assert can_i(cluster, "delete", "services", namespace)
        assert not can_i(cluster, "delete", "serviceaccounts", namespace)
        assert not can_i(cluster, "delete", "llmdeployments.llm-operator.io", namespace)
        assert can_i(cluster, "patch", "configmaps", namespace)
        assert can_i(cluster, "get", "configmaps", namespace)
        assert not can_i(cluster, "list", "configmaps", namespace)
        cluster.kubectl("delete", "llmd", "chart-probe", "-n", namespace, "--wait=true")
    finally:
        # Even after a failed assertion: while the operator runs, or its finalizer stays behind.
        cluster.kubectl(
            "delete", "llmd", "--all", "-n", namespace, "--wait=true", "--timeout=60s", check=False
        )
        helm = [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}"]
        gone = subprocess.run(
            [*helm, "uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "120s"],
            env=cluster.env, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
    assert gone.returncode == 0, gone.stdout + gone.stderr
    leftovers = [
        args
        for args in (
            ("deployment", FULLNAME, "-n", namespace),
            ("serviceaccount", FULLNAME, "-n", namespace),
            ("role", FULLNAME, "-n", namespace),
            ("rolebinding", FULLNAME, "-n", namespace),
            ("kopfpeerings.kopf.dev", FULLNAME, "-n", namespace),
            ("service", f"{FULLNAME}-metrics", "-n", namespace),
            ("clusterrole", FULLNAME),
            ("clusterrolebinding", FULLNAME),
        )
        if exists(cluster, *args)
    ]
    assert not leftovers
    wait_for(
        "the operator pods gone",
        lambda: not cluster.kubectl_json("get", "pods", "-n", namespace, "-l", SELECTOR)["items"],
        timeout=60,
    )
    # Helm never deletes CRDs: LLMDeployments elsewhere survive an uninstall.
    assert exists(cluster, "crd", "llmdeployments.llm-operator.io")
