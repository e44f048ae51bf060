"""Weight -> pods, stated honestly; which revision runs how many pods in each phase."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llm_operator.rollout import plan
from llm_operator.rollout.state import RolloutPhase, RolloutStatus

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("weight", "replicas", "canary", "message"),
    [
        (10, 2, 1, "weight 10% -> 1 canary pod beside 2 stable (33% of pods)"),
        (50, 4, 2, "weight 50% -> 2 canary pods beside 4 stable (33% of pods)"),
        (100, 3, 3, "weight 100% -> 3 canary pods beside 3 stable (50% of pods)"),
        (25, 1, 1, "weight 25% -> 1 canary pod beside 1 stable (50% of pods)"),
        (1, 10, 1, "weight 1% -> 1 canary pod beside 10 stable (9% of pods)"),
    ],
)
def test_weight_maps_to_whole_pods_and_says_the_real_share(
    weight: int, replicas: int, canary: int, message: str
) -> None:
    assert plan.canary_replicas(weight, replicas) == canary
    assert plan.weight_message(weight, replicas) == message


@given(weight=st.integers(1, 100), replicas=st.integers(1, 50))
def test_canary_is_the_ceiling_of_the_weight_at_least_one_at_most_full(
    weight: int, replicas: int
) -> None:
    canary = plan.canary_replicas(weight, replicas)
    assert 1 <= canary <= replicas
    assert canary == max(1, math.ceil(weight * replicas / 100))
    assert plan.effective_weight(weight, replicas) == round(100 * canary / (canary + replicas))


def test_stable_stays_full_while_the_canary_runs() -> None:
    status = RolloutStatus(
        phase=RolloutPhase.CANARY, stable_revision="a", canary_revision="b", weight=30
    )
    assert [(w.revision, w.replicas, w.role) for w in plan.workloads(status, 5)] == [
        ("a", 5, "stable"),
        ("b", 2, "canary"),
    ]


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (RolloutPhase.STABLE, {"a": 3}),
        (RolloutPhase.ROLLED_BACK, {"a": 3}),
        (RolloutPhase.DRAINING, {"a": 3}),
        (RolloutPhase.PAUSED, {"a": 3, "b": 1}),
        (RolloutPhase.PROMOTING, {"a": 3, "b": 3}),
        (RolloutPhase.RECREATING, {"b": 3}),
    ],
)
def test_workloads_per_phase(phase: RolloutPhase, expected: dict[str, int]) -> None:
    canary = (
        None
        if phase in (RolloutPhase.STABLE, RolloutPhase.ROLLED_BACK, RolloutPhase.DRAINING)
        else "b"
    )
    status = RolloutStatus(phase=phase, stable_revision="a", canary_revision=canary, weight=10)
    assert {w.revision: w.replicas for w in plan.workloads(status, 3)} == expected


def test_pods_to_smoke_skips_pods_that_passed() -> None:
    status = RolloutStatus(smoked_pods=("p1",))
    assert plan.pods_to_smoke(status, ["p3", "p1", "p2"]) == ("p2", "p3")


def test_baseline_is_due_once_when_the_first_step_becomes_ready() -> None:
    t = datetime(2026, 11, 29, tzinfo=UTC)
    starting = RolloutStatus(phase=RolloutPhase.CANARY, stable_revision="a", canary_revision="b")
    ready = starting.evolve(step_ready_at=t)
    assert plan.baseline_due(starting, ready)
    assert not plan.baseline_due(ready, ready)
    analysed = ready.evolve(last_analysis_at=t)
    next_step = analysed.evolve(step=1, step_ready_at=None)
    assert not plan.baseline_due(next_step, next_step.evolve(step_ready_at=t))
