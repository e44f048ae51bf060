"""What users see of a rollout: a Degraded condition, a phase hint and `kubectl get` columns."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from llm_operator.rollout import clock
from llm_operator.rollout.state import IN_FLIGHT, RolloutPhase, RolloutStatus

# For the CRD's additionalPrinterColumns: `kubectl get llmd` shows STABLE, CANARY, WEIGHT, VERDICT.
PRINTER_COLUMNS: tuple[Mapping[str, str | int], ...] = (
    {
        "name": "Stable",
        "type": "string",
        "jsonPath": ".status.rollout.stableRevision",
        "description": "The revision serving at full size.",
    },
    {
        "name": "Canary",
        "type": "string",
        "jsonPath": ".status.rollout.canaryRevision",
        "description": "The revision being judged, if any.",
    },
    {
        "name": "Weight",
        "type": "integer",
        "jsonPath": ".status.rollout.weight",
        "description": "The canary step's weight in percent (status.rollout.message gives the "
        "real share of pods).",
    },
    {
        "name": "Observed",
        "type": "integer",
        "jsonPath": ".status.rollout.observedShare",
        "description": "The canary's measured share of requests in percent over the last "
        "analysis window (its pods' own counters), next to the intended WEIGHT.",
        "priority": 1,
    },
    {
        "name": "Verdict",
        "type": "string",
        "jsonPath": ".status.rollout.lastVerdict",
        "description": "The last analysis verdict or rollout transition.",
    },
)


def phase_hint(status: RolloutStatus) -> str | None:
    """Degraded after a rollback, Progressing while a revision is in flight, else no opinion."""
    if status.phase is RolloutPhase.ROLLED_BACK:
        return "Degraded"
    if status.phase in IN_FLIGHT or status.phase is RolloutPhase.DRAINING:
        return "Progressing"
    return None


def degraded_condition(
    status: RolloutStatus,
    *,
    observed_generation: int,
    now: datetime,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `Degraded` condition: True after a rollback, naming the failed check and values.

    `lastTransitionTime` only moves when the condition's status flips (Kubernetes convention),
    so pass the previous condition of this type when there is one.
    """
    rb = status.rollback
    degraded = status.phase is RolloutPhase.ROLLED_BACK and rb is not None
    flag = "True" if degraded else "False"
    if degraded and rb is not None:
        reason = rb.reason
        message = (
            f"revision {rb.from_revision} rolled back to {rb.to_revision}: {rb.message}. "
            f"The spec still asks for {rb.from_revision}; change it, or annotate "
            "rollout.llm-operator.io/retry to try again."
        )
    else:
        reason, message = "AsExpected", "the spec's revision is serving or rolling out"
    changed = previous is None or previous.get("status") != flag
    since = now if changed or previous is None else previous.get("lastTransitionTime")
    return {
        "type": "Degraded",
        "status": flag,
        "reason": reason,
        "message": message,
        "observedGeneration": observed_generation,
        "lastTransitionTime": since if isinstance(since, str) else clock.format_time(since),
    }
