"""The rollout status round-trips through the CR status, so a restarted operator resumes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llm_operator import spec as api
from llm_operator.rollout import state
from llm_operator.rollout.state import Command, CommandKind, Rollback, RolloutPhase, RolloutStatus

pytestmark = pytest.mark.unit

_times = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
_rev = st.one_of(st.none(), st.text("abcdef0123456789", min_size=1, max_size=10))
_statuses = st.builds(
    RolloutStatus,
    phase=st.sampled_from(RolloutPhase),
    stable_revision=_rev,
    canary_revision=_rev,
    old_revision=_rev,
    step=st.integers(0, 20),
    weight=st.integers(0, 100),
    step_started_at=_times,
    step_ready_at=_times,
    step_passes=st.integers(0, 5),
    failures=st.integers(0, 5),
    inconclusives=st.integers(0, 5),
    last_analysis_at=_times,
    last_verdict=st.sampled_from(["", "Passed", "Failed", "Inconclusive"]),
    last_message=st.text(max_size=40),
    smoked_pods=st.lists(st.text(min_size=1, max_size=8), max_size=3).map(tuple),
    rejected_revision=_rev,
    rollback=st.one_of(
        st.none(),
        st.builds(
            Rollback,
            from_revision=st.text(min_size=1, max_size=5),
            to_revision=st.text(min_size=1, max_size=5),
            reason=st.sampled_from(["CrashLoopBackOff", "ManualAbort"]),
            message=st.text(max_size=30),
            at=st.datetimes(
                min_value=datetime(2020, 1, 1),
                max_value=datetime(2100, 1, 1),
                timezones=st.just(UTC),
            ),
            signal_at=_times,
        ),
    ),
    handled_commands=st.dictionaries(
        st.sampled_from([k.value for k in CommandKind]), st.text(max_size=5)
    ),
    message=st.text(max_size=40),
)


@given(status=_statuses)
def test_status_round_trips_through_the_custom_resource(status: RolloutStatus) -> None:
    assert state.from_status(state.to_status(status)) == status


def test_empty_status_is_the_initial_state() -> None:
    assert state.from_status(None) == RolloutStatus()
    assert state.from_status({"phase": "Ready"}) == RolloutStatus()


def test_status_uses_kubernetes_shapes() -> None:
    status = RolloutStatus(
        phase=RolloutPhase.CANARY,
        stable_revision="a1",
        canary_revision="b2",
        weight=10,
        step_started_at=datetime(2026, 11, 29, 1, 2, 3, tzinfo=UTC),
    )
    rollout = state.to_status(status)["rollout"]
    assert rollout["phase"] == "Canary"
    assert (rollout["stableRevision"], rollout["canaryRevision"], rollout["weight"]) == (
        "a1",
        "b2",
        10,
    )
    assert rollout["stepStartedAt"] == "2026-11-29T01:02:03Z"
    assert state.to_status(status)["rollback"] is None


def test_pending_commands_compare_annotation_values_with_the_handled_ones() -> None:
    status = RolloutStatus(handled_commands={"promote": "1"})
    annotations = {
        "rollout.llm-operator.io/promote": "1",
        "rollout.llm-operator.io/abort": "2026-11-29T01:00:00Z",
        "rollout.llm-operator.io/promote-full": "x",
        "unrelated/annotation": "y",
    }
    assert state.pending_commands(annotations, status) == (
        Command(CommandKind.ABORT, "2026-11-29T01:00:00Z"),
        Command(CommandKind.PROMOTE_FULL, "x"),
    )


def test_spec_dict_in_crd_shape_parses_with_durations_and_manual_pauses() -> None:
    parsed = api.LLMDeploymentSpec.model_validate(
        {
            "model": {"name": "m", "source": "builtin://m"},
            "replicas": 3,
            "startupBudgetSeconds": 120,
            "rollout": {
                "strategy": "Canary",
                "steps": [
                    {"weight": 10, "pause": {"duration": "1m30s"}},
                    {"weight": 50, "pause": {}},
                ],
                "analysis": {
                    "interval": "10s",
                    "failureLimit": 0,
                    "inconclusive": "pass",
                    "metrics": {"maxTTFTp95Seconds": 1.5},
                    "relativeToStable": {"maxErrorRatioIncrease": 0.01},
                    "smokePrompts": [{"prompt": "Capital of France?", "expect": "Paris"}],
                },
            },
        }
    )
    spec, analysis = parsed, parsed.rollout.analysis
    assert spec.replicas == 3
    assert [(s.weight, s.pause_seconds) for s in spec.rollout.steps] == [(10, 90.0), (50, None)]
    assert analysis.interval_seconds == 10.0
    assert analysis.failure_limit == 0
    assert analysis.inconclusive is api.InconclusivePolicy.PASS
    assert analysis.metrics.max_ttft_p95_seconds == 1.5
    assert analysis.relative_to_stable.max_error_ratio_increase == 0.01
    assert analysis.smoke_prompts == (api.SmokePrompt(prompt="Capital of France?", expect="Paris"),)
    assert analysis.smoke_prompts[0].timeout_seconds == 30.0
    assert spec.startup_budget_seconds == 120.0


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10.0), ("1m30s", 90.0), ("2h", 7200.0), ("500ms", 0.5), (7, 7.0)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert api.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "1x", "s10", "10s junk"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        api.parse_duration(text)
