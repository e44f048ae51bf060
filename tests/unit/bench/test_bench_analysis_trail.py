"""The rollback tests' window trail: which windows count, and the budget held windows add."""

from __future__ import annotations

import pytest
from bench.analysis_trail import Trail

pytestmark = pytest.mark.unit

READY = "2026-12-03T07:08:52.015432Z"


def poll(
    at: str | None, verdict: str, inconclusives: int = 0, canary: str | None = "c1"
) -> dict[str, object]:
    return {
        "canaryRevision": canary,
        "stepReadyAt": READY if canary else None,
        "lastAnalysisAt": at,
        "lastVerdict": verdict,
        "inconclusives": inconclusives,
    }


def test_windows_before_the_step_was_ready_are_not_recorded() -> None:
    trail = Trail()
    trail.record({"canaryRevision": "c1", "lastAnalysisAt": "2026-12-03T07:08:40Z"})
    trail.record(poll("2026-12-03T07:08:40.000001Z", "Inconclusive", 1))
    assert trail.ready_at == READY
    assert trail.windows == {}


def test_each_window_is_recorded_once_and_judged_windows_add_nothing() -> None:
    trail = Trail()
    for _ in range(3):
        trail.record(poll("2026-12-03T07:08:58.2Z", "Failed"))
    trail.record(poll("2026-12-03T07:09:04.3Z", "Failed", canary=None))  # the rollback's window
    assert list(trail.windows) == ["2026-12-03T07:08:58.2Z", "2026-12-03T07:09:04.3Z"]
    assert trail.held() == 0
    assert trail.budget(interval=5, judged=2, slack=6) == 16


def test_held_windows_extend_the_budget_by_one_interval_and_a_tick_each() -> None:
    trail = Trail()
    trail.record(poll("2026-12-03T07:08:58Z", "Inconclusive", 1))
    trail.record(poll("2026-12-03T07:09:04Z", "StableUnhealthy", 1))
    trail.record(poll("2026-12-03T07:09:10Z", "Failed", 1))
    assert trail.held() == 2
    assert trail.budget(interval=5, judged=2, slack=6) == 16 + 2 * 6
    assert "2 held window(s)" in trail.summary()


def test_the_status_count_of_inconclusives_covers_windows_between_polls() -> None:
    trail = Trail()
    trail.record(poll("2026-12-03T07:09:10Z", "Failed", inconclusives=3))
    assert trail.held() == 3
