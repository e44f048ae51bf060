"""The status rules: what users see in `kubectl get llmd` and in conditions and Events."""

from __future__ import annotations

import dataclasses

import pytest
from llm_operator import status
from llm_operator.observe import DeploymentView, Failure, PodView

pytestmark = pytest.mark.unit

REV = "abc123"
NOW = "2026-11-29T01:00:00Z"


def _pod(
    name: str = "p1",
    *,
    ready: bool = False,
    revision: str = REV,
    scheduled: bool = True,
    failure: Failure | None = None,
    terminating: bool = False,
    unschedulable: str = "",
) -> PodView:
    return PodView(
        name=name,
        revision=revision,
        ready=ready,
        terminating=terminating,
        scheduled=scheduled,
        unschedulable_message=unschedulable,
        failure=failure,
    )


def _deploy(gen: int = 2, observed: int = 2) -> DeploymentView:
    return DeploymentView(
        generation=gen,
        observed_generation=observed,
        replicas=1,
        updated_replicas=1,
        ready_replicas=1,
    )


def _obs(
    *pods: PodView,
    desired: int = 1,
    deployment: DeploymentView | None = None,
    apply_error: str = "",
) -> status.ServingState:
    return status.ServingState(
        generation=7,
        desired=desired,
        revision=REV,
        deployment=deployment if deployment is not None else _deploy(),
        pods=pods,
        apply_error=apply_error,
    )


CRASH = Failure(
    container="runtime", reason="CrashLoopBackOff", message="last exit code 1: no such file"
)


@pytest.mark.parametrize(
    ("observed", "phase", "reason"),
    [
        (_obs(_pod(ready=True)), "Ready", "ReplicasReady"),
        (_obs(_pod(ready=False)), "Loading", "LoadingModel"),
        (_obs(_pod(scheduled=False)), "Pending", "WaitingForPods"),
        (_obs(), "Pending", "WaitingForPods"),
        (
            _obs(_pod(scheduled=False, unschedulable="0/1 nodes: Insufficient nvidia.com/gpu")),
            "Pending",
            "Unschedulable",
        ),
        (_obs(_pod(failure=CRASH)), "Degraded", "CrashLoopBackOff"),
        (
            _obs(_pod("a", ready=True), _pod("b", failure=CRASH), desired=2),
            "Degraded",
            "CrashLoopBackOff",
        ),
        (_obs(_pod("a", ready=True), _pod("b"), desired=2), "Progressing", "RollingOut"),
        (
            _obs(_pod("a", ready=True, revision="old"), _pod("b"), desired=1),
            "Progressing",
            "RollingOut",
        ),
        (_obs(_pod(ready=True, revision="old")), "Progressing", "RollingOut"),
        (_obs(desired=0), "Ready", "ReplicasReady"),
        (_obs(_pod(ready=True), desired=0), "Progressing", "RollingOut"),
        (
            _obs(_pod(ready=True), _pod("old", terminating=True, failure=CRASH)),
            "Ready",
            "ReplicasReady",
        ),
        (
            _obs(_pod(ready=True), deployment=_deploy(gen=3, observed=2)),
            "Progressing",
            "RollingOut",
        ),
        (_obs(_pod(ready=True), apply_error="422 Invalid: bad"), "Failed", "ApplyFailed"),
    ],
)
def test_phase_rules(observed: status.ServingState, phase: str, reason: str) -> None:
    v = status.summarize(observed)
    assert (v.phase, v.reason) == (phase, reason)


def test_missing_deployment_is_pending() -> None:
    o = dataclasses.replace(_obs(), deployment=None)
    assert status.summarize(o).phase == "Pending"


def test_degraded_message_names_pod_container_and_cause() -> None:
    v = status.summarize(_obs(_pod("chat-1", failure=CRASH)))
    assert v.message == "pod chat-1 container runtime: last exit code 1: no such file"


def _body(
    o: status.ServingState, previous: dict[str, object] | None = None, now: str = NOW
) -> dict[str, object]:
    return status.status_body(
        o, selector="sel", endpoint="chat.ns.svc:50051", previous=previous or {}, now=now
    )


def test_status_body_fields_for_a_ready_deployment() -> None:
    body = _body(_obs(_pod("a", ready=True), _pod("b", ready=True), desired=2))
    assert body["phase"] == "Ready"
    assert body["ready"] == "2/2"
    assert body["readyReplicas"] == 2
    assert body["replicas"] == 2
    assert body["currentRevision"] == REV
    assert body["observedGeneration"] == 7
    assert body["endpoint"] == "chat.ns.svc:50051"
    assert body["selector"] == "sel"
    assert body["lastError"] == ""
    conds = {c["type"]: c for c in body["conditions"]}  # type: ignore[attr-defined]
    assert conds["Available"]["status"] == "True"
    assert conds["Progressing"]["status"] == "False"
    assert conds["Degraded"]["status"] == "False"
    assert all(
        c["observedGeneration"] == 7 and c["lastTransitionTime"] == NOW for c in conds.values()
    )


def test_degraded_status_sets_condition_reason_and_last_error() -> None:
    body = _body(_obs(_pod(failure=CRASH)))
    conds = {c["type"]: c for c in body["conditions"]}  # type: ignore[attr-defined]
    assert conds["Degraded"]["status"] == "True"
    assert conds["Degraded"]["reason"] == "CrashLoopBackOff"
    assert conds["Available"]["status"] == "False"
    assert conds["Progressing"]["status"] == "False"
    assert conds["Progressing"]["reason"] == "CrashLoopBackOff"  # not "RolloutComplete"
    assert "no such file" in str(body["lastError"])


def test_transition_time_kept_while_status_unchanged_and_moved_on_change() -> None:
    first = _body(_obs(_pod(ready=True)), now="t1")
    again = _body(_obs(_pod(ready=True)), previous=first, now="t2")
    assert {c["lastTransitionTime"] for c in again["conditions"]} == {"t1"}  # type: ignore[attr-defined]
    broken = _body(_obs(_pod(failure=CRASH)), previous=again, now="t3")
    times = {c["type"]: c["lastTransitionTime"] for c in broken["conditions"]}  # type: ignore[attr-defined]
    assert times == {
        "Available": "t3",
        "Progressing": "t1",
        "Degraded": "t3",
        "Ready": "t3",
        "Reconciling": "t1",
        "Stalled": "t3",
    }


def _conds(body: dict[str, object]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in body["conditions"]}  # type: ignore[attr-defined]


def test_ready_is_true_only_when_the_specs_revision_serves_at_full_size() -> None:
    full = _obs(_pod("a", ready=True), _pod("b", ready=True), desired=2)
    assert _conds(_body(full))["Ready"] == "True"
    short = _obs(_pod("a", ready=True), _pod("b", ready=False), desired=2)
    assert _conds(_body(short))["Ready"] == "False"
    # Full size, but the serving revision is not the spec's (a canary, or after a rollback).
    other = status.status_body(
        full, selector="s", endpoint="e", previous={}, now=NOW, spec_revision="newer"
    )
    assert _conds(other)["Ready"] == "False"


def test_kstatus_reconciling_while_moving_and_stalled_on_failure() -> None:
    loading = _conds(_body(_obs(_pod(ready=False))))
    assert (loading["Reconciling"], loading["Stalled"], loading["Ready"]) == (
        "True",
        "False",
        "False",
    )
    crashed = _conds(_body(_obs(_pod(failure=CRASH))))
    assert (crashed["Reconciling"], crashed["Stalled"]) == ("False", "True")
    ready = _conds(_body(_obs(_pod(ready=True))))
    assert (ready["Reconciling"], ready["Stalled"], ready["Ready"]) == ("False", "False", "True")


def test_changed_ignores_nothing_it_would_write() -> None:
    first = _body(_obs(_pod(ready=True)), now="t1")
    assert not status.changed(first, _body(_obs(_pod(ready=True)), previous=first, now="t2"))
    assert status.changed(first, _body(_obs(_pod(ready=False)), previous=first, now="t2"))


def test_transition_events() -> None:
    assert status.transition("Ready", status.Summary("Ready", "ReplicasReady", "")) is None
    ready = status.transition("Loading", status.Summary("Ready", "ReplicasReady", "1/1"))
    assert ready is not None and (ready.type, ready.reason) == ("Normal", "Ready")
    bad = status.transition("Loading", status.Summary("Degraded", "CrashLoopBackOff", "pod x"))
    assert bad is not None and (bad.type, bad.reason) == ("Warning", "CrashLoopBackOff")
    assert bad.message == "phase Loading -> Degraded: pod x"
    first = status.transition(None, status.Summary("Pending", "Creating", "m"))
    assert first is not None and first.message.startswith("phase None -> Pending")
    # Still Degraded, for a new reason: one more Warning that names it; the same reason: none.
    worse = status.Summary("Degraded", "CrashLoopBackOff", "pod x")
    again = status.transition("Degraded", worse, previous_reason="ContainerRestarting")
    assert again is not None and (again.type, again.reason) == ("Warning", "CrashLoopBackOff")
    assert status.transition("Degraded", worse, previous_reason="CrashLoopBackOff") is None
    degraded = [{"type": "Degraded", "status": "True", "reason": "ContainerRestarting"}]
    assert status.failing_reason({"conditions": degraded}) == "ContainerRestarting"
    assert status.failing_reason({"conditions": [{**degraded[0], "status": "False"}]}) == ""


def test_a_status_read_back_without_its_none_fields_is_unchanged() -> None:
    """None deletes a key in a merge patch; comparing must not see that as a change (or the
    status would be patched on every tick)."""
    written = {"rollout": {"phase": "Stable", "canaryRevision": None}, "rollback": None}
    stored = {"rollout": {"phase": "Stable"}}
    assert not status.changed(stored, written)
    assert status.changed(stored, {"rollout": {"phase": "Canary", "canaryRevision": "r2"}})


def test_patch_clears_nested_keys_the_new_status_no_longer_has() -> None:
    before = {"rollback": {"from": "r2", "signalAt": "2026-11-29T02:21:08Z"}, "phase": "Ready"}
    patch = status.patch_of({"rollback": {"from": "r3"}, "phase": "Degraded"}, previous=before)
    assert patch == {"rollback": {"from": "r3", "signalAt": None}, "phase": "Degraded"}
