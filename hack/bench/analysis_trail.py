"""The analysis windows a test saw close, read from `status.rollout` on every poll. Pure.

A rollback test times "step Ready -> rolled back" against a number of analysis windows. A window
that could not judge the canary (too few canary requests on a slow machine, a pod too busy to
answer its scrape in time, an unhealthy stable) is held by design (`inconclusive: hold`): it
counts neither way, so the rollback legitimately comes one window later. The trail counts those
held windows, so the budget is "N *judged* windows" - and a failure prints every window seen,
which says whether the operator was slow or the windows could not judge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench import podwatch

FIELDS = ("lastVerdict", "inconclusives", "failures", "observedRequests", "lastMessage")
JUDGED = frozenset({"Passed", "Failed"})
MAX_HELD = 4  # held windows a rollback test tolerates: more means the canary got no traffic


@dataclass
class Trail:
    """Every distinct window (by `lastAnalysisAt`) of one canary, and when its step was Ready."""

    ready_at: str | None = None
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)
    most_inconclusives: int = 0

    def record(self, rollout: Mapping[str, Any]) -> None:
        """One poll of status.rollout; windows before the step was Ready are not the canary's."""
        if rollout.get("canaryRevision") and rollout.get("stepReadyAt") and self.ready_at is None:
            self.ready_at = str(rollout["stepReadyAt"])
        at = rollout.get("lastAnalysisAt")
        if self.ready_at is None or not at or podwatch.seconds_between(self.ready_at, at) < 0:
            return
        self.windows.setdefault(str(at), {k: rollout.get(k) for k in FIELDS})
        self.most_inconclusives = max(
            self.most_inconclusives, int(rollout.get("inconclusives") or 0)
        )

    def held(self) -> int:
        """Windows that judged nothing: the status's own count, or those seen, if more."""
        seen = sum(1 for w in self.windows.values() if w["lastVerdict"] not in JUDGED)
        return max(seen, self.most_inconclusives)

    def budget(self, *, interval: float, judged: int, slack: float) -> float:
        """Seconds from step Ready that `judged` judged windows plus the held ones may take:
        each window closes on the tick after its interval (up to a second late)."""
        return judged * interval + slack + self.held() * (interval + 1.0)

    def check_rolled_back(
        self, at: str, *, interval: float, judged: int, slack: float, what: str
    ) -> float:
        """Asserts the rollback at `at` came within `judged` judged windows of the step Ready
        (see `budget`) and at most MAX_HELD held ones; prints the trail; returns the delay."""
        assert self.ready_at, "the canary step was never seen Ready"
        delay = podwatch.seconds_between(self.ready_at, at)
        print(f"{what}: rolled back {at} ({delay:.0f} s)\n{self.summary()}")
        assert self.held() <= MAX_HELD, self.summary()
        budget = self.budget(interval=interval, judged=judged, slack=slack)
        assert delay <= budget, f"{delay:.1f} s > {budget:.1f} s\n{self.summary()}"
        return delay

    def summary(self) -> str:
        rows = [f"step Ready {self.ready_at}; {self.held()} held window(s)"]
        rows += [f"  {at}: {w}" for at, w in sorted(self.windows.items())]
        return "\n".join(rows)
