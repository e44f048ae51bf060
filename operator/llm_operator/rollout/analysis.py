"""Canary checks: metrics against absolute and stable-relative limits, and smoke prompt replies.

Each check returns a `CheckResult` whose message a user can read in a condition or Event, e.g.
"ttft_p95 2.31s > limit 1.00s (stable 0.40s)". Startup checks live in `startup.py`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from llm_operator.rollout import inputs, promtext

TTFT_HISTOGRAM = "llm_runtime_time_to_first_token_seconds"
TPOT_HISTOGRAM = "llm_runtime_time_per_output_token_seconds"
REQUESTS_COUNTER = "llm_runtime_requests_total"
QUANTILE = 0.95


class Verdict(enum.StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome, with the values seen so a rollback can say why."""

    check: str  # error_ratio, ttft_p95, tpot_p95, traffic, smoke, startup
    verdict: Verdict
    reason: str  # CamelCase, usable as a condition/Event reason
    message: str
    value: float | None = None
    limit: float | None = None
    stable: float | None = None
    at: datetime | None = None  # when the failing signal happened (startup checks)
    pod: str | None = None  # the pod this result is about (smoke checks)


@dataclass(frozen=True)
class WindowMetrics:
    """What one revision's pods did during one analysis window."""

    requests: float
    errors: float
    ttft_p95: float | None
    tpot_p95: float | None

    @property
    def error_ratio(self) -> float | None:
        return None if self.requests <= 0 else self.errors / self.requests


def window_metrics(window: promtext.Scrape) -> WindowMetrics:
    """Reduces a summed window delta to the numbers the limits speak about."""
    ratio = promtext.error_ratio(window, metric=REQUESTS_COUNTER)
    return WindowMetrics(
        requests=ratio.total,
        errors=ratio.errors,
        ttft_p95=promtext.histogram_quantile(QUANTILE, window, TTFT_HISTOGRAM),
        tpot_p95=promtext.histogram_quantile(QUANTILE, window, TPOT_HISTOGRAM),
    )


def _fmt(check: str, value: float) -> str:
    """Percent for ratios; seconds with two decimals, or milliseconds below 0.1 s (TPOT)."""
    if check == "error_ratio":
        return f"{value:.1%}"
    return f"{value:.2f}s" if abs(value) >= 0.1 else f"{value * 1000:.1f}ms"


def _stable_note(check: str, stable: float | None) -> str:
    return "" if stable is None else f" (stable {_fmt(check, stable)})"


def _absolute(check: str, value: float, limit: float, stable: float | None) -> CheckResult:
    failed = value > limit
    sign = ">" if failed else "<="
    return CheckResult(
        check=check,
        verdict=Verdict.FAILED if failed else Verdict.PASSED,
        reason=_reason(check, failed),
        message=f"{check} {_fmt(check, value)} {sign} limit {_fmt(check, limit)}"
        + _stable_note(check, stable),
        value=value,
        limit=limit,
        stable=stable,
    )


def _relative(
    check: str, value: float, stable: float, *, ratio: float | None, increase: float | None
) -> CheckResult:
    """Canary against stable: `stable x ratio` for latencies, `stable + increase` for errors."""
    if ratio is not None:
        limit, how = stable * ratio, f"{ratio:g}x stable {_fmt(check, stable)}"
    else:
        assert increase is not None
        limit, how = stable + increase, f"stable {_fmt(check, stable)} + {_fmt(check, increase)}"
    failed = value > limit
    sign = ">" if failed else "<="
    return CheckResult(
        check=check,
        verdict=Verdict.FAILED if failed else Verdict.PASSED,
        reason=_reason(check, failed, relative=True),
        message=f"{check} {_fmt(check, value)} {sign} {how} = {_fmt(check, limit)}",
        value=value,
        limit=limit,
        stable=stable,
    )


_REASON_STEM = {"error_ratio": "ErrorRatio", "ttft_p95": "TTFTp95", "tpot_p95": "TPOTp95"}


def _reason(check: str, failed: bool, *, relative: bool = False) -> str:
    stem = _REASON_STEM[check]
    if not failed:
        return f"{stem}WithinLimit"
    return f"{stem}AboveStable" if relative else f"{stem}AboveLimit"


def _one_metric(
    check: str,
    value: float | None,
    stable: float | None,
    *,
    absolute: float | None,
    ratio: float | None = None,
    increase: float | None = None,
) -> list[CheckResult]:
    """Absolute then relative; the relative part needs a stable value (and > 0 for a ratio)."""
    if absolute is None and ratio is None and increase is None:
        return []
    if value is None:
        return [
            CheckResult(check, Verdict.INCONCLUSIVE, "NoObservations", f"{check}: no observations")
        ]
    results = [] if absolute is None else [_absolute(check, value, absolute, stable)]
    if stable is not None and (increase is not None or (ratio is not None and stable > 0)):
        results.append(_relative(check, value, stable, ratio=ratio, increase=increase))
    return results


def check_metrics(
    *,
    canary: WindowMetrics,
    stable: WindowMetrics | None,
    limits: inputs.MetricLimits,
    min_requests: int,
) -> tuple[CheckResult, ...]:
    """All configured metric limits for one window; too little canary traffic is inconclusive."""
    if limits == inputs.MetricLimits():
        return ()
    if canary.requests < max(min_requests, 1):
        return (
            CheckResult(
                check="traffic",
                verdict=Verdict.INCONCLUSIVE,
                reason="NoTraffic",
                message=f"{canary.requests:g} canary requests in the window, need >= {max(min_requests, 1)}",
                value=canary.requests,
                limit=float(max(min_requests, 1)),
            ),
        )
    s = stable if stable is not None and stable.requests > 0 else None
    return tuple(
        _one_metric(
            "error_ratio",
            canary.error_ratio,
            None if s is None else s.error_ratio,
            absolute=limits.max_error_ratio,
            increase=limits.max_error_ratio_increase,
        )
        + _one_metric(
            "ttft_p95",
            canary.ttft_p95,
            None if s is None else s.ttft_p95,
            absolute=limits.max_ttft_p95_seconds,
            ratio=limits.max_ttft_p95_ratio,
        )
        + _one_metric(
            "tpot_p95",
            canary.tpot_p95,
            None if s is None else s.tpot_p95,
            absolute=limits.max_tpot_p95_seconds,
            ratio=limits.max_tpot_p95_ratio,
        )
    )


@dataclass(frozen=True)
class SmokeReply:
    """What one canary pod answered to smoke prompt number `index` (or the gRPC error)."""

    pod: str
    index: int
    text: str | None
    latency_seconds: float
    error: str | None = None


def _excerpt(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def check_smoke_reply(prompt: inputs.SmokePrompt, reply: SmokeReply) -> CheckResult:
    """Error, then latency budget, then the expected regex (searched, not fully matched)."""
    where = f"pod {reply.pod} smoke prompt {reply.index}"

    def result(verdict: Verdict, reason: str, message: str) -> CheckResult:
        return CheckResult(
            "smoke",
            verdict,
            reason,
            message,
            value=reply.latency_seconds,
            limit=prompt.timeout_seconds,
            pod=reply.pod,
        )

    if reply.error is not None or reply.text is None:
        return result(Verdict.FAILED, "SmokePromptError", f"{where} failed: {reply.error}")
    if reply.latency_seconds > prompt.timeout_seconds:
        return result(
            Verdict.FAILED,
            "SmokePromptTooSlow",
            f"{where} took {reply.latency_seconds:.2f}s > budget {prompt.timeout_seconds:.2f}s",
        )
    try:
        matched = re.search(prompt.expect, reply.text) is not None
    except re.error as exc:
        return result(Verdict.FAILED, "SmokePromptInvalid", f"{where}: bad regex: {exc}")
    if not matched:
        return result(
            Verdict.FAILED,
            "SmokePromptMismatch",
            f"{where} answered {_excerpt(reply.text)!r}, no match for /{prompt.expect}/",
        )
    return result(
        Verdict.PASSED, "SmokePromptPassed", f"{where} matched in {reply.latency_seconds:.2f}s"
    )


def check_smoke(
    prompts: Sequence[inputs.SmokePrompt], replies: Iterable[SmokeReply]
) -> tuple[CheckResult, ...]:
    """One result per reply; a reply to a prompt index that no longer exists is ignored."""
    return tuple(
        check_smoke_reply(prompts[r.index], r) for r in replies if 0 <= r.index < len(prompts)
    )


def overall(results: Iterable[CheckResult]) -> Verdict:
    """Any failure fails; otherwise anything inconclusive is inconclusive; otherwise passed."""
    verdicts = {r.verdict for r in results}
    if Verdict.FAILED in verdicts:
        return Verdict.FAILED
    if Verdict.INCONCLUSIVE in verdicts:
        return Verdict.INCONCLUSIVE
    return Verdict.PASSED


def first_failure(results: Iterable[CheckResult]) -> CheckResult | None:
    """The failure to name in the rollback: the earliest signal, else the first listed."""
    failed = [r for r in results if r.verdict is Verdict.FAILED]
    timed = [(r.at, i) for i, r in enumerate(failed) if r.at is not None]
    if timed:
        return failed[min(timed)[1]]
    return failed[0] if failed else None


def summary(results: Sequence[CheckResult]) -> str:
    """One line for status.lastVerdictMessage: failures first, then the rest."""
    ordered = sorted(results, key=lambda r: (r.verdict is not Verdict.FAILED, r.check))
    return "; ".join(r.message for r in ordered) or "no checks configured"


def smoke_passed_pods(results: Iterable[CheckResult]) -> frozenset[str]:
    """Pods whose every smoke result in `results` passed (they need not be smoked again)."""
    smoke = [r for r in results if r.check == "smoke" and r.pod is not None]
    failed = {r.pod for r in smoke if r.verdict is not Verdict.PASSED}
    return frozenset(r.pod for r in smoke if r.pod is not None and r.pod not in failed)


def evaluate(
    *,
    canary: promtext.Scrape,
    stable: promtext.Scrape | None,
    replies: Iterable[SmokeReply],
    spec: inputs.AnalysisSpec,
) -> tuple[CheckResult, ...]:
    """Everything one closed window says: metric limits on the summed deltas, then smoke replies.

    `canary`/`stable` are `promtext.aggregate` of each revision's per-pod window deltas.
    """
    metrics = check_metrics(
        canary=window_metrics(canary),
        stable=None if stable is None else window_metrics(stable),
        limits=spec.limits,
        min_requests=spec.min_requests,
    )
    return metrics + check_smoke(spec.smoke_prompts, replies)
