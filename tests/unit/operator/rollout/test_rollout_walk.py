"""Random walks through the state machine: invariants hold and a restart changes nothing."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_operator import spec as api
from llm_operator.rollout import decide, plan, state
from llm_operator.rollout.analysis import CheckResult, Verdict
from llm_operator.rollout.decide import Action, Observed
from llm_operator.rollout.state import IN_FLIGHT, Command, CommandKind, RolloutPhase, RolloutStatus

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 29, tzinfo=UTC)
REPLICAS = 3
RESULTS = {
    "pass": (CheckResult("ttft_p95", Verdict.PASSED, "TTFTp95WithinLimit", "ok"),),
    "fail": (CheckResult("error_ratio", Verdict.FAILED, "ErrorRatioAboveLimit", "bad"),),
    "quiet": (CheckResult("traffic", Verdict.INCONCLUSIVE, "NoTraffic", "quiet"),),
}
STARTUP = {
    "crash": CheckResult("startup", Verdict.FAILED, "OOMKilled", "oom", at=T0),
    "ready": CheckResult("startup", Verdict.PASSED, "PodsReady", "ready"),
}


@dataclass(frozen=True)
class Tick:
    desired: str | None  # None: the spec did not change this tick
    seconds: int
    canary_ready: int
    old_pods: int
    startup: str | None
    analysis: str | None
    command: CommandKind | None


def _random_tick(rng: random.Random, status: RolloutStatus) -> Tick:
    """A world that mostly behaves (pods come up, windows close) and sometimes does not."""
    planned = plan.planned_canary(status, REPLICAS)
    return Tick(
        desired=rng.choice(["r1", "r2", "r3"]) if rng.random() < 0.06 else None,
        seconds=rng.choice([1, 2, 5, 10, 10, 20]),
        canary_ready=planned if rng.random() < 0.8 else rng.randint(0, REPLICAS),
        old_pods=0 if rng.random() < 0.5 else rng.randint(1, 2),
        startup=rng.choice([None] * 30 + ["ready", "crash"]),
        analysis=rng.choice([None, "pass", "pass", "pass", "pass", "fail", "quiet"]),
        command=rng.choice([None] * 40 + list(CommandKind)),
    )


_rollouts = st.builds(
    api.RolloutSpec,
    strategy=st.sampled_from(api.Strategy),
    steps=st.lists(
        st.builds(
            api.Step,
            weight=st.integers(1, 100),
            # waits for a promote, moves on once passed, pauses 15 s
            pause=st.sampled_from([api.Pause(), None, api.Pause(duration="15s")]),
        ),
        max_size=3,
    ).map(tuple),
    analysis=st.builds(
        api.AnalysisSpec,
        interval=st.just("10s"),
        failure_limit=st.integers(0, 2),
        inconclusive=st.sampled_from(api.InconclusivePolicy),
    ),
)
_specs = _rollouts.map(
    lambda r: api.LLMDeploymentSpec(
        model=api.ModelSpec(name="m", source="builtin://m"), replicas=REPLICAS, rollout=r
    )
)


def _check_invariants(before: RolloutStatus, tick: Tick, desired: str, d: decide.Decision) -> None:
    s = d.status
    assert s.stable_revision is not None
    assert (s.canary_revision is not None) == (s.phase in IN_FLIGHT)
    assert s.canary_revision != s.stable_revision
    if s.phase is RolloutPhase.ROLLED_BACK:
        assert s.rejected_revision is not None and s.rollback is not None
    sizes = {w.revision: w.replicas for w in plan.workloads(s, REPLICAS)}
    if s.phase is not RolloutPhase.RECREATING:
        assert sizes[s.stable_revision] == REPLICAS  # the stable never shrinks during a canary
    assert all(0 < n <= REPLICAS for n in sizes.values())
    retried = tick.command is CommandKind.RETRY
    if before.phase is RolloutPhase.ROLLED_BACK and desired == before.rejected_revision:
        assert retried or d.action is not Action.START  # no flapping
    if d.action is Action.ROLLBACK:
        assert d.event is not None and d.event.type == "Warning"


@settings(max_examples=200, deadline=None)
@given(spec=_specs, seed=st.integers(0, 2**32))
def test_any_sequence_keeps_the_invariants_and_survives_a_restart(
    spec: api.LLMDeploymentSpec, seed: int
) -> None:
    rng = random.Random(seed)
    status = RolloutStatus()
    now = T0
    desired = "r1"
    for n in range(80):
        tick = _random_tick(rng, status)
        now += timedelta(seconds=tick.seconds)
        desired = tick.desired or desired
        commands = () if tick.command is None else (Command(tick.command, str(n)),)
        observed = Observed(
            desired_revision=desired,
            canary_ready=tick.canary_ready,
            old_pods=tick.old_pods,
            startup=None if tick.startup is None else STARTUP[tick.startup],
            analysis=None if tick.analysis is None else RESULTS[tick.analysis],
            commands=commands,
        )
        decision = decide.decide(observed, status, spec, now)
        restarted = state.from_status(state.to_status(status))
        assert decide.decide(observed, restarted, spec, now) == decision
        _check_invariants(status, tick, desired, decision)
        status = decision.status
