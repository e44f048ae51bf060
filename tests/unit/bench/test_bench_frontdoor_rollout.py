"""The pure parts of the rollback benchmark's front door kind: per-step shares, added latency."""

from __future__ import annotations

import pytest
from bench import frontdoor_rollout as fr

pytestmark = pytest.mark.unit


def _s(weight: int | None, stable: int, canary: int, share: int | None = None) -> fr.Sample:
    return fr.Sample(weight, {"old": stable, "new": canary}, share, None if share is None else 9)


def test_each_step_counts_only_the_requests_between_its_first_and_last_sample() -> None:
    samples = [
        _s(None, 50, 0),  # before the canary: not a step
        _s(10, 60, 0),
        _s(10, 78, 2, share=10),
        _s(25, 80, 2),
        _s(25, 95, 7, share=24),
        _s(None, 95, 30),  # promoted
    ]
    steps = fr.step_shares(samples, "new")
    assert [(s.weight, s.client_requests, s.client_share) for s in steps] == [
        (10, 20, 10.0),
        (25, 20, 25.0),
    ]
    assert [(s.status_share, s.status_requests) for s in steps] == [(10, 9), (24, 9)]


def test_a_step_with_no_requests_has_no_share_rather_than_zero() -> None:
    (step,) = fr.step_shares([_s(50, 5, 5), _s(50, 5, 5)], "new")
    assert (step.client_requests, step.client_share, step.status_share) == (0, None, None)


def test_added_latency_is_the_median_of_per_round_differences_in_ms() -> None:
    assert fr.added_ms([0.5, 0.6, 0.7], [0.51, 0.6, 0.75]) == 10.0
    with pytest.raises(ValueError):
        fr.added_ms([0.5], [0.5, 0.6])
