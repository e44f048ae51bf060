"""A stable that becomes unhealthy during a canary is reported (status.rollout.message, a
StableUnhealthy Event once) and holds the canary where it is: no promotion, no failure counted
against the canary, no progress-deadline abort; once the stable recovers the canary goes on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from llm_operator.rollout import decide, guards, promtext, state
from llm_operator.rollout.analysis import CheckResult, Verdict
from llm_operator.rollout.decide import Action, Observed
from llm_operator.rollout.state import RolloutPhase
from llm_operator.spec import LLMDeploymentSpec
from llm_runtime.api import contract

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)
SPEC = LLMDeploymentSpec.model_validate(
    {
        "model": {"name": "m", "source": "builtin://m"},
        "replicas": 2,
        "rollout": {
            "progressDeadlineSeconds": 60,
            "progressDeadlineAbort": True,
            "steps": [{"weight": 50, "pause": {"duration": "10s"}}],
            "analysis": {"interval": "10s", "failureLimit": 0, "metrics": {"maxErrorRatio": 0.05}},
        },
    }
)
PASS = CheckResult("error_ratio", Verdict.PASSED, "ErrorRatioWithinLimit", "error_ratio 0.0%")
FAIL = CheckResult("error_ratio", Verdict.FAILED, "ErrorRatioAboveLimit", "error_ratio 40.0%")


def _pod(name: str, *, ready: bool = True, crash: bool = False) -> dict[str, Any]:
    cs: dict[str, Any] = {"name": "runtime", "restartCount": 3 if crash else 0}
    if crash:
        cs["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [{"type": "Ready", "status": str(ready)}],
            "containerStatuses": [cs],
        },
    }


def _requests(ok: float, internal: float) -> promtext.Scrape:
    m = contract.METRIC_REQUESTS
    return promtext.Scrape({(m, (("code", "OK"),)): ok, (m, (("code", "INTERNAL"),)): internal})


def _health(
    pods: list[dict[str, Any]], window: promtext.Scrape | None = None
) -> CheckResult | None:
    a = SPEC.rollout.analysis
    return guards.stable_health(pods=pods, expected=2, window=window, analysis_spec=a, now=T0)


def test_a_healthy_stable_says_nothing() -> None:
    assert _health([_pod("s0"), _pod("s1")], _requests(100, 1)) is None


@pytest.mark.parametrize(
    ("pods", "window", "says"),
    [
        ([_pod("s0"), _pod("s1", ready=False)], None, "1/2 stable pods Ready"),
        ([_pod("s0"), _pod("s1", crash=True, ready=False)], None, "CrashLoopBackOff"),
        ([_pod("s0"), _pod("s1")], _requests(80, 20), "stable error ratio 20.0% > limit 5.0%"),
    ],
)
def test_an_unhealthy_stable_is_named(
    pods: list[dict[str, Any]], window: promtext.Scrape | None, says: str
) -> None:
    result = _health(pods, window)
    assert result is not None and result.reason == guards.STABLE_UNHEALTHY
    assert says in result.message


def _ready_canary() -> state.RolloutStatus:
    s = decide.decide(Observed("r1"), state.RolloutStatus(), SPEC, T0).status
    s = decide.decide(Observed("r2"), s, SPEC, T0).status
    return decide.decide(Observed("r2", canary_ready=1), s, SPEC, T0).status


def _tick(s: state.RolloutStatus, seconds: float, *results: CheckResult) -> decide.Decision:
    obs = Observed("r2", canary_ready=1, analysis=results or None)
    d = decide.decide(obs, s, SPEC, T0 + timedelta(seconds=seconds))
    assert state.from_status(state.to_status(d.status)) == d.status  # survives a restart
    return d


def test_an_unhealthy_stable_holds_the_canary_without_blaming_it_then_lets_it_go() -> None:
    sick = _health([_pod("s0"), _pod("s1", crash=True, ready=False)])
    assert sick is not None
    s = _ready_canary()
    d = _tick(s, 10, PASS, sick)
    assert d.action is Action.WAIT and d.status.phase is RolloutPhase.CANARY
    assert d.event is not None and (d.event.type, d.event.reason) == ("Warning", "StableUnhealthy")
    assert "stable unhealthy" in d.status.message and "promotion held" in d.status.message
    assert (d.status.step_passes, d.status.failures) == (0, 0)
    d = _tick(d.status, 20, FAIL, sick)  # the canary's failure during it is not booked either
    assert d.action is Action.WAIT and d.event is None and d.status.failures == 0
    d = _tick(d.status, 200)  # far past the progress deadline: no abort while the stable is sick
    assert d.action is Action.WAIT and d.status.phase is RolloutPhase.CANARY
    d = _tick(d.status, 210, PASS)  # the stable recovered: the window counts, the step goes on
    assert d.action is Action.PROMOTE


def test_a_passed_step_is_not_promoted_while_the_stable_is_unhealthy() -> None:
    sick = _health([_pod("s0", ready=False), _pod("s1", ready=False)])
    assert sick is not None
    d = _tick(_ready_canary(), 5, PASS)
    assert (d.action, d.status.step_passes) == (Action.WAIT, 1)  # the 10 s pause is not over
    d = _tick(d.status, 8, PASS, sick)
    d = _tick(d.status, 30)  # pause over, one pass booked, but the stable is sick: hold
    assert d.action is Action.WAIT and d.status.phase is RolloutPhase.CANARY
    assert _tick(d.status, 40, PASS).action is Action.PROMOTE  # recovered: it goes on
