"""From rollout status to pod counts: which revision runs how many replicas, said honestly.

No service mesh: both revisions sit behind the same Services, so the canary's share of traffic is
its share of Ready pods. A weight therefore maps to whole pods (rounded up, at least one) and the
status message says what share that really is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from llm_operator.rollout.state import ANALYSED, RolloutPhase, RolloutStatus
from llm_operator.spec import LLMDeploymentSpec


def canary_replicas(weight: int, replicas: int) -> int:
    """ceil(weight% of the full size), at least 1 and at most the full size."""
    full = max(replicas, 1)
    return min(full, max(1, math.ceil(weight * full / 100)))


def weight_message(weight: int, replicas: int, *, front_door: bool = False) -> str:
    """e.g. "weight 10% -> 1 canary pod beside 2 stable (33% of pods)", or with the front door
    "... (the front door sends it 10% of requests)"."""
    canary = canary_replicas(weight, replicas)
    stable = max(replicas, 1)
    share = round(100 * canary / (canary + stable))
    pods = "pod" if canary == 1 else "pods"
    how = f"the front door sends it {weight}% of requests" if front_door else f"{share}% of pods"
    return f"weight {weight}% -> {canary} canary {pods} beside {stable} stable ({how})"


def effective_weight(weight: int, replicas: int) -> int:
    """The canary's real share of pods (and so of traffic) in percent."""
    canary = canary_replicas(weight, replicas)
    return round(100 * canary / (canary + max(replicas, 1)))


@dataclass(frozen=True)
class Workload:
    """One revision's desired size. Revisions not listed are scaled to 0 and removed once empty."""

    revision: str
    replicas: int
    role: str  # stable, canary, old


def workloads(status: RolloutStatus, replicas: int) -> tuple[Workload, ...]:
    """The desired size of every revision for this status (the handler converges to it)."""
    stable, canary = status.stable_revision, status.canary_revision
    out: list[Workload] = []
    if status.phase is RolloutPhase.RECREATING:
        return () if canary is None else (Workload(canary, replicas, "canary"),)
    if stable is not None:
        out.append(Workload(stable, replicas, "stable"))
    if canary is not None and status.phase in (RolloutPhase.CANARY, RolloutPhase.PAUSED):
        out.append(Workload(canary, canary_replicas(status.weight, replicas), "canary"))
    elif canary is not None and status.phase is RolloutPhase.PROMOTING:
        out.append(Workload(canary, replicas, "canary"))
    return tuple(out)


def planned_canary(status: RolloutStatus, replicas: int) -> int:
    """How many canary pods this status asks for (0 when there is no canary)."""
    return sum(w.replicas for w in workloads(status, replicas) if w.role == "canary")


def analysis_due(status: RolloutStatus, spec: LLMDeploymentSpec, now: datetime) -> bool:
    """True when a metric window has closed: one interval after the last analysis, or after the
    canary's pods for this step first became Ready."""
    if status.phase not in ANALYSED or status.step_ready_at is None:
        return False
    anchor = status.last_analysis_at or status.step_ready_at
    return (now - anchor).total_seconds() >= spec.rollout.analysis.interval_seconds


def pods_to_smoke(status: RolloutStatus, ready_canary_pods: Iterable[str]) -> tuple[str, ...]:
    """Ready canary pods that have not yet passed every smoke prompt."""
    done = set(status.smoked_pods)
    return tuple(sorted(p for p in ready_canary_pods if p not in done))


def baseline_due(before: RolloutStatus, after: RolloutStatus) -> bool:
    """True on the tick the canary's first step became Ready: scrape every pod now, so the
    first window (one interval later) has a start for both stable and canary."""
    return (
        after.phase in ANALYSED
        and after.step_ready_at is not None
        and before.step_ready_at is None
        and after.last_analysis_at is None
    )
