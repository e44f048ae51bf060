"""An idle fleet costs the API server nothing, and a spec change at `replicas: 0` starts no pod.

The chart installs the operator under its own release, watching one namespace, with settled
objects re-checked every DRIFT seconds (the default is 300 s: a short one makes every idle
object tick several times inside the window). FLEET LLMDeployments at `replicas: 0` (no pods,
no model) settle; then the API server's audit log counts what the operator's ServiceAccount
sent during WINDOW seconds, while the operator's own counters show that it did re-check them
(and, nothing having changed, skipped their ticks).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from bench import canary_kit as kit
from bench import scale_bench
from llm_runtime.api import contract
from localcluster import audit
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.e2e

RELEASE = "fleet-e2e"
FLEET = 30
DRIFT = 3.0  # seconds between the idle re-checks of a settled object
WINDOW = 20.0
# kopf's peering heartbeat: one patch of the release's peering object a minute.
HEARTBEAT = "patch kopfpeerings"
EXTRA = kit.drift_values(DRIFT)


def idle(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{contract.GROUP}/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": name},
        "spec": kit.spec_with(replicas=0),
    }


def names() -> list[str]:
    return [f"idle-{i:03d}" for i in range(FLEET)]


def settled(cluster: Cluster, ns: str) -> list[dict[str, Any]] | None:
    """All FLEET objects once each is settled as the scale benchmark counts it (its status
    written for its generation, Ready, its rollout Stable)."""
    items = cluster.kubectl_json("get", "llmd", "-n", ns)["items"]
    done = [o for o in items if scale_bench.settled(o)]
    return done if len(done) == FLEET else None


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    with kit.own_namespace(cluster, "fleet") as name:
        yield name


@pytest.fixture(scope="module")
def operator_ns(cluster: Cluster, ns: str) -> Iterator[str]:
    with kit.own_operator(cluster, ns, release=RELEASE, prefix="fleet-op", extra=EXTRA) as op:
        yield op


@pytest.fixture(scope="module")
def fleet(cluster: Cluster, ns: str, operator_ns: str) -> list[dict[str, Any]]:
    doc = {"apiVersion": "v1", "kind": "List", "items": [idle(n) for n in names()]}
    cluster.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(doc))
    found: list[dict[str, Any]] = kit.wait_for(
        f"all {FLEET} LLMDeployments settled", lambda: settled(cluster, ns), timeout=180, interval=2
    )
    return found


def looks(cluster: Cluster, op_ns: str) -> tuple[float, float]:
    """(ticks run, idle re-checks skipped because nothing had changed) so far."""
    text = kit.operator_metrics(cluster, namespace=op_ns, release=RELEASE)
    ran = kit.sample(text, "llm_operator_reconciles_total", trigger="status", result="ok")
    return ran, kit.sample(text, "llm_operator_ticks_skipped_total")


def test_an_idle_fleet_sends_the_api_server_nothing_while_it_is_re_checked(
    cluster: Cluster, operator_ns: str, fleet: list[dict[str, Any]]
) -> None:
    time.sleep(2 * DRIFT)  # the settling writes are behind us
    before, t0 = looks(cluster, operator_ns), datetime.now(UTC)
    time.sleep(WINDOW)
    after, t1 = looks(cluster, operator_ns), datetime.now(UTC)
    time.sleep(2)  # the audit log's last lines are flushed
    lines = audit.read_lines(cluster.layout.audit_log)
    seen = audit.namespace_report(lines, namespace=operator_ns, t0=t0, t1=t1)
    # It did look: every object about WINDOW / DRIFT times (half of that is plenty), and,
    # nothing having changed, those looks ran no tick.
    ran, skipped = after[0] - before[0], after[1] - before[1]
    assert ran + skipped >= FLEET * WINDOW / DRIFT / 2, (before, after)
    assert skipped >= FLEET * WINDOW / DRIFT / 2, (before, after)
    sent = {k: n for k, n in seen["by_kind"].items() if not k.startswith(f"{audit.WATCH} ")}
    heartbeats = sent.pop(HEARTBEAT, 0)
    assert sent == {}, f"an idle fleet made requests in {WINDOW:.0f} s: {seen}"
    assert heartbeats <= 2, seen


def test_a_spec_change_at_replicas_0_adopts_the_revision_and_starts_no_pod(
    cluster: Cluster, ns: str, fleet: list[dict[str, Any]]
) -> None:
    name = names()[0]
    old = cluster.kubectl_json("get", "llmd", name, "-n", ns)["status"]["currentRevision"]
    env = [{"name": "FLEET_E2E", "value": "2"}]
    patch = json.dumps({"spec": {"runtime": {"env": env}}})
    cluster.kubectl("patch", "llmd", name, "-n", ns, "--type=merge", "-p", patch)
    sel = f"{contract.LABEL_INSTANCE}={name}"
    pods_seen: list[str] = []

    def adopted() -> dict[str, Any] | None:
        pods = cluster.kubectl_json("get", "pods", "-n", ns)["items"]
        pods_seen.extend(p["metadata"]["name"] for p in pods)
        st = cluster.kubectl_json("get", "llmd", name, "-n", ns).get("status") or {}
        r = st.get("rollout") or {}
        new = st.get("currentRevision")
        deployments = cluster.kubectl_json("get", "deployments", "-n", ns, "-l", sel)["items"]
        left = {d["metadata"]["name"] for d in deployments}
        done = new != old and r.get("stableRevision") == new and r.get("phase") == "Stable"
        return st if done and left == {f"{name}-{new}"} else None

    st = kit.wait_for("the new revision adopted, the old Deployment gone", adopted, timeout=60)
    assert pods_seen == [], f"pods started at replicas 0: {pods_seen}"
    rollout = st["rollout"]
    assert (rollout.get("canaryRevision"), rollout["lastVerdict"]) == (None, "Skipped"), rollout
    assert st["ready"] == "0/0", st
    events = cluster.kubectl_json(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    skipped = [e for e in events if e["reason"] == "RolloutSkipped"]
    assert skipped and "no pods to judge" in skipped[0]["message"], [e["reason"] for e in events]
