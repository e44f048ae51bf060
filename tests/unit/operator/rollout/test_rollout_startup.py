"""Startup failures from pod statuses as the API returns them (plain dicts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from llm_operator.rollout import startup
from llm_operator.rollout.analysis import Verdict

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _pod(
    name: str = "llm-canary-0",
    *,
    ready: bool = False,
    started: datetime = T0,
    containers: list[dict[str, Any]] | None = None,
    phase: str = "Running",
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": _iso(started)}
    if deleting:
        meta["deletionTimestamp"] = _iso(started)
    return {
        "metadata": meta,
        "status": {
            "phase": phase,
            "startTime": _iso(started),
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": containers or [],
        },
    }


def _crashed(
    reason: str, finished: datetime, *, waiting: str = "CrashLoopBackOff"
) -> dict[str, Any]:
    return {
        "name": "runtime",
        "restartCount": 1,
        "state": {"waiting": {"reason": waiting}},
        "lastState": {
            "terminated": {"reason": reason, "exitCode": 1, "finishedAt": _iso(finished)}
        },
    }


def test_crash_loop_fails_at_once_with_the_crash_time() -> None:
    crash_at = T0 + timedelta(seconds=20)
    pod = _pod(containers=[_crashed("Error", crash_at)])
    result = startup.check_startup(
        [pod], expected=1, budget_seconds=900, now=T0 + timedelta(seconds=25)
    )
    assert (result.verdict, result.reason, result.at) == (
        Verdict.FAILED,
        "CrashLoopBackOff",
        crash_at,
    )
    assert result.message == "pod llm-canary-0 container runtime CrashLoopBackOff (restarts 1)"


def test_oom_kill_is_named_even_while_the_container_loops() -> None:
    pod = _pod(containers=[_crashed("OOMKilled", T0)])
    result = startup.check_startup([pod], expected=1, budget_seconds=900, now=T0)
    assert result.reason == "OOMKilled"


def test_a_terminated_container_not_yet_restarted_fails() -> None:
    status = {
        "name": "runtime",
        "restartCount": 0,
        "state": {"terminated": {"exitCode": 3, "reason": "Error", "finishedAt": _iso(T0)}},
    }
    result = startup.check_startup(
        [_pod(containers=[status])], expected=1, budget_seconds=900, now=T0
    )
    assert (result.reason, result.at) == ("ContainerFailed", T0)


def test_a_single_restart_is_already_a_failure() -> None:
    status = {
        "name": "runtime",
        "restartCount": 1,
        "state": {"running": {}},
        "lastState": {"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": _iso(T0)}},
    }
    result = startup.check_startup(
        [_pod(ready=True, containers=[status])], expected=1, budget_seconds=900, now=T0
    )
    assert result.reason == "ContainerRestarted"


def test_image_pull_backoff_fails_now() -> None:
    status = {
        "name": "runtime",
        "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "nope"}},
    }
    now = T0 + timedelta(seconds=3)
    result = startup.check_startup(
        [_pod(containers=[status])], expected=1, budget_seconds=900, now=now
    )
    assert (result.reason, result.at) == ("ImagePullBackOff", now)


def test_not_ready_past_the_budget_fails_at_the_deadline() -> None:
    result = startup.check_startup(
        [_pod()], expected=1, budget_seconds=60, now=T0 + timedelta(seconds=61)
    )
    assert (result.reason, result.at) == ("NotReadyInTime", T0 + timedelta(seconds=60))


def test_starting_within_budget_is_inconclusive_and_ready_passes() -> None:
    starting = startup.check_startup(
        [_pod()], expected=1, budget_seconds=60, now=T0 + timedelta(seconds=30)
    )
    assert (starting.verdict, starting.message) == (Verdict.INCONCLUSIVE, "0/1 canary pods Ready")
    ready = startup.check_startup(
        [_pod(ready=True)], expected=1, budget_seconds=60, now=T0 + timedelta(seconds=90)
    )
    assert ready.verdict is Verdict.PASSED


def test_earliest_signal_across_pods_is_reported() -> None:
    late = _pod("b", containers=[_crashed("Error", T0 + timedelta(seconds=50))])
    early = _pod("a", containers=[_crashed("OOMKilled", T0 + timedelta(seconds=10))])
    result = startup.check_startup(
        [late, early], expected=2, budget_seconds=900, now=T0 + timedelta(seconds=60)
    )
    assert (result.reason, result.at) == ("OOMKilled", T0 + timedelta(seconds=10))
    assert result.message.endswith("(+1 more)")


def test_terminating_pods_are_ignored() -> None:
    pod = _pod(containers=[_crashed("Error", T0)], deleting=True)
    result = startup.check_startup([pod], expected=0, budget_seconds=900, now=T0)
    assert result.verdict is Verdict.PASSED
