"""Pure views of observed children: raw Pod / Deployment dicts -> the few facts status needs.

Parsing is separate from the status rules so each rule is tested with small hand-made views.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from llm_operator import naming

# Waiting reasons that mean "this container is failing", not "still starting".
FAILING_WAITING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "Error",
    }
)


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why a container fails, in the words of its container status."""

    container: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class PodView:
    name: str
    revision: str
    ready: bool
    terminating: bool
    scheduled: bool
    unschedulable_message: str
    failure: Failure | None
    # Scheduled, and an init container (the model fetch) has not finished yet.
    initializing: bool = False


@dataclasses.dataclass(frozen=True)
class DeploymentView:
    generation: int
    observed_generation: int
    replicas: int
    updated_replicas: int
    ready_replicas: int


def _last_exit(status: Mapping[str, Any]) -> str:
    term = (status.get("lastState") or {}).get("terminated") or (status.get("state") or {}).get(
        "terminated"
    )
    if not term:
        return ""
    text = f"exit code {term.get('exitCode')}"
    if term.get("reason"):
        text += f" ({term['reason']})"
    if term.get("message"):
        text += f": {str(term['message']).strip()[-400:]}"
    return text


def container_failure(status: Mapping[str, Any]) -> Failure | None:
    """A failure when the container waits for a failing reason, or has restarted after a crash
    and is not ready yet (a model that fails to load exits, restarts, and exits again)."""
    name = str(status.get("name", "?"))
    waiting = (status.get("state") or {}).get("waiting") or {}
    reason = str(waiting.get("reason") or "")
    last = _last_exit(status)
    if reason in FAILING_WAITING_REASONS:
        message = str(waiting.get("message") or "").strip()
        detail = "; ".join(x for x in (message, f"last {last}" if last else "") if x)
        return Failure(container=name, reason=reason, message=detail or reason)
    terminated = (status.get("state") or {}).get("terminated") or {}
    if terminated and terminated.get("exitCode", 0) != 0:
        return Failure(container=name, reason="ContainerFailed", message=last)
    if int(status.get("restartCount") or 0) > 0 and not status.get("ready") and last:
        return Failure(container=name, reason="ContainerRestarting", message=f"last {last}")
    return None


def initializing(pod: Mapping[str, Any]) -> bool:
    """Whether the pod is still in its init containers (fetching the model): the Initialized
    condition is False, or, before the kubelet reports it, an init container has not exited 0
    yet (waiting, running or not reported). A failed init container is a `container_failure`,
    not this."""
    init = _condition(pod, "Initialized").get("status")
    if init is not None:
        return str(init) == "False"
    statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
    if not statuses:  # nothing reported yet: still ahead of them, if it has any
        return bool((pod.get("spec") or {}).get("initContainers"))
    return any(not _exited_ok(s) for s in statuses)


def _exited_ok(status: Mapping[str, Any]) -> bool:
    terminated = (status.get("state") or {}).get("terminated") or {}
    return bool(terminated) and int(terminated.get("exitCode") or 0) == 0


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def pod_view(pod: Mapping[str, Any]) -> PodView:
    """The facts status needs from one Pod."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    statuses = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    failures = [f for f in map(container_failure, statuses) if f is not None]
    scheduled = _condition(pod, "PodScheduled")
    return PodView(
        name=str(meta.get("name", "")),
        revision=str((meta.get("labels") or {}).get(naming.LABEL_REVISION, "")),
        ready=_condition(pod, "Ready").get("status") == "True",
        terminating=bool(meta.get("deletionTimestamp")),
        scheduled=scheduled.get("status") == "True",
        unschedulable_message=str(scheduled.get("message") or "")
        if scheduled.get("reason") == "Unschedulable"
        else "",
        failure=failures[0] if failures else None,
        initializing=scheduled.get("status") == "True" and initializing(pod),
    )


def deployment_view(obj: Mapping[str, Any] | None) -> DeploymentView | None:
    """The facts status needs from the runtime Deployment (None when it does not exist)."""
    if obj is None:
        return None
    status = obj.get("status") or {}
    return DeploymentView(
        generation=int((obj.get("metadata") or {}).get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        replicas=int(status.get("replicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
    )
