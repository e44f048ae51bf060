"""Parsing observed Pods and Deployments into the facts the status rules need."""

from __future__ import annotations

from typing import Any

import pytest
from llm_operator import naming, observe

pytestmark = pytest.mark.unit


def _pod(
    *,
    init: list[dict[str, Any]] | None = None,
    main: list[dict[str, Any]] | None = None,
    ready: str = "False",
    scheduled: dict[str, Any] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "chat-1", "labels": {naming.LABEL_REVISION: "r1"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-29T00:00:00Z"
    return {
        "metadata": meta,
        "status": {
            "conditions": [
                {"type": "Ready", "status": ready},
                scheduled or {"type": "PodScheduled", "status": "True"},
            ],
            "initContainerStatuses": init or [],
            "containerStatuses": main or [],
        },
    }


def test_ready_running_pod() -> None:
    v = observe.pod_view(
        _pod(
            ready="True",
            main=[{"name": "runtime", "ready": True, "restartCount": 0, "state": {"running": {}}}],
        )
    )
    assert (v.name, v.revision, v.ready, v.scheduled, v.failure) == (
        "chat-1",
        "r1",
        True,
        True,
        None,
    )


def test_crash_looping_serve_container_reports_reason_and_last_exit() -> None:
    status = {
        "name": "runtime",
        "ready": False,
        "restartCount": 3,
        "state": {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": "back-off 40s restarting failed container",
            }
        },
        "lastState": {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "message": "OSError: no model at /models/x\n",
            }
        },
    }
    v = observe.pod_view(_pod(main=[status]))
    assert v.failure is not None
    assert v.failure.reason == "CrashLoopBackOff"
    assert v.failure.container == "runtime"
    assert "exit code 1 (Error): OSError: no model at /models/x" in v.failure.message


def test_failing_fetch_init_container_is_a_failure() -> None:
    status = {
        "name": "fetch",
        "ready": False,
        "restartCount": 0,
        "state": {"terminated": {"exitCode": 2, "reason": "Error"}},
    }
    v = observe.pod_view(_pod(init=[status]))
    assert v.failure is not None and v.failure.container == "fetch"
    assert v.failure.reason == "ContainerFailed"


def test_restarted_and_not_ready_counts_as_failing_even_while_running_again() -> None:
    status = {
        "name": "runtime",
        "ready": False,
        "restartCount": 1,
        "state": {"running": {}},
        "lastState": {"terminated": {"exitCode": 137, "reason": "Error"}},
    }
    v = observe.pod_view(_pod(main=[status]))
    assert v.failure is not None and v.failure.reason == "ContainerRestarting"


def test_loading_container_is_not_failing() -> None:
    status = {"name": "runtime", "ready": False, "restartCount": 0, "state": {"running": {}}}
    assert observe.pod_view(_pod(main=[status])).failure is None
    creating = {
        "name": "runtime",
        "ready": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": "PodInitializing"}},
    }
    assert observe.pod_view(_pod(main=[creating])).failure is None


def test_unschedulable_and_terminating() -> None:
    v = observe.pod_view(
        _pod(
            scheduled={
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "no nodes",
            },
            deleting=True,
        )
    )
    assert (v.scheduled, v.unschedulable_message, v.terminating) == (False, "no nodes", True)


def test_deployment_view() -> None:
    assert observe.deployment_view(None) is None
    d = observe.deployment_view(
        {
            "metadata": {"generation": 4},
            "status": {
                "observedGeneration": 3,
                "replicas": 2,
                "updatedReplicas": 1,
                "readyReplicas": 1,
            },
        }
    )
    assert d == observe.DeploymentView(
        generation=4, observed_generation=3, replicas=2, updated_replicas=1, ready_replicas=1
    )
