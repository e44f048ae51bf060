"""Status rules (pure): observed children -> phase, conditions and the fields `kubectl get` shows.

The phase is always derived from what the pods and the Deployment say now, never remembered, so it
stays truthful after operator restarts. lastTransitionTime only moves when a condition's status does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from llm_operator import preflight
from llm_operator.observe import DeploymentView, Failure, PodView

DeploymentPhase = Literal[
    "Pending", "Fetching", "Loading", "Ready", "Progressing", "Degraded", "Failed"
]
# On the way to Ready: kstatus' Reconciling, the Progressing condition.
MOVING_PHASES = frozenset({"Pending", "Fetching", "Loading", "Progressing"})
WARNING_PHASES = frozenset({"Degraded", "Failed"})


@dataclasses.dataclass(frozen=True)
class ServingState:
    """Everything the rules look at for one LLMDeployment."""

    generation: int
    desired: int
    revision: str
    deployment: DeploymentView | None
    pods: tuple[PodView, ...]
    apply_error: str = ""
    # Problems the cluster must fix (llm_operator.preflight), one per condition type.
    problems: tuple[preflight.Problem, ...] = ()


@dataclasses.dataclass(frozen=True)
class Summary:
    """The phase with the reason and message that explain it."""

    phase: DeploymentPhase
    reason: str
    message: str


def _first_failure(pods: Sequence[PodView]) -> tuple[PodView, Failure] | None:
    for p in pods:
        if p.failure is not None:
            return p, p.failure
    return None


def _rolled_out(o: ServingState, live: Sequence[PodView]) -> bool:
    d = o.deployment
    if d is None or d.observed_generation < d.generation:
        return False
    current_ready = sum(1 for p in live if p.ready and p.revision == o.revision)
    return current_ready >= o.desired and len(live) == o.desired


def summarize(o: ServingState) -> Summary:
    """The phase rules, in order of precedence (the first that matches wins)."""
    if o.apply_error:
        return Summary("Failed", "ApplyFailed", o.apply_error)
    worst = preflight.blocking(o.problems)
    if worst is not None and worst.phase == "Failed":  # it will never load: never say Loading
        return Summary("Failed", worst.reason, worst.message)
    if o.deployment is None:
        return Summary("Pending", "Creating", "the runtime Deployment does not exist yet")
    live = [p for p in o.pods if not p.terminating]
    ready = sum(1 for p in live if p.ready)
    failing = _first_failure(live)
    if failing:
        pod, f = failing
        return Summary("Degraded", f.reason, f"pod {pod.name} container {f.container}: {f.message}")
    if worst is not None:
        return Summary("Degraded", worst.reason, worst.message)
    if _rolled_out(o, live):
        return Summary("Ready", "ReplicasReady", f"{ready}/{o.desired} replicas serve the model")
    unschedulable = [p for p in live if p.unschedulable_message]
    if ready == 0 and o.desired > 0:
        if unschedulable:
            return Summary("Pending", "Unschedulable", unschedulable[0].unschedulable_message)
        if any(p.scheduled for p in live):
            return _starting([p for p in live if p.scheduled])
        return Summary("Pending", "WaitingForPods", "no runtime pod is scheduled yet")
    return Summary(
        "Progressing", "RollingOut", f"{ready}/{o.desired} replicas ready, rollout in progress"
    )


def _starting(scheduled: Sequence[PodView]) -> Summary:
    """Scheduled, none ready: Fetching while every pod is still in its fetch init container,
    Loading once one runs the server (loading the model, not ready yet)."""
    if all(p.initializing for p in scheduled):
        return Summary("Fetching", "FetchingModel", "the init container is fetching the model")
    return Summary("Loading", "LoadingModel", "the runtime is loading the model")


def _cond(kind: str, on: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": "True" if on else "False", "reason": reason, "message": message}


def conditions_for(
    v: Summary, *, ready: int, desired: int, spec_serves: bool = True
) -> list[dict[str, Any]]:
    """Available, Progressing, Degraded (the Deployment convention), Ready (`kubectl wait
    --for=condition=Ready`), and kstatus' Reconciling and Stalled (which Helm, Argo CD and Flux
    read), without times (`with_times` adds them). `spec_serves`: the revision serving is the
    one the spec asks for (false during a canary and after a rollback)."""
    available = ready > 0 or desired == 0
    moving = v.phase in MOVING_PHASES
    bad = v.phase in WARNING_PHASES
    done = v.phase == "Ready" and spec_serves and ready >= desired
    return [
        _cond(
            "Available",
            available,
            "ReplicasReady" if available else v.reason,
            f"{ready}/{desired} replicas ready",
        ),
        _cond(
            "Progressing",
            moving,
            "RolloutComplete" if v.phase == "Ready" else v.reason,
            v.message,
        ),
        _cond("Degraded", bad, v.reason if bad else "AsExpected", v.message if bad else ""),
        _cond(
            "Ready",
            done,
            "SpecServedAtFullSize" if done else v.reason,
            f"the spec's revision serves on {ready}/{desired} replicas" if done else v.message,
        ),
        # kstatus: Reconciling while the spec is not reached yet but may be; Stalled when it
        # cannot be without a change (a failure, a rejected revision).
        _cond("Reconciling", moving and not bad, v.reason if moving else "Reconciled", ""),
        _cond("Stalled", bad, v.reason if bad else "NotStalled", v.message if bad else ""),
    ]


def with_times(
    conds: Sequence[Mapping[str, Any]],
    *,
    previous: Sequence[Mapping[str, Any]],
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """Adds observedGeneration and lastTransitionTime, keeping the old time when status is same."""
    old = {c.get("type"): c for c in previous}
    out = []
    for c in conds:
        before = old.get(c["type"])
        same = before is not None and before.get("status") == c["status"]
        stamp = str(before.get("lastTransitionTime")) if same and before else now
        out.append({**c, "observedGeneration": generation, "lastTransitionTime": stamp})
    return out


def status_body(
    o: ServingState,
    *,
    selector: str,
    endpoint: str,
    previous: Mapping[str, Any],
    now: str,
    v: Summary | None = None,
    spec_revision: str | None = None,
) -> dict[str, Any]:
    """The whole .status the operator writes (`v`: the summary when a rollout refines it;
    `spec_revision`: the revision the spec asks for, when it may differ from the serving one)."""
    v = v or summarize(o)
    live = [p for p in o.pods if not p.terminating]
    ready = sum(1 for p in live if p.ready)
    serves = spec_revision is None or spec_revision == o.revision
    conds = [
        *conditions_for(v, ready=ready, desired=o.desired, spec_serves=serves),
        *preflight.conditions(o.problems),
    ]
    return {
        "phase": v.phase,
        "conditions": with_times(
            conds, previous=previous.get("conditions") or [], generation=o.generation, now=now
        ),
        "observedGeneration": o.generation,
        "replicas": len(live),
        "readyReplicas": ready,
        "ready": f"{ready}/{o.desired}",
        "currentRevision": o.revision,
        "selector": selector,
        "endpoint": endpoint,
        "lastError": v.message if v.phase in WARNING_PHASES else "",
    }


def pruned(value: Any) -> Any:
    """`value` without None entries, recursively: what a JSON merge patch leaves stored (None
    deletes a key), so a status read back compares equal to the one written."""
    if isinstance(value, Mapping):
        return {k: pruned(v) for k, v in value.items() if v is not None}
    return value


def changed(previous: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether writing `new` (as a merge patch) would change anything the status shows."""
    return any(pruned(previous.get(k)) != pruned(v) for k, v in new.items())


def patch_of(new: Mapping[str, Any], *, previous: Mapping[str, Any]) -> dict[str, Any]:
    """`new` as a merge patch over `previous`: keys of a nested object that `new` no longer has
    are set to None, or the merge would keep them (e.g. an old rollback's signalAt)."""
    out: dict[str, Any] = {}
    for key, value in new.items():
        before = previous.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            gone = {k: None for k in before if k not in value}
            out[key] = {**gone, **value}
        else:
            out[key] = value
    return out


@dataclasses.dataclass(frozen=True)
class Transition:
    """An Event to post when the phase changes."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def transition(
    previous_phase: str | None, v: Summary, *, previous_reason: str = ""
) -> Transition | None:
    """One Event per phase change; Warning with the failure's reason for Degraded and Failed,
    and another Warning when a failing phase's reason changes (a restarting container that is
    now in CrashLoopBackOff), so the Events name what the conditions say now."""
    warn = v.phase in WARNING_PHASES
    if previous_phase == v.phase:
        if not (warn and previous_reason and previous_reason != v.reason):
            return None
        message = f"{v.phase}, now {v.reason} (was {previous_reason}): {v.message}"
        return Transition("Warning", v.reason, message)
    message = f"phase {previous_phase or 'None'} -> {v.phase}: {v.message}"
    return Transition("Warning" if warn else "Normal", v.reason if warn else v.phase, message)


def failing_reason(previous: Mapping[str, Any]) -> str:
    """The reason of a stored status's Degraded condition while it is True ("" otherwise)."""
    for c in previous.get("conditions") or []:
        if c.get("type") == "Degraded" and c.get("status") == "True":
            return str(c.get("reason") or "")
    return ""
