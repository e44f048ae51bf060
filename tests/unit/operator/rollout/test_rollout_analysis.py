"""Metric and smoke checks: verdicts and the messages a user reads in a rollback."""

from __future__ import annotations

import pytest
from llm_operator import spec
from llm_operator.rollout import analysis, promtext
from llm_operator.rollout.analysis import CheckResult, SmokeReply, Verdict, WindowMetrics

pytestmark = pytest.mark.unit


def _window(
    requests: float = 100, errors: float = 0, ttft: float | None = 0.4, tpot: float | None = 0.05
) -> WindowMetrics:
    ratio = None if requests <= 0 else errors / requests
    values = {"error_ratio": ratio, "ttft_p95": ttft, "tpot_p95": tpot}
    return WindowMetrics(requests=requests, errors=errors, values=values)


_RELATIVE = {"max_error_ratio_increase", "max_ttft_p95_ratio", "max_tpot_p95_ratio"}


def _rules(min_requests: int = 1, **limits: float) -> spec.AnalysisSpec:
    """An analysis spec from limits by name (absolute or relative to stable)."""
    absolute = {k: v for k, v in limits.items() if k not in _RELATIVE}
    relative = {k: v for k, v in limits.items() if k in _RELATIVE}
    return spec.AnalysisSpec(
        min_requests=min_requests,
        metrics=spec.MetricLimits(**absolute),
        relative_to_stable=spec.RelativeLimits(**relative),
    )


def _by_check(results: tuple[CheckResult, ...]) -> dict[str, list[CheckResult]]:
    out: dict[str, list[CheckResult]] = {}
    for r in results:
        out.setdefault(r.check, []).append(r)
    return out


def test_slow_canary_fails_with_values_and_stable_in_the_message() -> None:
    results = analysis.check_metrics(
        canary=_window(ttft=2.31),
        stable=_window(ttft=0.40),
        analysis=_rules(1, max_ttft_p95_seconds=1.0),
    )
    (ttft,) = results
    assert ttft.verdict is Verdict.FAILED
    assert ttft.reason == "TTFTp95AboveLimit"
    assert ttft.message == "ttft_p95 2.31s > limit 1.00s (stable 0.40s)"
    assert (ttft.value, ttft.limit, ttft.stable) == (2.31, 1.0, 0.40)


def test_relative_limit_compares_against_stable_over_the_same_window() -> None:
    limits = _rules(max_tpot_p95_ratio=1.5, max_error_ratio_increase=0.02)
    results = _by_check(
        analysis.check_metrics(
            canary=_window(errors=5, tpot=0.09),
            stable=_window(errors=1, tpot=0.05),
            analysis=limits,
        )
    )
    (tpot,) = results["tpot_p95"]
    assert tpot.verdict is Verdict.FAILED
    assert tpot.reason == "TPOTp95AboveStable"
    assert tpot.message == "tpot_p95 90.0ms > 1.5x stable 50.0ms = 75.0ms"
    (errors,) = results["error_ratio"]
    assert errors.verdict is Verdict.FAILED
    assert errors.limit == pytest.approx(0.03)
    assert "error_ratio 5.0% > stable 1.0% + 2.0%" in errors.message


def test_ratio_to_a_stable_of_zero_is_not_applied_and_absolute_still_is() -> None:
    results = analysis.check_metrics(
        canary=_window(errors=1),
        stable=_window(errors=0),
        analysis=_rules(1, max_error_ratio=0.05, max_tpot_p95_ratio=2.0),
    )
    assert [(r.check, r.verdict) for r in results] == [
        ("error_ratio", Verdict.PASSED),
        ("tpot_p95", Verdict.PASSED),
    ]


def test_no_canary_traffic_is_inconclusive_not_passed() -> None:
    (result,) = analysis.check_metrics(
        canary=_window(requests=0, ttft=None, tpot=None),
        stable=_window(),
        analysis=_rules(5, max_error_ratio=0.01),
    )
    assert (result.check, result.verdict, result.reason) == (
        "traffic",
        Verdict.INCONCLUSIVE,
        "NoTraffic",
    )


def test_stable_without_traffic_leaves_only_the_absolute_limits() -> None:
    results = analysis.check_metrics(
        canary=_window(ttft=0.9),
        stable=_window(requests=0, ttft=None),
        analysis=_rules(1, max_ttft_p95_seconds=1.0, max_ttft_p95_ratio=1.1),
    )
    assert [(r.reason, r.stable) for r in results] == [("TTFTp95WithinLimit", None)]


def test_histogram_without_observations_is_inconclusive() -> None:
    (result,) = analysis.check_metrics(
        canary=_window(ttft=None),
        stable=None,
        analysis=_rules(1, max_ttft_p95_seconds=1.0),
    )
    assert (result.verdict, result.reason) == (Verdict.INCONCLUSIVE, "NoObservations")


PROMPT = spec.SmokePrompt(prompt="What is the capital of France?", expect="(?i)paris", timeout="5s")


@pytest.mark.parametrize(
    ("reply", "verdict", "reason"),
    [
        (
            SmokeReply("p1", 0, "The capital of France is Paris.", 1.2),
            Verdict.PASSED,
            "SmokePromptPassed",
        ),
        (SmokeReply("p1", 0, "I like turtles.", 1.2), Verdict.FAILED, "SmokePromptMismatch"),
        (SmokeReply("p1", 0, "Paris", 6.0), Verdict.FAILED, "SmokePromptTooSlow"),
        (
            SmokeReply("p1", 0, None, 0.1, error="UNAVAILABLE: connection refused"),
            Verdict.FAILED,
            "SmokePromptError",
        ),
    ],
)
def test_smoke_reply_is_judged_by_error_then_latency_then_regex(
    reply: SmokeReply, verdict: Verdict, reason: str
) -> None:
    result = analysis.check_smoke_reply(PROMPT, reply)
    assert (result.verdict, result.reason, result.pod) == (verdict, reason, "p1")


def test_smoke_mismatch_message_quotes_the_reply() -> None:
    result = analysis.check_smoke_reply(PROMPT, SmokeReply("llm-b-0", 0, "I like\nturtles.", 1.0))
    assert result.message == (
        "pod llm-b-0 smoke prompt 0 over grpc answered 'I like turtles.', no match for /(?i)paris/"
    )


def test_a_failed_smoke_message_names_the_protocol_that_failed() -> None:
    http = PROMPT.model_copy(update={"protocol": spec.SmokeProtocol.HTTP})
    result = analysis.check_smoke_reply(http, SmokeReply("llm-b-0", 1, None, 0.1, "HTTP 404: no"))
    assert result.message == "pod llm-b-0 smoke prompt 1 over http failed: HTTP 404: no"


def test_invalid_regex_fails_instead_of_crashing() -> None:
    # The parser refuses it now (spec's RE2 check); one stored before that still must not crash.
    bad = spec.SmokePrompt.model_construct(prompt="x", expect="(", timeout="5s")
    result = analysis.check_smoke_reply(bad, SmokeReply("p", 0, "x", 0.1))
    assert result.reason == "SmokePromptInvalid"


def test_smoke_passed_pods_excludes_a_pod_with_any_failure() -> None:
    results = analysis.check_smoke(
        [PROMPT, spec.SmokePrompt(prompt="2+2?", expect="4")],
        [
            SmokeReply("a", 0, "Paris", 1.0),
            SmokeReply("a", 1, "4", 1.0),
            SmokeReply("b", 0, "Paris", 1.0),
            SmokeReply("b", 1, "five", 1.0),
            SmokeReply("c", 7, "ignored: no such prompt", 1.0),
        ],
    )
    assert len(results) == 4
    assert analysis.smoke_passed_pods(results) == {"a"}


def test_overall_verdict_failed_beats_inconclusive_beats_passed() -> None:
    def r(v: Verdict) -> CheckResult:
        return CheckResult("x", v, "R", "m")

    assert analysis.overall([]) is Verdict.PASSED
    assert analysis.overall([r(Verdict.PASSED), r(Verdict.INCONCLUSIVE)]) is Verdict.INCONCLUSIVE
    assert analysis.overall([r(Verdict.INCONCLUSIVE), r(Verdict.FAILED)]) is Verdict.FAILED


def test_without_metric_limits_traffic_does_not_matter() -> None:
    results = analysis.check_metrics(
        canary=_window(requests=0),
        stable=None,
        analysis=_rules(1),
    )
    assert results == ()


def test_evaluate_combines_metric_limits_and_smoke_replies_of_one_window() -> None:
    canary = promtext.Scrape(
        {
            ("llm_runtime_requests_total", (("code", "OK"),)): 9.0,
            ("llm_runtime_requests_total", (("code", "INTERNAL"),)): 1.0,
        }
    )
    rules = spec.AnalysisSpec(
        metrics=spec.MetricLimits(max_error_ratio=0.05), smoke_prompts=(PROMPT,)
    )
    results = analysis.evaluate(
        canary=canary, stable=None, replies=[SmokeReply("p", 0, "Paris", 1.0)], analysis=rules
    )
    assert [(r.check, r.verdict) for r in results] == [
        ("error_ratio", Verdict.FAILED),
        ("smoke", Verdict.PASSED),
    ]
    assert results[0].message == "error_ratio 10.0% > limit 5.0%"
