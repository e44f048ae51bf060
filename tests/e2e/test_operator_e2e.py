"""The operator end to end: installed by Helm, running in-cluster as a pod under the chart's RBAC,
serving SmolLM2 from examples/smollm2.yaml on the local cluster.

Each test asserts on what a user sees: `kubectl get llmd`, status conditions, Events, children,
and gRPC answers through the Service.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_runtime.api import client, contract
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "llm-operator"
EXAMPLE = REPO / "examples" / "smollm2.yaml"
RELEASE = "llm-operator"
SYSTEM_NS = "llm-operator-system"
LOAD_TIMEOUT = 600.0  # fetch + convert + load + warm-up on two shared cores
CHILDREN = ("deployment", "service", "poddisruptionbudget", "serviceaccount")


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}", *args],
        env=cluster.env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert not check or done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[Cluster]:
    """The chart installed (CRDs, RBAC, operator Deployment) and the operator pod Ready.

    A release that is already installed (another test module's) is used as it is and left alone,
    so two modules never run two operators or uninstall each other's."""
    installed = helm(cluster, "status", RELEASE, "--namespace", SYSTEM_NS, check=False)
    if installed.returncode != 0:
        helm(
            cluster, "upgrade", "--install", RELEASE, str(CHART),
            "--namespace", SYSTEM_NS, "--create-namespace", "--wait", "--timeout", "300s",
            "--set-json",
            'operator.extraEnv=[{"name":"LLM_OPERATOR_DRIFT_INTERVAL_SECONDS","value":"5"}]',
        )  # fmt: skip
    cluster.kubectl(
        "rollout", "status", f"deployment/{RELEASE}", "-n", SYSTEM_NS, "--timeout=180s",
    )  # fmt: skip
    yield cluster
    if installed.returncode != 0:
        helm(cluster, "uninstall", RELEASE, "--namespace", SYSTEM_NS, "--wait")


def wait_for(what: str, probe: Callable[[], Any], *, timeout: float, interval: float = 2.0) -> Any:
    """Polls `probe` until it returns something truthy; fails with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (AssertionError, KeyError, json.JSONDecodeError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def llmd(cluster: Cluster, ns: str, name: str = "smollm2") -> dict[str, Any]:
    return dict(cluster.kubectl_json("get", "llmd", name, "-n", ns))


def deployment_name(cluster: Cluster, ns: str) -> str:
    """The current revision's Deployment: one Deployment per revision, `<name>-<revision>`."""
    return f"smollm2-{llmd(cluster, ns)['status']['currentRevision']}"


def phase_is(cluster: Cluster, ns: str, phase: str, ready: str | None = None) -> Callable[[], Any]:
    def probe() -> Any:
        st = llmd(cluster, ns).get("status") or {}
        ok = st.get("phase") == phase and (ready is None or st.get("ready") == ready)
        return st if ok else None

    return probe


def apply_example(cluster: Cluster, ns: str, **spec: Any) -> None:
    obj = yaml.safe_load(EXAMPLE.read_text())
    obj["spec"].update(spec)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def children_uids(cluster: Cluster, ns: str) -> dict[str, str]:
    sel = f"{contract.LABEL_DEPLOYMENT}=smollm2"
    items = cluster.kubectl_json("get", ",".join(CHILDREN), "-n", ns, "-l", sel)["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["uid"] for i in items}


def table_row(table: str) -> dict[str, str]:
    """The first row of `kubectl get` output as {HEADER: cell}, cut at the header's offsets
    (cells may be empty, so splitting on spaces would shift them)."""
    header, row = table.splitlines()[:2]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    ends = [*starts[1:], None]
    return {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, ends, strict=True)}


def ask(cluster: Cluster, ns: str, question: str) -> str:
    """One chat request through the ClusterIP Service, as an in-cluster client would send it."""
    svc = cluster.kubectl_json("get", "service", "smollm2", "-n", ns)
    target = f"{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    with client.RuntimeClient(client.Connection(target=target)) as rt:
        req = client.build_request(messages=[("user", question)], max_new_tokens=24)
        return rt.generate(req, deadline=120).text


def events(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    got = cluster.kubectl_json(
        "get", "events", "-n", ns, "--field-selector", "involvedObject.kind=LLMDeployment"
    )
    return list(got["items"])


@pytest.fixture(scope="module")
def ready_ns(operator: Cluster) -> Iterator[str]:
    """A namespace holding examples/smollm2.yaml, applied once and Ready (tests share the load)."""
    from localcluster import cp_testing

    ns = cp_testing.namespace_name("e2e-smollm2")
    operator.kubectl("create", "namespace", ns)
    apply_example(operator, ns)
    wait_for("smollm2 Ready 1/1", phase_is(operator, ns, "Ready", "1/1"), timeout=LOAD_TIMEOUT)
    yield ns
    operator.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_example_becomes_ready_and_answers_paris_through_the_service(
    operator: Cluster, ready_ns: str
) -> None:
    st = llmd(operator, ready_ns)["status"]
    assert st["ready"] == "1/1"
    assert st["endpoint"] == f"smollm2.{ready_ns}.svc:{contract.RUNTIME_GRPC_PORT}"
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {
        "Available": "True",
        "Progressing": "False",
        "Degraded": "False",
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
    }
    # What users and Helm/Argo CD/Flux wait on: the Ready condition, through kubectl itself.
    waited = operator.kubectl(
        "wait", "--for=condition=Ready", "--timeout=10s", "llmd/smollm2", "-n", ready_ns
    )
    assert "condition met" in waited.stdout, waited.stdout + waited.stderr
    table = operator.kubectl("get", "llmd", "-n", ready_ns, "-o", "wide").stdout
    columns = table_row(table)
    assert columns["NAME"] == "smollm2"
    assert columns["MODEL"] == "smollm2-135m-instruct"
    assert (columns["READY"], columns["PHASE"]) == ("1/1", "Ready")
    assert columns["REVISION"] == st["currentRevision"]
    assert "AGE" in columns
    assert "Paris" in ask(operator, ready_ns, "What is the capital of France?")
    reasons = {e["reason"] for e in events(operator, ready_ns)}
    assert "Ready" in reasons
    # The pod spent its first ~20 s in the fetch init container (converting the GGUF into an
    # emptyDir): the phase said Fetching (an Event per phase entered), not Loading, meanwhile.
    assert "Fetching" in reasons, reasons


def test_children_are_owned_and_the_pod_is_hardened(operator: Cluster, ready_ns: str) -> None:
    uid = llmd(operator, ready_ns)["metadata"]["uid"]
    uids = children_uids(operator, ready_ns)
    name = deployment_name(operator, ready_ns)
    assert set(uids) == {
        f"Deployment/{name}", "Service/smollm2", "Service/smollm2-headless",
        "PodDisruptionBudget/smollm2", "ServiceAccount/smollm2-runtime",
    }  # fmt: skip
    deploy = json.loads(
        operator.kubectl(
            "get", "deployment", name, "-n", ready_ns, "-o", "json", "--show-managed-fields"
        ).stdout
    )
    assert deploy["metadata"]["ownerReferences"][0]["uid"] == uid
    managers = {
        m["manager"] for m in deploy["metadata"]["managedFields"] if m["operation"] == "Apply"
    }
    assert managers == {"llm-operator"}
    pod_spec = deploy["spec"]["template"]["spec"]
    assert pod_spec["initContainers"][0]["args"][0] == "fetch"
    assert pod_spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_drift_is_repaired(operator: Cluster, ready_ns: str) -> None:
    before = children_uids(operator, ready_ns)
    name = deployment_name(operator, ready_ns)
    operator.kubectl("delete", "service", "smollm2-headless", "-n", ready_ns)
    patch = '{"spec":{"revisionHistoryLimit":9}}'
    operator.kubectl("patch", "deployment", name, "-n", ready_ns, "-p", patch)

    def repaired() -> bool:
        deploy = operator.kubectl_json("get", "deployment", name, "-n", ready_ns)
        now = children_uids(operator, ready_ns)
        return deploy["spec"]["revisionHistoryLimit"] == 3 and "Service/smollm2-headless" in now

    wait_for("the headless Service and revisionHistoryLimit restored", repaired, timeout=60)
    after = children_uids(operator, ready_ns)
    assert after[f"Deployment/{name}"] == before[f"Deployment/{name}"]
    assert after["Service/smollm2-headless"] != before["Service/smollm2-headless"]


def test_operator_restart_neither_duplicates_nor_loses_children(
    operator: Cluster, ready_ns: str
) -> None:
    before = children_uids(operator, ready_ns)
    operator.kubectl("delete", "pod", "-n", SYSTEM_NS, "-l", "app.kubernetes.io/name=llm-operator")
    operator.kubectl(
        "rollout", "status", f"deployment/{RELEASE}", "-n", SYSTEM_NS, "--timeout=180s",
    )  # fmt: skip
    # A change made while the operator restarts is picked up by the new one (resume).
    operator.kubectl(
        "annotate", "llmd", "smollm2", "-n", ready_ns, "example.com/touched=yes", "--overwrite"
    )
    time.sleep(10)  # two status periods and more than one drift period
    assert children_uids(operator, ready_ns) == before
    deployments = operator.kubectl_json("get", "deployments", "-n", ready_ns)["items"]
    assert [d["metadata"]["name"] for d in deployments] == [deployment_name(operator, ready_ns)]
    assert llmd(operator, ready_ns)["status"]["phase"] == "Ready"


def test_scale_subresource_adds_a_serving_replica(operator: Cluster, ready_ns: str) -> None:
    operator.kubectl("scale", "llmd", "smollm2", "-n", ready_ns, "--replicas", "2")
    wait_for(
        "Progressing while the second replica loads",
        lambda: (
            (llmd(operator, ready_ns).get("status") or {}).get("phase") in ("Progressing", "Ready")
        ),
        timeout=30,
    )
    st = wait_for("Ready 2/2", phase_is(operator, ready_ns, "Ready", "2/2"), timeout=LOAD_TIMEOUT)
    assert st["readyReplicas"] == 2
    path = f"/apis/llm-operator.io/v1alpha1/namespaces/{ready_ns}/llmdeployments/smollm2/scale"
    scale = json.loads(operator.kubectl("get", "--raw", path).stdout)
    assert scale["status"]["replicas"] == 2
    assert (
        scale["status"]["selector"]
        == f"{contract.LABEL_INSTANCE}=smollm2,{contract.LABEL_DEPLOYMENT}=smollm2"
    )
    name = deployment_name(operator, ready_ns)
    deploy = operator.kubectl_json("get", "deployment", name, "-n", ready_ns)
    assert deploy["spec"]["replicas"] == 2


def test_a_model_that_fails_to_load_is_degraded_with_the_reason(
    operator: Cluster, namespace: str
) -> None:
    # The CPU-only node has no CUDA: the runtime fails to load the model and exits.
    apply_example(operator, namespace, runtime={"args": ["--device", "cuda"]})
    st = wait_for("Degraded", phase_is(operator, namespace, "Degraded"), timeout=LOAD_TIMEOUT)
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"
    assert degraded["reason"] in ("CrashLoopBackOff", "ContainerRestarting", "ContainerFailed")
    assert "container runtime" in st["lastError"]
    warnings = [e for e in events(operator, namespace) if e["type"] == "Warning"]
    assert any(e["reason"] == degraded["reason"] for e in warnings), warnings


def test_a_missing_model_file_fails_the_mount_and_is_degraded(
    operator: Cluster, namespace: str
) -> None:
    # A node path is a typed hostPath: the kubelet refuses a missing file (FailedMount) instead
    # of creating an empty folder in its place, and the status names the path.
    apply_example(
        operator, namespace, model={"name": "missing", "source": "file:///nonexistent/model.gguf"}
    )
    st = wait_for("Degraded", phase_is(operator, namespace, "Degraded"), timeout=180)
    assert "/nonexistent/model.gguf is not a file" in st["lastError"], st
    (mount,) = [c for c in st["conditions"] if c["type"] == "VolumeMountFailed"]
    assert (mount["status"], mount["reason"]) == ("True", "FailedMount"), mount
    assert any(e["type"] == "Warning" for e in events(operator, namespace))
    assert not Path("/nonexistent").exists()


def test_deleting_the_llmdeployment_cascades_to_every_child(
    operator: Cluster, namespace: str
) -> None:
    apply_example(operator, namespace)
    wait_for("children created", lambda: len(children_uids(operator, namespace)) == 5, timeout=60)
    operator.kubectl("delete", "llmd", "smollm2", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_for(
        "children and pods garbage-collected",
        lambda: (
            not children_uids(operator, namespace)
            and not operator.kubectl_json("get", "pods", "-n", namespace)["items"]
        ),
        timeout=120,
    )


def operator_pods(cluster: Cluster) -> list[dict[str, Any]]:
    pods = cluster.kubectl_json(
        "get", "pods", "-n", SYSTEM_NS, "-l", "app.kubernetes.io/name=llm-operator"
    )["items"]
    return [p for p in pods if p["status"].get("podIP") and p["status"]["phase"] == "Running"]


def scrape(pod: dict[str, Any]) -> str:
    """The operator pod's /metrics page, read on its pod IP as Prometheus would."""
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    url = f"http://{pod['status']['podIP']}:{ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def status_reconciles(text: str) -> float:
    """llm_operator_reconciles_total{trigger="status",result="ok"} from a /metrics page."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        wanted = ('trigger="status"', 'result="ok"')
        if name.startswith("llm_operator_reconciles_total{") and all(w in name for w in wanted):
            return float(value)
    return 0.0


def test_operator_pod_exports_reconcile_metrics(operator: Cluster, ready_ns: str) -> None:
    (pod,) = operator_pods(operator)
    text = scrape(pod)
    assert status_reconciles(text) > 0, text[:2000]
    assert "llm_operator_reconcile_duration_seconds_bucket" in text


def test_children_the_api_server_refuses_make_the_phase_failed(
    operator: Cluster, namespace: str
) -> None:
    # Valid for the CRD (affinity is passed through as a Pod spec has it), invalid for a Pod: a
    # node selector requirement with an operator Kubernetes does not know.
    term = {"matchExpressions": [{"key": "gpu", "operator": "Bogus", "values": ["yes"]}]}
    bad = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [term]}}}  # fmt: skip
    apply_example(operator, namespace, scheduling={"affinity": bad})
    st = wait_for("Failed", phase_is(operator, namespace, "Failed"), timeout=60)
    assert "422" in st["lastError"]
    assert "bogus" in st["lastError"].lower()
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ApplyFailed")
    assert any(e["reason"] == "ApplyFailed" for e in events(operator, namespace))


def test_two_operator_replicas_peer_and_only_one_acts(operator: Cluster, ready_ns: str) -> None:
    deploy = f"deployment/{RELEASE}"
    operator.kubectl("scale", deploy, "-n", SYSTEM_NS, "--replicas", "2")
    try:
        operator.kubectl("rollout", "status", deploy, "-n", SYSTEM_NS, "--timeout=180s")

        def two_peers() -> dict[str, Any] | None:
            items = operator.kubectl_json("get", "clusterkopfpeerings")["items"]
            peers = {k: v for item in items for k, v in (item.get("status") or {}).items()}
            return peers if len(peers) == 2 else None

        peers = wait_for("two peers in the peering object", two_peers, timeout=60)
        assert len({p["priority"] for p in peers.values()}) == 2  # no tie: kopf would freeze both
        operator.kubectl("delete", "service", "smollm2", "-n", ready_ns)
        wait_for(
            "the Service recreated by the active replica",
            lambda: "Service/smollm2" in children_uids(operator, ready_ns),
            timeout=60,
        )
        # Only the higher-priority replica runs the status timers; the other one is paused.
        pods = operator_pods(operator)
        before = [status_reconciles(scrape(p)) for p in pods]
        time.sleep(12)  # more than two status periods
        after = [status_reconciles(scrape(p)) for p in pods]
        assert sum(a > b for a, b in zip(after, before, strict=True)) == 1, (before, after)
        assert llmd(operator, ready_ns)["status"]["phase"] == "Ready"
    finally:
        operator.kubectl("scale", deploy, "-n", SYSTEM_NS, "--replicas", "1")
