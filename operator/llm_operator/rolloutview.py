"""How a rollout shapes what the status says (pure): which revision the phase is about, and how
a canary in flight or a rollback refines the phase the pods alone would give.

The pods of the *serving* revision (the stable; the new one while Recreate starts it) decide
READY and the base phase; a canary running beside it makes the phase Progressing; a rollback
makes it Degraded with the failed check as the reason, so `kubectl get llmd` shows that the
spec asks for something that is not serving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from llm_operator import status
from llm_operator.rollout import pods, report
from llm_operator.rollout.state import IN_FLIGHT, RolloutPhase, RolloutStatus


def serving_revision(r: RolloutStatus, spec_revision: str) -> str:
    """The revision that runs at full size now."""
    if r.phase is RolloutPhase.RECREATING and r.canary_revision:
        return r.canary_revision
    return r.stable_revision or spec_revision


def pick(objs: Sequence[Mapping[str, Any]], revision: str) -> list[Mapping[str, Any]]:
    """The objects of one revision."""
    return [o for o in objs if pods.revision_of(o) == revision]


def summarize(base: status.Summary, r: RolloutStatus, *, now: datetime) -> status.Summary:
    """The phase with the rollout taken into account. A Failed apply or a Degraded stable keeps
    its own (more urgent) verdict."""
    if base.phase in status.WARNING_PHASES:
        return base
    if r.phase is RolloutPhase.ROLLED_BACK and r.rollback is not None:
        cond = report.degraded_condition(r, observed_generation=0, now=now)
        return status.Summary("Degraded", r.rollback.reason, str(cond["message"]))
    busy = r.phase in IN_FLIGHT or r.phase is RolloutPhase.DRAINING
    if busy and base.phase in ("Ready", "Progressing"):
        what = f"revision {r.canary_revision or r.stable_revision} {r.phase}"
        detail = f": {r.message}" if r.message else ""
        return status.Summary("Progressing", f"Rollout{r.phase}", what + detail)
    return base
