"""From the LLMDeployment's pods (plain dicts) to `decide.Observed`: the handler's one call.

Pods are told apart by the revision label the builders stamp on them (`contract.LABEL_REVISION`,
the one key both the builders and this module read).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from llm_runtime.api import contract

from llm_operator.rollout import decide, plan, startup, state
from llm_operator.rollout.analysis import CheckResult, Traffic
from llm_operator.rollout.state import RolloutStatus
from llm_operator.spec import LLMDeploymentSpec

REVISION_LABEL = contract.LABEL_REVISION


def revision_of(pod: startup.Pod, *, label: str = REVISION_LABEL) -> str:
    """The revision label of a Pod (or Deployment) dict; "" when it has none."""
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(label, ""))


def by_revision(
    pods: Iterable[startup.Pod], *, label: str = REVISION_LABEL
) -> dict[str, list[startup.Pod]]:
    """Pods grouped by their revision label."""
    groups: dict[str, list[startup.Pod]] = {}
    for pod in pods:
        groups.setdefault(revision_of(pod, label=label), []).append(pod)
    return groups


def ready_names(pods: Sequence[startup.Pod]) -> tuple[str, ...]:
    """Names of the live, Ready pods (the ones to scrape and smoke)."""
    return tuple(
        str((p.get("metadata") or {}).get("name", ""))
        for p in startup.live(pods)
        if startup.ready_count([p]) == 1
    )


def observe(
    *,
    pods: Iterable[startup.Pod],
    status: RolloutStatus,
    spec: LLMDeploymentSpec,
    desired_revision: str,
    annotations: Mapping[str, str] | None,
    now: datetime,
    analysis: tuple[CheckResult, ...] | None = None,
    traffic: Traffic | None = None,
    label: str = REVISION_LABEL,
) -> decide.Observed:
    """Everything `decide` needs this tick, from the pods and the annotations."""
    groups = by_revision(pods, label=label)
    canary = groups.get(status.canary_revision or "", []) if status.canary_revision else []
    current = {status.stable_revision, status.canary_revision}
    old = sum(len(g) for rev, g in groups.items() if rev not in current)
    check = None
    if status.canary_revision is not None:
        check = startup.check_startup(
            canary,
            expected=plan.planned_canary(status, spec.replicas),
            budget_seconds=float(spec.startup_budget_seconds),
            now=now,
        )
    return decide.Observed(
        desired_revision=desired_revision,
        canary_ready=startup.ready_count(canary),
        old_pods=old,
        startup=check,
        analysis=analysis,
        traffic=traffic,
        commands=state.pending_commands(annotations, status),
    )
