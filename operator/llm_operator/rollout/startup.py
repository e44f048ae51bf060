"""Startup failures of canary pods, read from pod statuses given as plain dicts.

These abort a canary at once, without waiting for the next analysis interval: a crash loop,
any restart, an OOM kill, an image that cannot be pulled, or a pod not Ready within the startup
budget. The result names the earliest failing signal and when it happened, so time-to-rollback
can be measured from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from llm_operator.rollout import clock
from llm_operator.rollout.analysis import CheckResult, Verdict

# Waiting reasons that will not fix themselves while the canary waits.
_FATAL_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)

Pod = Mapping[str, Any]


@dataclass(frozen=True)
class Signal:
    """One reason a pod is failing and the moment it was first visible."""

    reason: str
    message: str
    at: datetime


def _terminated(status: Mapping[str, Any], which: str) -> Mapping[str, Any]:
    return ((status.get(which) or {}).get("terminated")) or {}


def container_signal(pod_name: str, status: Mapping[str, Any], now: datetime) -> Signal | None:
    """The most specific failure of one container status: OOM > exit code > loop > restart."""
    name = status.get("name", "?")
    where = f"pod {pod_name} container {name}"
    restarts = int(status.get("restartCount") or 0)
    waiting = (status.get("state") or {}).get("waiting") or {}
    current, last = _terminated(status, "state"), _terminated(status, "lastState")
    ended = current or last
    at = clock.parse_time(ended.get("finishedAt")) or now
    if ended.get("reason") == "OOMKilled":
        return Signal("OOMKilled", f"{where} OOMKilled (restarts {restarts})", at)
    if current and int(current.get("exitCode") or 0) != 0:
        code = current.get("exitCode")
        return Signal("ContainerFailed", f"{where} exited {code} (restarts {restarts})", at)
    if waiting.get("reason") == "CrashLoopBackOff":
        return Signal("CrashLoopBackOff", f"{where} CrashLoopBackOff (restarts {restarts})", at)
    if waiting.get("reason") in _FATAL_WAITING:
        return Signal(
            str(waiting["reason"]),
            f"{where} {waiting['reason']}: {waiting.get('message', '')}".rstrip(": "),
            now,
        )
    if restarts > 0:
        exit_code = last.get("exitCode")
        return Signal("ContainerRestarted", f"{where} restarted {restarts}x (exit {exit_code})", at)
    return None


def _is_ready(pod: Pod) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _started(pod: Pod) -> datetime | None:
    status, meta = pod.get("status") or {}, pod.get("metadata") or {}
    return clock.parse_time(status.get("startTime")) or clock.parse_time(
        meta.get("creationTimestamp")
    )


def pod_signals(pod: Pod, *, budget_seconds: float, now: datetime) -> list[Signal]:
    """Every failing signal of one pod, from its container statuses, phase and readiness."""
    name = (pod.get("metadata") or {}).get("name", "?")
    status = pod.get("status") or {}
    statuses = [
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
    ]
    signals = [s for s in (container_signal(name, cs, now) for cs in statuses) if s is not None]
    if status.get("phase") == "Failed":
        why = status.get("reason") or "Failed"
        signals.append(Signal("PodFailed", f"pod {name} phase Failed ({why})", now))
    started = _started(pod)
    deadline = None if started is None else started + timedelta(seconds=budget_seconds)
    if deadline is not None and now >= deadline and not _is_ready(pod):
        signals.append(
            Signal("NotReadyInTime", f"pod {name} not Ready within {budget_seconds:g}s", deadline)
        )
    return signals


def live(pods: Sequence[Pod]) -> list[Pod]:
    """Pods not being deleted: a terminating pod's state says nothing about the revision."""
    return [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]


def ready_count(pods: Sequence[Pod]) -> int:
    return sum(1 for p in live(pods) if _is_ready(p))


def check_startup(
    pods: Sequence[Pod], *, expected: int, budget_seconds: float, now: datetime
) -> CheckResult:
    """Failed with the earliest signal; passed when `expected` pods are Ready; else still starting."""
    alive = live(pods)
    signals = [s for p in alive for s in pod_signals(p, budget_seconds=budget_seconds, now=now)]
    if signals:
        first = min(signals, key=lambda s: s.at)
        more = f" (+{len(signals) - 1} more)" if len(signals) > 1 else ""
        return CheckResult(
            "startup", Verdict.FAILED, first.reason, first.message + more, at=first.at
        )
    ready = ready_count(alive)
    verdict = Verdict.PASSED if ready >= expected else Verdict.INCONCLUSIVE
    reason = "PodsReady" if verdict is Verdict.PASSED else "PodsStarting"
    return CheckResult(
        "startup",
        verdict,
        reason,
        f"{ready}/{expected} canary pods Ready",
        value=float(ready),
        limit=float(expected),
    )
