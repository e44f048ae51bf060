"""The canary state machine, scenario by scenario, on a simulated clock (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from llm_operator.rollout import decide, plan, state
from llm_operator.rollout.analysis import CheckResult, Traffic, Verdict
from llm_operator.rollout.decide import Action, Decision, Observed
from llm_operator.rollout.state import Command, CommandKind, RolloutPhase, RolloutStatus
from llm_operator.spec import InconclusivePolicy, LLMDeploymentSpec

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)


def make_spec(
    *,
    replicas: int = 2,
    steps: tuple[tuple[int, float | None], ...] = ((10, 30), (50, 30)),
    strategy: str = "Canary",
    progress_deadline_seconds: int = 600,
    progress_deadline_abort: bool = True,
    **analysis: object,
) -> LLMDeploymentSpec:
    """A spec for the rollout core: (weight, pause seconds; None waits for a promote) steps
    and analysis fields by their Python names."""
    return LLMDeploymentSpec.model_validate(
        {
            "model": {"name": "m", "source": "builtin://m"},
            "replicas": replicas,
            "rollout": {
                "strategy": strategy,
                "progressDeadlineSeconds": progress_deadline_seconds,
                "progressDeadlineAbort": progress_deadline_abort,
                "steps": [
                    {"weight": w, "pause": {} if p is None else {"duration": f"{p:g}s"}}
                    if p != 0
                    else {"weight": w}
                    for w, p in steps
                ],
                "analysis": {"interval": "10s", **analysis},
            },
        }
    )


SPEC = make_spec(failure_limit=1)
PASS = (CheckResult("ttft_p95", Verdict.PASSED, "TTFTp95WithinLimit", "ttft_p95 0.30s <= limit"),)
FAIL = (
    CheckResult(
        "ttft_p95",
        Verdict.FAILED,
        "TTFTp95AboveLimit",
        "ttft_p95 2.31s > limit 1.00s (stable 0.40s)",
        value=2.31,
        limit=1.0,
        stable=0.4,
    ),
)
NO_TRAFFIC = (CheckResult("traffic", Verdict.INCONCLUSIVE, "NoTraffic", "0 canary requests"),)
CRASH = CheckResult(
    "startup",
    Verdict.FAILED,
    "CrashLoopBackOff",
    "pod c-0 container runtime CrashLoopBackOff",
    at=T0,
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def tick(
    status: RolloutStatus,
    desired: str,
    now: datetime,
    spec: LLMDeploymentSpec = SPEC,
    **observed: object,
) -> Decision:
    """One call of decide, also proving that a restarted operator (status read back) agrees."""
    obs = Observed(desired_revision=desired, **observed)  # type: ignore[arg-type]
    decision = decide.decide(obs, status, spec, now)
    resumed = decide.decide(obs, state.from_status(state.to_status(status)), spec, now)
    assert resumed == decision
    assert state.from_status(state.to_status(decision.status)) == decision.status
    return decision


def canary_of(revision: str, spec: LLMDeploymentSpec = SPEC) -> RolloutStatus:
    """A status with stable r1 and `revision` just started as a canary."""
    adopted = tick(RolloutStatus(), "r1", T0, spec).status
    return tick(adopted, revision, T0, spec).status


def sizes(status: RolloutStatus, replicas: int = 2) -> dict[str, int]:
    return {w.revision: w.replicas for w in plan.workloads(status, replicas)}


def test_first_revision_is_adopted_as_stable_without_a_canary() -> None:
    d = tick(RolloutStatus(), "r1", T0)
    assert (d.action, d.status.phase, d.status.stable_revision) == (
        Action.ADOPT,
        RolloutPhase.STABLE,
        "r1",
    )
    assert sizes(d.status) == {"r1": 2}


def test_good_update_walks_every_step_then_promotes_and_drains() -> None:
    s = canary_of("r2")
    assert s.phase is RolloutPhase.CANARY
    assert s.message == "weight 10% -> 1 canary pod beside 2 stable (33% of pods)"
    assert sizes(s) == {"r1": 2, "r2": 1}
    s = tick(s, "r2", at(5), canary_ready=1).status
    assert s.step_ready_at == at(5)
    assert not plan.analysis_due(s, SPEC, at(14))
    assert plan.analysis_due(s, SPEC, at(15))
    d = tick(s, "r2", at(15), canary_ready=1, analysis=PASS)
    assert (d.action, d.verdict, d.status.step_passes) == (Action.WAIT, Verdict.PASSED, 1)
    assert tick(d.status, "r2", at(34), canary_ready=1).action is Action.WAIT  # pause not over
    d = tick(d.status, "r2", at(35), canary_ready=1)
    assert (d.action, d.status.step, d.status.weight) == (Action.ADVANCE, 1, 50)
    s = tick(d.status, "r2", at(36), canary_ready=1).status
    s = tick(s, "r2", at(46), canary_ready=1, analysis=PASS).status
    d = tick(s, "r2", at(66), canary_ready=1)
    assert (d.action, d.status.phase) == (Action.PROMOTE, RolloutPhase.PROMOTING)
    assert sizes(d.status) == {"r1": 2, "r2": 2}
    assert tick(d.status, "r2", at(67), canary_ready=1).action is Action.WAIT
    d = tick(d.status, "r2", at(70), canary_ready=2)
    assert (d.action, d.status.phase, d.status.stable_revision) == (
        Action.PROMOTED,
        RolloutPhase.DRAINING,
        "r2",
    )
    assert sizes(d.status) == {"r2": 2}
    assert d.event is not None and d.event.reason == "RolloutPromoted"
    assert tick(d.status, "r2", at(71), old_pods=2).action is Action.WAIT
    d = tick(d.status, "r2", at(80), old_pods=0)
    assert (d.action, d.status.phase, d.status.old_revision) == (
        Action.DRAINED,
        RolloutPhase.STABLE,
        None,
    )


def test_crashing_canary_is_rolled_back_at_once_and_not_retried() -> None:
    s = canary_of("r2")
    d = tick(s, "r2", at(3), startup=CRASH)
    assert (d.action, d.status.phase, d.status.canary_revision) == (
        Action.ROLLBACK,
        RolloutPhase.ROLLED_BACK,
        None,
    )
    assert d.status.rollback == state.Rollback(
        "r2", "r1", "CrashLoopBackOff", CRASH.message, at(3), signal_at=T0
    )
    assert state.to_status(d.status)["rollback"] == {
        "from": "r2",
        "to": "r1",
        "reason": "CrashLoopBackOff",
        "message": CRASH.message,
        "at": "2026-11-29T01:00:03Z",
        "signalAt": "2026-11-29T01:00:00Z",
    }
    assert d.event is not None and d.event.type == "Warning"
    assert sizes(d.status) == {"r1": 2}
    s = d.status
    for i in range(20):  # the spec still asks for r2: no flapping
        s = tick(s, "r2", at(10 + i * 10), canary_ready=1, analysis=PASS).status
        assert (s.phase, s.canary_revision, s.rejected_revision) == (
            RolloutPhase.ROLLED_BACK,
            None,
            "r2",
        )


def test_retry_annotation_tries_the_rejected_revision_again_once() -> None:
    s = tick(canary_of("r2"), "r2", at(3), startup=CRASH).status
    retry = (Command(CommandKind.RETRY, "t1"),)
    d = tick(s, "r2", at(10), commands=retry)
    assert (d.action, d.status.canary_revision, d.status.rejected_revision) == (
        Action.START,
        "r2",
        None,
    )
    assert d.status.handled_commands == {"retry": "t1"}
    assert state.pending_commands({"rollout.llm-operator.io/retry": "t1"}, d.status) == ()


def test_a_new_spec_after_a_rollback_goes_out_and_forgets_the_rejection() -> None:
    s = tick(canary_of("r2"), "r2", at(3), startup=CRASH).status
    d = tick(s, "r3", at(10))
    assert (d.action, d.status.canary_revision, d.status.rejected_revision) == (
        Action.START,
        "r3",
        None,
    )
    assert d.status.rollback is not None  # the last rollback stays visible


def test_metric_breach_rolls_back_on_the_analysis_after_failure_limit() -> None:
    s = tick(canary_of("r2"), "r2", at(1), canary_ready=1).status
    d = tick(s, "r2", at(11), canary_ready=1, analysis=FAIL)
    assert (d.action, d.status.failures, d.verdict) == (Action.WAIT, 1, Verdict.FAILED)
    d = tick(d.status, "r2", at(21), canary_ready=1, analysis=FAIL)
    assert d.action is Action.ROLLBACK
    assert d.status.rollback is not None
    assert d.status.rollback.reason == "TTFTp95AboveLimit"
    assert d.status.rollback.message == (
        "ttft_p95 2.31s > limit 1.00s (stable 0.40s) (failed analyses 2 > limit 1)"
    )


@pytest.mark.parametrize(
    ("policy", "action", "failures", "inconclusives"),
    [
        (InconclusivePolicy.HOLD, Action.WAIT, 0, 1),
        (InconclusivePolicy.PASS, Action.ADVANCE, 0, 0),
        (InconclusivePolicy.ROLLBACK, Action.WAIT, 1, 0),
    ],
)
def test_no_traffic_is_handled_by_the_inconclusive_policy(
    policy: InconclusivePolicy, action: Action, failures: int, inconclusives: int
) -> None:
    spec = make_spec(steps=((10, 0), (50, 0)), failure_limit=1, inconclusive=policy)
    s = tick(canary_of("r2", spec), "r2", at(1), spec, canary_ready=1).status
    d = tick(s, "r2", at(11), spec, canary_ready=1, analysis=NO_TRAFFIC)
    assert (d.action, d.status.failures, d.status.inconclusives) == (
        action,
        failures,
        inconclusives,
    )
    assert d.status.last_verdict == "Inconclusive"


def test_rollback_policy_rolls_back_a_canary_that_never_gets_traffic() -> None:
    spec = make_spec(failure_limit=1, inconclusive=InconclusivePolicy.ROLLBACK)
    s = tick(canary_of("r2", spec), "r2", at(1), spec, canary_ready=1).status
    s = tick(s, "r2", at(11), spec, canary_ready=1, analysis=NO_TRAFFIC).status
    d = tick(s, "r2", at(21), spec, canary_ready=1, analysis=NO_TRAFFIC)
    assert d.action is Action.ROLLBACK
    assert d.status.rollback is not None and d.status.rollback.reason == "NoTraffic"


MANUAL = make_spec(steps=((10, None), (100, 0)), failure_limit=1)


def test_pause_without_duration_holds_until_promote_annotation() -> None:
    s = tick(canary_of("r2", MANUAL), "r2", at(1), MANUAL, canary_ready=1).status
    d = tick(s, "r2", at(11), MANUAL, canary_ready=1, analysis=PASS)
    assert (d.action, d.status.phase) == (Action.HOLD, RolloutPhase.PAUSED)
    s = d.status
    for i in range(5):  # analysis goes on, the pause holds
        d = tick(s, "r2", at(21 + 10 * i), MANUAL, canary_ready=1, analysis=PASS)
        assert (d.action, d.status.phase) == (Action.WAIT, RolloutPhase.PAUSED)
        s = d.status
    promote = (Command(CommandKind.PROMOTE, "p1"),)
    d = tick(s, "r2", at(100), MANUAL, canary_ready=1, commands=promote)
    assert (d.action, d.status.step, d.status.weight) == (Action.ADVANCE, 1, 100)
    # The annotation is still there on the next look; it was handled already.
    again = state.pending_commands({"rollout.llm-operator.io/promote": "p1"}, d.status)
    assert again == ()


def test_failures_during_a_manual_pause_still_roll_back() -> None:
    s = tick(canary_of("r2", MANUAL), "r2", at(1), MANUAL, canary_ready=1).status
    s = tick(s, "r2", at(11), MANUAL, canary_ready=1, analysis=PASS).status
    s = tick(s, "r2", at(21), MANUAL, canary_ready=1, analysis=FAIL).status
    d = tick(s, "r2", at(31), MANUAL, canary_ready=1, analysis=FAIL)
    assert d.action is Action.ROLLBACK


def test_promote_full_skips_the_remaining_steps() -> None:
    d = tick(canary_of("r2"), "r2", at(1), commands=(Command(CommandKind.PROMOTE_FULL, "x"),))
    assert (d.action, d.status.phase) == (Action.PROMOTE, RolloutPhase.PROMOTING)


def test_abort_annotation_rolls_back_with_reason_manual_abort_once() -> None:
    d = tick(canary_of("r2"), "r2", at(1), commands=(Command(CommandKind.ABORT, "now"),))
    assert d.action is Action.ROLLBACK
    assert d.status.rollback is not None and d.status.rollback.reason == "ManualAbort"
    assert "rollout.llm-operator.io/abort=now" in d.status.rollback.message
    assert state.pending_commands({"rollout.llm-operator.io/abort": "now"}, d.status) == ()


def test_commands_that_do_not_apply_are_consumed_without_effect() -> None:
    s = tick(RolloutStatus(), "r1", T0).status
    d = tick(s, "r1", at(1), commands=(Command(CommandKind.ABORT, "a"),))
    assert (d.action, d.status.phase, d.status.handled_commands) == (
        Action.WAIT,
        RolloutPhase.STABLE,
        {"abort": "a"},
    )


def test_spec_changed_mid_rollout_restarts_the_canary_with_the_new_revision() -> None:
    s = tick(canary_of("r2"), "r2", at(1), canary_ready=1).status
    s = tick(s, "r2", at(11), canary_ready=1, analysis=FAIL).status
    d = tick(s, "r3", at(12))
    assert (d.action, d.status.canary_revision, d.status.step, d.status.failures) == (
        Action.START,
        "r3",
        0,
        0,
    )
    assert sizes(d.status) == {"r1": 2, "r3": 1}


def test_spec_reverted_to_stable_drops_the_canary() -> None:
    d = tick(canary_of("r2"), "r1", at(1))
    assert (d.action, d.status.phase, d.status.canary_revision) == (
        Action.REVERT,
        RolloutPhase.STABLE,
        None,
    )
    assert sizes(d.status) == {"r1": 2}


RECREATE = make_spec(strategy="Recreate", failure_limit=1)


def test_recreate_replaces_at_full_size_and_promotes_once_ready_and_passed() -> None:
    s = canary_of("r2", RECREATE)
    assert s.phase is RolloutPhase.RECREATING
    assert sizes(s) == {"r2": 2}  # nothing surges: the old pods go first
    s = tick(s, "r2", at(30), RECREATE, canary_ready=1).status
    assert s.step_ready_at is None
    s = tick(s, "r2", at(40), RECREATE, canary_ready=2).status
    d = tick(s, "r2", at(50), RECREATE, canary_ready=2, analysis=NO_TRAFFIC)
    assert (d.action, d.status.phase, d.status.stable_revision) == (
        Action.PROMOTED,
        RolloutPhase.STABLE,
        "r2",
    )


def test_recreate_that_crashes_brings_the_old_revision_back() -> None:
    d = tick(canary_of("r2", RECREATE), "r2", at(30), RECREATE, startup=CRASH)
    assert (d.action, d.status.phase) == (Action.ROLLBACK, RolloutPhase.ROLLED_BACK)
    assert sizes(d.status) == {"r1": 2}


def test_startup_failure_during_promotion_still_rolls_back() -> None:
    s = tick(
        canary_of("r2"), "r2", at(1), commands=(Command(CommandKind.PROMOTE_FULL, "x"),)
    ).status
    d = tick(s, "r2", at(5), canary_ready=1, startup=CRASH)
    assert (d.action, d.status.stable_revision) == (Action.ROLLBACK, "r1")


def test_steps_shortened_mid_rollout_promote_instead_of_crashing() -> None:
    s = tick(canary_of("r2"), "r2", at(1), canary_ready=1).status
    s = tick(s, "r2", at(11), canary_ready=1, analysis=PASS).status
    d = tick(s, "r2", at(40), canary_ready=1)
    assert d.status.step == 1
    s = tick(d.status, "r2", at(41), canary_ready=1).status
    one_step = make_spec(steps=((10, 30),), failure_limit=1)
    d = tick(s, "r2", at(51), one_step, canary_ready=1, analysis=PASS)
    assert (d.action, d.status.phase, d.verdict) == (
        Action.PROMOTE,
        RolloutPhase.PROMOTING,
        Verdict.PASSED,
    )


HOLDING = make_spec(steps=((10, 0), (50, 0)), failure_limit=1, progress_deadline_seconds=60)


def test_a_step_without_traffic_is_aborted_at_its_progress_deadline_naming_what_was_missing() -> (
    None
):
    s = tick(canary_of("r2", HOLDING), "r2", at(1), HOLDING, canary_ready=1).status
    for t in range(11, 61, 10):  # quiet windows: held, never conclusive
        d = tick(s, "r2", at(t), HOLDING, canary_ready=1, analysis=NO_TRAFFIC)
        assert d.action is Action.WAIT
        s = d.status
    d = tick(s, "r2", at(61), HOLDING, canary_ready=1, analysis=NO_TRAFFIC)
    assert d.action is Action.ROLLBACK
    assert d.status.rollback is not None
    assert d.status.rollback.reason == "ProgressDeadlineExceeded"
    assert "within 60s" in d.status.rollback.message
    assert "0 canary requests" in d.status.rollback.message
    assert d.event is not None and d.event.type == "Warning"


def test_without_abort_a_step_past_its_deadline_is_reported_stalled_once() -> None:
    spec = make_spec(
        steps=((10, 0), (50, 0)), progress_deadline_seconds=60, progress_deadline_abort=False
    )
    s = tick(canary_of("r2", spec), "r2", at(1), spec, canary_ready=1).status
    d = tick(s, "r2", at(61), spec, canary_ready=1, analysis=NO_TRAFFIC)
    assert (d.action, d.status.stalled, d.status.phase) == (Action.HOLD, True, RolloutPhase.CANARY)
    assert d.event is not None and d.event.reason == "RolloutStalled"
    again = tick(d.status, "r2", at(71), spec, canary_ready=1, analysis=NO_TRAFFIC)
    assert again.event is None and again.status.stalled
    moved = tick(again.status, "r2", at(81), spec, canary_ready=1, analysis=PASS)
    assert moved.action is Action.ADVANCE and not moved.status.stalled


def test_a_step_paused_for_a_manual_promote_has_no_deadline() -> None:
    spec = make_spec(steps=((10, None), (100, 0)), progress_deadline_seconds=60)
    s = tick(canary_of("r2", spec), "r2", at(1), spec, canary_ready=1).status
    s = tick(s, "r2", at(11), spec, canary_ready=1, analysis=PASS).status
    assert s.phase is RolloutPhase.PAUSED
    d = tick(s, "r2", at(500), spec, canary_ready=1, analysis=NO_TRAFFIC)
    assert d.action is not Action.ROLLBACK and d.status.phase is RolloutPhase.PAUSED


def test_the_status_reports_the_share_each_window_measured_next_to_the_weight() -> None:
    s = tick(canary_of("r2"), "r2", at(1), canary_ready=1).status
    d = tick(s, "r2", at(11), canary_ready=1, analysis=PASS, traffic=Traffic(24, 76))
    assert (d.status.observed_share, d.status.observed_requests) == (24, 100)
    assert "canary served 24% of 100 requests (weight 10%)" in d.status.message
    assert "far below" not in d.status.message
    quiet = tick(d.status, "r2", at(21), canary_ready=1, analysis=PASS, traffic=Traffic(0, 400))
    assert quiet.status.observed_share == 0
    assert "far below the weight" in quiet.status.message
    assert "weight 10% -> 1 canary pod beside 2 stable" in quiet.status.message


ZERO = make_spec(replicas=0, failure_limit=1)


def test_a_new_revision_at_replicas_0_is_the_stable_at_once_and_starts_no_pod() -> None:
    adopted = tick(RolloutStatus(), "r1", T0, ZERO).status
    d = tick(adopted, "r2", at(1), ZERO)
    assert (d.action, d.status.phase, d.status.stable_revision, d.status.canary_revision) == (
        Action.ADOPT,
        RolloutPhase.STABLE,
        "r2",
        None,
    )
    assert d.status.last_verdict == "Skipped"
    assert d.requeue_after is None  # nothing in flight
    assert d.event is not None and d.event.reason == "RolloutSkipped"
    assert "r1" in d.event.message and "no pods to judge" in d.event.message
    assert sizes(d.status, 0) == {"r2": 0}
    assert tick(d.status, "r2", at(2), ZERO).action is Action.WAIT  # and it stays settled
    assert sizes(d.status, 2) == {"r2": 2}  # scaled up later: that revision, as a Deployment


def test_scaled_to_0_mid_canary_the_canary_becomes_the_stable_without_its_pod() -> None:
    s = tick(canary_of("r2"), "r2", at(5), canary_ready=1).status
    assert sizes(s, 0) == {"r1": 0, "r2": 1}  # what the old code left running at replicas 0
    d = tick(s, "r2", at(6), ZERO, canary_ready=1)
    assert (d.action, d.status.phase, d.status.stable_revision) == (
        Action.ADOPT,
        RolloutPhase.STABLE,
        "r2",
    )
    assert (d.status.step_ready_at, d.status.step_passes) == (None, 0)
    assert sizes(d.status, 0) == {"r2": 0}


def test_a_rejected_revision_stays_rejected_at_replicas_0() -> None:
    s = tick(canary_of("r2"), "r2", at(3), startup=CRASH).status
    d = tick(s, "r2", at(10), ZERO)
    assert (d.status.phase, d.status.stable_revision, d.status.rejected_revision) == (
        RolloutPhase.ROLLED_BACK,
        "r1",
        "r2",
    )
    assert sizes(d.status, 0) == {"r1": 0}
