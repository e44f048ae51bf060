"""Fetching, Loading or Degraded: what a runtime pod's init container (`llm-runtime fetch`) says
about the phase, from the Pod fields the operator caches to the status users see."""

from __future__ import annotations

from typing import Any

import pytest
from llm_operator import naming, observe, pod, status

pytestmark = pytest.mark.unit

REV = "r1"
FETCH = pod.FETCH_CONTAINER
PENDING_MAIN = {
    "name": "runtime",
    "ready": False,
    "state": {"waiting": {"reason": "PodInitializing"}},
}
LOADING_MAIN = {"name": "runtime", "ready": False, "restartCount": 0, "state": {"running": {}}}


def _pod(
    name: str = "chat-1",
    *,
    init: list[dict[str, Any]] | None = None,
    main: list[dict[str, Any]] | None = None,
    initialized: str | None = None,
    scheduled: str = "True",
) -> dict[str, Any]:
    conditions = [
        {"type": "PodScheduled", "status": scheduled},
        {"type": "Ready", "status": "False"},
    ]
    if initialized is not None:
        conditions.append({"type": "Initialized", "status": initialized})
    return {
        "metadata": {"name": name, "labels": {naming.LABEL_REVISION: REV}},
        "spec": {"initContainers": [{"name": FETCH}], "containers": [{"name": "runtime"}]},
        "status": {
            "phase": "Pending" if initialized != "True" else "Running",
            "conditions": conditions,
            "initContainerStatuses": init or [],
            "containerStatuses": main or [],
        },
    }


def _init(
    state: dict[str, Any], *, restarts: int = 0, last: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": FETCH, "ready": False, "restartCount": restarts, "state": state}
    if last:
        out["lastState"] = {"terminated": last}
    return out


RUNNING = _init({"running": {"startedAt": "2026-11-29T00:00:00Z"}})
DONE = _init({"terminated": {"exitCode": 0, "reason": "Completed"}})


def _phase(*pods: dict[str, Any]) -> status.Summary:
    deployment = observe.DeploymentView(
        generation=1, observed_generation=1, replicas=1, updated_replicas=1, ready_replicas=0
    )
    state = status.ServingState(
        generation=1,
        desired=len(pods),
        revision=REV,
        deployment=deployment,
        pods=tuple(observe.pod_view(p) for p in pods),
    )
    return status.summarize(state)


@pytest.mark.parametrize(
    ("raw", "phase", "reason"),
    [
        (
            _pod(init=[RUNNING], main=[PENDING_MAIN], initialized="False"),
            "Fetching",
            "FetchingModel",
        ),
        (  # the fetch image is still being pulled: waiting, not failing
            _pod(init=[_init({"waiting": {"reason": "PodInitializing"}})], main=[PENDING_MAIN]),
            "Fetching",
            "FetchingModel",
        ),
        (_pod(), "Fetching", "FetchingModel"),  # scheduled, the kubelet has reported nothing yet
        (_pod(init=[DONE], main=[LOADING_MAIN], initialized="True"), "Loading", "LoadingModel"),
        (_pod(init=[DONE], main=[LOADING_MAIN]), "Loading", "LoadingModel"),
        (_pod(scheduled="False"), "Pending", "WaitingForPods"),
        (  # the fetch exited non-zero (a source that cannot be obtained)
            _pod(
                init=[_init({"terminated": {"exitCode": 1, "reason": "Error"}})],
                initialized="False",
            ),
            "Degraded",
            "ContainerFailed",
        ),
        (
            _pod(
                init=[
                    _init(
                        {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
                        restarts=2,
                        last={"exitCode": 1, "reason": "Error"},
                    )
                ],
                initialized="False",
            ),
            "Degraded",
            "CrashLoopBackOff",
        ),
        (  # running again after a failed fetch: still failing until it completes
            _pod(
                init=[_init({"running": {}}, restarts=1, last={"exitCode": 1, "reason": "Error"})],
                initialized="False",
            ),
            "Degraded",
            "ContainerRestarting",
        ),
        (
            _pod(init=[_init({"waiting": {"reason": "ImagePullBackOff"}})], initialized="False"),
            "Degraded",
            "ImagePullBackOff",
        ),
    ],
)
def test_init_container_states_map_to_fetching_loading_or_degraded(
    raw: dict[str, Any], phase: str, reason: str
) -> None:
    v = _phase(raw)
    assert (v.phase, v.reason) == (phase, reason)


def test_the_phase_is_loading_once_any_pod_runs_the_server() -> None:
    fetching = _pod("a", init=[RUNNING], initialized="False")
    loading = _pod("b", init=[DONE], main=[LOADING_MAIN], initialized="True")
    assert _phase(fetching, fetching).phase == "Fetching"
    assert _phase(fetching, loading).phase == "Loading"


def test_a_pod_not_scheduled_is_not_initializing() -> None:
    assert observe.pod_view(_pod(scheduled="False")).initializing is False
    assert observe.pod_view(_pod(init=[RUNNING], initialized="False")).initializing is True
    assert observe.pod_view(_pod(init=[DONE], initialized="True")).initializing is False


def test_fetching_is_reconciling_not_stalled_and_posts_a_normal_event() -> None:
    v = _phase(_pod(init=[RUNNING], initialized="False"))
    conds = {c["type"]: c for c in status.conditions_for(v, ready=0, desired=1)}
    assert conds["Reconciling"]["status"] == "True"
    assert conds["Reconciling"]["reason"] == "FetchingModel"
    assert conds["Stalled"]["status"] == "False"
    assert conds["Progressing"]["status"] == "True"
    assert conds["Degraded"]["status"] == "False"
    assert conds["Ready"]["status"] == "False"
    event = status.transition("Pending", v)
    assert event is not None and event.type == "Normal" and event.reason == "Fetching"
    loaded = status.transition("Fetching", status.Summary("Loading", "LoadingModel", "m"))
    assert loaded is not None and loaded.message == "phase Fetching -> Loading: m"
