"""The front door end to end: real SmolLM2 pods, the chart-installed operator, real clients.

`chat` runs one stable pod behind the front door (trafficRouting: FrontDoor). A pod-defining
change starts a canary at weight 10% with ONE canary pod beside the one stable pod, and the only
traffic is a client with one long-lived gRPC channel through the LLMDeployment's ClusterIP
Service. The split is measured three ways: by the canary and stable pods' own request counters,
by the front door's counters, and by what the status reports (observedShare).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from bench import canary_kit as kit
from bench import loadgen, podwatch
from llm_runtime.api import contract
from localcluster import cp_testing
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.e2e

RELEASE = "frontdoor-e2e"
LOAD_TIMEOUT = 600.0
REQUESTS = 320  # the acceptance asks for at least 300
ROLLOUT: dict[str, Any] = {
    "strategy": "Canary",
    "trafficRouting": "FrontDoor",
    "frontDoorReplicas": 1,
    "steps": [{"weight": 10, "pause": {}}],  # held at 10% until promoted by hand
    "analysis": {"interval": f"{kit.INTERVAL}s"},
}


def _pod_requests(pod: dict[str, Any]) -> float:
    """The runtime pod's own count of finished Runtime calls (every code)."""
    url = f"http://{pod['status']['podIP']}:{contract.RUNTIME_METRICS_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return kit.sample(text, contract.METRIC_REQUESTS)


def _counts(chat: kit.Target, revisions: tuple[str, ...]) -> dict[str, float]:
    return {rev: sum(_pod_requests(p) for p in chat.live_pods(rev)) for rev in revisions}


def _front_door_pods(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    sel = f"{contract.LABEL_FRONTDOOR}=chat"
    pods = cluster.kubectl_json("get", "pods", "-n", ns, "-l", sel)["items"]
    return [p for p in pods if podwatch.is_ready(p) and not p["metadata"].get("deletionTimestamp")]


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    name = cp_testing.namespace_name("frontdoor")
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator_ns(cluster: Cluster, ns: str) -> Iterator[str]:
    op_ns = cp_testing.namespace_name("frontdoor-op")
    kit.wait_for_no_foreign_operator(cluster, ns, RELEASE)
    done = kit.install_operator(cluster, namespace=op_ns, release=RELEASE, watch=ns)
    assert done.returncode == 0, done.stdout + done.stderr
    yield op_ns
    kit.uninstall_operator(cluster, namespace=op_ns, release=RELEASE)
    cluster.kubectl("delete", "namespace", op_ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def chat(cluster: Cluster, ns: str, operator_ns: str) -> Iterator[kit.Target]:
    """`chat` Stable at 1/1 with its front door Ready."""
    target = kit.Target(cluster, ns)
    cluster.apply(kit.cache_claim(), namespace=ns)
    target.apply(kit.spec_with(rollout=ROLLOUT))

    def serving() -> bool:
        st = target.status()
        stable = st.get("ready") == "1/1" and (st.get("rollout") or {}).get("phase") == "Stable"
        return stable and len(_front_door_pods(cluster, ns)) == 1

    kit.wait_for("chat Stable 1/1 behind its front door", serving, timeout=LOAD_TIMEOUT, interval=3)
    yield target
    cluster.kubectl("delete", "llmd", target.name, "-n", ns, "--timeout=120s", check=False)


def test_the_service_reaches_the_model_through_the_front_door(
    chat: kit.Target, cluster: Cluster, ns: str
) -> None:
    svc = cluster.kubectl_json("get", "service", "chat", "-n", ns)
    assert svc["spec"]["selector"] == {
        contract.LABEL_INSTANCE: "chat",
        contract.LABEL_FRONTDOOR: "chat",
    }
    config = loadgen.LoadConfig(target=chat.service_target(), concurrency=1)
    with loadgen.BackgroundLoad(config) as load:
        time.sleep(3)
    assert load.report is not None
    assert load.report.failed == 0 and load.report.ok > 0, load.report.summary()


def test_one_canary_pod_at_weight_10_gets_10_percent_of_a_long_lived_channels_requests(
    chat: kit.Target, cluster: Cluster, ns: str
) -> None:
    stable = chat.rollout()["stableRevision"]
    chat.apply(kit.spec_with(env="frontdoor-1", rollout=ROLLOUT))
    canary = chat.new_revision()
    kit.wait_for(
        "the canary's one pod Ready and its step held at 10%",
        lambda: (
            (r := chat.rollout()).get("canaryRevision") == canary and r.get("phase") == "Paused"
        ),
        timeout=LOAD_TIMEOUT,
        interval=2,
    )
    assert chat.deployments() == {f"chat-{stable}": 1, f"chat-{canary}": 1}
    time.sleep(4)  # the routes ConfigMap reaches the front door pod (polled every second)
    before = _counts(chat, (stable, canary))
    # One client, one channel: the connection pattern that defeats per-connection balancing.
    config = loadgen.LoadConfig(target=chat.service_target(), concurrency=1, max_new_tokens=4)
    shares: list[tuple[int, int]] = []
    with loadgen.BackgroundLoad(config) as load:
        deadline = time.monotonic() + 600
        while sum(load.snapshot()) < REQUESTS and time.monotonic() < deadline:
            time.sleep(2)
            r = chat.rollout()
            if r.get("observedShare") is not None:
                shares.append((int(r["observedShare"]), int(r.get("observedRequests") or 0)))
    report = load.report
    assert report is not None
    assert report.failed == 0, report.summary()
    assert report.ok >= 300, report.summary()
    after = _counts(chat, (stable, canary))
    served = {rev: after[rev] - before[rev] for rev in (stable, canary)}
    share = 100 * served[canary] / (served[canary] + served[stable])
    assert 7 <= share <= 13, (served, report.summary())
    assert served[canary] + served[stable] >= report.ok  # the pods saw every request
    # The status reported what its windows measured, next to the weight.
    busy = [s for s, n in shares if n >= 20]
    assert busy, shares
    assert all(2 <= s <= 20 for s in busy), shares
    assert "canary served" in chat.rollout()["message"]


def test_promoting_moves_every_request_to_the_new_revision_without_a_failed_call(
    chat: kit.Target,
) -> None:
    canary = chat.rollout()["canaryRevision"]
    config = loadgen.LoadConfig(target=chat.service_target(), concurrency=1, pause_seconds=0.1)
    with loadgen.BackgroundLoad(config) as load:
        chat.cluster.kubectl(
            "annotate", "llmd", "chat", "-n", chat.namespace, "--overwrite",
            f"rollout.llm-operator.io/promote-full={time.time()}",
        )  # fmt: skip
        kit.wait_for(
            "the canary promoted and the old revision drained",
            lambda: (
                (r := chat.rollout()).get("phase") == "Stable" and r.get("stableRevision") == canary
            ),
            timeout=LOAD_TIMEOUT,
            interval=2,
        )
        time.sleep(3)
    report = load.report
    assert report is not None
    assert report.failed == 0 and report.ok > 0, report.summary()
    assert {podwatch.revision(p) for p in chat.live_pods()} == {canary}
