"""What a user sees: the Degraded condition, the phase hint and the operator's counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from llm_operator import spec as api
from llm_operator.metrics import RolloutMetrics
from llm_operator.rollout import decide, report, state
from llm_operator.rollout.analysis import CheckResult, Verdict
from llm_operator.rollout.state import Rollback, RolloutPhase, RolloutStatus
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)
ROLLED_BACK = RolloutStatus(
    phase=RolloutPhase.ROLLED_BACK,
    stable_revision="r1",
    rejected_revision="r2",
    rollback=Rollback("r2", "r1", "OOMKilled", "pod c-0 container runtime OOMKilled", T0),
)


def test_rolled_back_status_reads_degraded_with_the_check_and_values() -> None:
    condition = report.degraded_condition(ROLLED_BACK, observed_generation=4, now=T0)
    assert condition["status"] == "True"
    assert condition["reason"] == "OOMKilled"
    assert condition["message"].startswith(
        "revision r2 rolled back to r1: pod c-0 container runtime OOMKilled."
    )
    assert (condition["observedGeneration"], condition["lastTransitionTime"]) == (
        4,
        "2026-11-29T01:00:00Z",
    )
    assert report.phase_hint(ROLLED_BACK) == "Degraded"


def test_transition_time_moves_only_when_the_condition_flips() -> None:
    first = report.degraded_condition(ROLLED_BACK, observed_generation=4, now=T0)
    later = report.degraded_condition(
        ROLLED_BACK, observed_generation=4, now=T0 + timedelta(minutes=5), previous=first
    )
    assert later["lastTransitionTime"] == first["lastTransitionTime"]
    healed = report.degraded_condition(
        RolloutStatus(stable_revision="r1"),
        observed_generation=5,
        now=T0 + timedelta(minutes=6),
        previous=later,
    )
    assert (healed["status"], healed["reason"], healed["lastTransitionTime"]) == (
        "False",
        "AsExpected",
        "2026-11-29T01:06:00Z",
    )


def test_printer_columns_point_at_fields_the_status_has() -> None:
    rollout = state.to_status(ROLLED_BACK)["rollout"]
    for column in report.PRINTER_COLUMNS:
        assert str(column["jsonPath"]).removeprefix(".status.rollout.") in rollout


def test_metrics_count_rollouts_rollbacks_by_reason_and_analyses() -> None:
    registry = CollectorRegistry()
    metrics = RolloutMetrics(registry)
    spec = api.LLMDeploymentSpec.model_validate(
        {"model": {"name": "m", "source": "builtin://m"}, "replicas": 1}
    )
    status = decide.decide(decide.Observed("r1"), RolloutStatus(), spec, T0).status
    start = decide.decide(decide.Observed("r2"), status, spec, T0)
    metrics.record(start, strategy="Canary")
    crash = CheckResult("startup", Verdict.FAILED, "CrashLoopBackOff", "crash", at=T0)
    rollback = decide.decide(
        decide.Observed("r2", startup=crash), start.status, spec, T0 + timedelta(seconds=4)
    )
    metrics.record(rollback, strategy="Canary")
    window = decide.Decision(decide.Action.WAIT, start.status, "", verdict=Verdict.INCONCLUSIVE)
    metrics.record(window, strategy="Canary")
    value = registry.get_sample_value
    assert value("llm_operator_rollouts_total", {"strategy": "Canary"}) == 1
    assert value("llm_operator_rollout_rollbacks_total", {"reason": "CrashLoopBackOff"}) == 1
    assert value("llm_operator_rollout_analyses_total", {"verdict": "Inconclusive"}) == 1
    assert value(
        "llm_operator_rollout_rollback_delay_seconds_sum", {"reason": "CrashLoopBackOff"}
    ) == pytest.approx(4.0)
