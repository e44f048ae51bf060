"""The rollout's whole state, kept in the custom resource's status and nowhere else.

`RolloutStatus` round-trips through `to_status` / `from_status` (camelCase, RFC 3339 times), so an
operator killed mid-rollout reads it back and `decide` continues from the same step.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from llm_operator.rollout import clock

ANNOTATION_PREFIX = "rollout.llm-operator.io/"


class RolloutPhase(enum.StrEnum):
    STABLE = "Stable"  # one revision serves; nothing in flight
    CANARY = "Canary"  # canary at the step's weight beside the full stable, being analysed
    PAUSED = "Paused"  # like Canary, but waits for a manual promote (a pause without duration)
    PROMOTING = "Promoting"  # canary scaled to full beside the old stable, waiting to be Ready
    DRAINING = "Draining"  # canary is the stable now; the old revision scales to 0 and drains
    RECREATING = "Recreating"  # Recreate: old stable at 0, new revision at full, being judged
    ROLLED_BACK = "RolledBack"  # canary removed; its revision is rejected until the spec changes


IN_FLIGHT = frozenset(
    {RolloutPhase.CANARY, RolloutPhase.PAUSED, RolloutPhase.PROMOTING, RolloutPhase.RECREATING}
)
ANALYSED = frozenset({RolloutPhase.CANARY, RolloutPhase.PAUSED, RolloutPhase.RECREATING})


class CommandKind(enum.StrEnum):
    """Manual control, one annotation each; the value is any token that changes per request."""

    ABORT = "abort"  # roll the canary back now
    RETRY = "retry"  # try a rejected revision again
    PROMOTE_FULL = "promote-full"  # skip every remaining step and promote
    PROMOTE = "promote"  # leave the current step (its pause too) for the next one


@dataclass(frozen=True)
class Command:
    kind: CommandKind
    token: str


@dataclass(frozen=True)
class Rollback:
    """What `status.rollback` shows after a rollback: {from, to, reason, message, at}."""

    from_revision: str
    to_revision: str
    reason: str
    message: str
    at: datetime
    signal_at: datetime | None = None  # when the failing signal itself happened, if known

    def to_dict(self) -> dict[str, Any]:
        out = {
            "from": self.from_revision,
            "to": self.to_revision,
            "reason": self.reason,
            "message": self.message,
            "at": clock.format_time(self.at),
        }
        if self.signal_at is not None:
            out["signalAt"] = clock.format_time(self.signal_at)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Rollback:
        return cls(
            from_revision=str(raw.get("from", "")),
            to_revision=str(raw.get("to", "")),
            reason=str(raw.get("reason", "")),
            message=str(raw.get("message", "")),
            at=clock.parse_time(raw.get("at")) or datetime.fromtimestamp(0, UTC),
            signal_at=clock.parse_time(raw.get("signalAt")),
        )


@dataclass(frozen=True)
class RolloutStatus:
    """Everything the state machine knows. Times are aware UTC datetimes."""

    phase: RolloutPhase = RolloutPhase.STABLE
    stable_revision: str | None = None
    canary_revision: str | None = None
    old_revision: str | None = None  # the previous stable while Draining
    step: int = 0
    weight: int = 0
    step_started_at: datetime | None = None
    step_ready_at: datetime | None = None  # the canary's pods for this step were all Ready
    step_passes: int = 0  # passed analyses since step_ready_at
    failures: int = 0  # failed analyses of this canary (against failureLimit)
    inconclusives: int = 0
    last_analysis_at: datetime | None = None
    last_verdict: str = ""  # Passed / Failed / Inconclusive, or the last transition
    last_message: str = ""
    smoked_pods: tuple[str, ...] = ()
    rejected_revision: str | None = None
    rollback: Rollback | None = None
    handled_commands: Mapping[str, str] = field(default_factory=dict)
    message: str = ""  # how the weight maps to pods, stated honestly
    # What the last closed window measured: the canary's share of the requests both revisions'
    # pods served (percent; None before any window with traffic), and how many requests that was.
    observed_share: int | None = None
    observed_requests: int = 0
    stalled: bool = False  # past the step's progress deadline without aborting

    def evolve(self, **changes: Any) -> RolloutStatus:
        """A copy with `changes` applied (dataclasses.replace, named for readability)."""
        return replace(self, **changes)


_TIME_FIELDS = ("step_started_at", "step_ready_at", "last_analysis_at")
_KEYS = {
    "phase": "phase",
    "stable_revision": "stableRevision",
    "canary_revision": "canaryRevision",
    "old_revision": "oldRevision",
    "step": "step",
    "weight": "weight",
    "step_started_at": "stepStartedAt",
    "step_ready_at": "stepReadyAt",
    "step_passes": "stepPasses",
    "failures": "failures",
    "inconclusives": "inconclusives",
    "last_analysis_at": "lastAnalysisAt",
    "last_verdict": "lastVerdict",
    "last_message": "lastMessage",
    "smoked_pods": "smokedPods",
    "rejected_revision": "rejectedRevision",
    "handled_commands": "handledCommands",
    "message": "message",
    "observed_share": "observedShare",
    "observed_requests": "observedRequests",
    "stalled": "stalled",
}


def to_status(status: RolloutStatus) -> dict[str, Any]:
    """The status patch: `{"rollout": {...}, "rollback": {...} | None}` (None deletes it)."""
    rollout: dict[str, Any] = {}
    for attr, key in _KEYS.items():
        value = getattr(status, attr)
        if attr in _TIME_FIELDS:
            value = clock.format_time(value)
        elif attr == "smoked_pods":
            value = list(value)
        elif attr == "handled_commands":
            value = dict(value)
        elif attr == "phase":
            value = str(value)
        rollout[key] = value
    return {
        "rollout": rollout,
        "rollback": None if status.rollback is None else status.rollback.to_dict(),
    }


def from_status(cr_status: Mapping[str, Any] | None) -> RolloutStatus:
    """Reads back what `to_status` wrote; missing or empty status is the initial state."""
    cr_status = cr_status or {}
    raw = cr_status.get("rollout") or {}
    values: dict[str, Any] = {}
    for attr, key in _KEYS.items():
        if raw.get(key) is None:
            continue
        value = raw[key]
        if attr in _TIME_FIELDS:
            value = clock.parse_time(value)
        elif attr == "smoked_pods":
            value = tuple(str(v) for v in value)
        elif attr == "handled_commands":
            value = {str(k): str(v) for k, v in value.items()}
        elif attr == "phase":
            value = RolloutPhase(value)
        values[attr] = value
    rollback = cr_status.get("rollback")
    return RolloutStatus(**values, rollback=Rollback.from_dict(rollback) if rollback else None)


def pending_commands(
    annotations: Mapping[str, str] | None, status: RolloutStatus
) -> tuple[Command, ...]:
    """Commands whose annotation value differs from the last one handled, highest priority first.

    The annotation stays where the user put it; the status remembers the value it acted on, so a
    restarted operator neither loses nor repeats a command.
    """
    annotations = annotations or {}
    pending = []
    for kind in CommandKind:  # declaration order is the priority order
        token = annotations.get(ANNOTATION_PREFIX + kind.value)
        if token is not None and status.handled_commands.get(kind.value) != token:
            pending.append(Command(kind=kind, token=token))
    return tuple(pending)
