"""Pure decisions about container and pod status: what a kubelet would report, and when to restart.

The pod worker keeps one `Container` record per container and calls these to build the status
it patches onto the pod; phase and conditions follow the kubelet's own rules (getPhase).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


def now_rfc3339(at: float | None = None) -> str:
    """A Kubernetes timestamp (second precision, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if at is None else at))


@dataclass
class Container:
    """What the node knows about one container; mutated only by its pod worker."""

    name: str
    image: str
    waiting: str | None = "ContainerCreating"
    message: str = ""
    started_at: str | None = None
    terminated: Obj | None = None
    last_terminated: Obj | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    pid: int | None = None
    extra: Obj = field(default_factory=dict)

    def run(self, *, pid: int, at: str) -> None:
        """The process is up."""
        if self.terminated is not None:
            self.last_terminated = self.terminated
        self.waiting, self.message, self.terminated = None, "", None
        self.started_at, self.pid = at, pid

    def finish(self, *, exit_code: int, at: str, reason: str | None = None) -> None:
        """The process is gone; `reason` defaults from the exit code."""
        self.terminated = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": self.started_at or at,
            "finishedAt": at,
        }
        self.pid, self.ready, self.started = None, False, False

    def wait(self, reason: str, message: str = "") -> None:
        """Waiting (ContainerCreating, CrashLoopBackOff, ErrImagePull, ...); keeps the last exit."""
        if self.terminated is not None:
            self.last_terminated = self.terminated
            self.terminated = None
        self.waiting, self.message = reason, message


def container_status(c: Container) -> Obj:
    """The containerStatuses entry of one container."""
    state: Obj
    if c.terminated is not None:
        state = {"terminated": c.terminated}
    elif c.waiting is not None:
        state = {"waiting": {"reason": c.waiting, **({"message": c.message} if c.message else {})}}
    else:
        state = {"running": {"startedAt": c.started_at}}
    last = {"terminated": c.last_terminated} if c.last_terminated else {}
    return {
        "name": c.name,
        "image": c.image,
        "imageID": "",
        "containerID": f"process://{c.pid}" if c.pid else "",
        "state": state,
        "lastState": last,
        "ready": c.ready,
        "started": c.started,
        "restartCount": c.restart_count,
    }


def backoff_delay(restarts: int, *, base: float = 10.0, cap: float = 300.0) -> float:
    """CrashLoopBackOff: the first restart is immediate, then 10s doubling up to the cap."""
    if restarts <= 0:
        return 0.0
    return float(min(base * 2 ** (restarts - 1), cap))


def should_restart(policy: str, exit_code: int) -> bool:
    """restartPolicy applied to a container that exited."""
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def _inits_done(inits: Sequence[Container]) -> bool:
    return all(c.terminated is not None and c.terminated["exitCode"] == 0 for c in inits)


def pod_phase(inits: Sequence[Container], mains: Sequence[Container], policy: str) -> str:
    """Pending, Running, Succeeded or Failed, as the kubelet decides it."""
    init_failed = any(
        c.terminated is not None and c.terminated["exitCode"] != 0 for c in inits
    ) or any(c.last_terminated is not None and c.waiting for c in inits)
    if not _inits_done(inits):
        return "Failed" if init_failed and policy == "Never" else "Pending"
    running = sum(1 for c in mains if c.terminated is None and c.waiting is None)
    restarting = sum(1 for c in mains if c.waiting is not None and c.last_terminated is not None)
    done = [c for c in mains if c.terminated is not None]
    if running or restarting:
        return "Running"
    if len(done) < len(mains):
        return "Pending"
    failed = any(c.terminated is not None and c.terminated["exitCode"] != 0 for c in done)
    if policy == "Always" or (policy == "OnFailure" and failed):
        return "Running"
    return "Failed" if failed else "Succeeded"


def pod_conditions(
    inits: Sequence[Container], mains: Sequence[Container], *, phase: str
) -> dict[str, bool]:
    """Condition type -> status for the kubelet-owned conditions."""
    initialized = _inits_done(inits) or phase in ("Running", "Succeeded")
    ready = phase == "Running" and bool(mains) and all(c.ready for c in mains)
    return {
        "PodScheduled": True,
        "Initialized": initialized,
        "ContainersReady": ready,
        "Ready": ready,
    }


def merge_conditions(
    previous: Sequence[Mapping[str, Any]], wanted: Mapping[str, bool], *, at: str
) -> list[Obj]:
    """Conditions with lastTransitionTime kept unless the status flipped; others left as they were."""
    old = {c["type"]: c for c in previous}
    merged = []
    for kind, ok in wanted.items():
        status = "True" if ok else "False"
        before = old.get(kind)
        since = before["lastTransitionTime"] if before and before.get("status") == status else at
        merged.append({"type": kind, "status": status, "lastTransitionTime": since})
    merged += [dict(c) for k, c in old.items() if k not in wanted]
    return merged


def pod_status(
    *,
    inits: Sequence[Container],
    mains: Sequence[Container],
    policy: str,
    previous_conditions: Sequence[Mapping[str, Any]],
    pod_ip: str | None,
    host_ip: str,
    start_time: str,
    at: str,
) -> Obj:
    """The whole status document the worker patches onto the pod."""
    phase = pod_phase(inits, mains, policy)
    conditions = merge_conditions(
        previous_conditions, pod_conditions(inits, mains, phase=phase), at=at
    )
    status: Obj = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "initContainerStatuses": [container_status(c) for c in inits],
        "containerStatuses": [container_status(c) for c in mains],
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status
