"""Canary checks: metrics against absolute and stable-relative limits, and smoke prompt replies.

Each check returns a `CheckResult` whose message a user can read in a condition or Event, e.g.
"ttft_p95 2.31s > limit 1.00s (stable 0.40s)". Startup checks live in `startup.py`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from llm_runtime.api import contract

from llm_operator import spec
from llm_operator.rollout import expect, promtext

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
    """What one revision's pods did during one analysis window: the traffic, and each metric
    check's value (by check name; None when the window holds no observation of it)."""

    requests: float
    errors: float
    values: Mapping[str, float | None] = field(default_factory=dict)

    def value(self, check: str) -> float | None:
        return self.values.get(check)

    @property
    def ttft_p95(self) -> float | None:
        return self.value("ttft_p95")

    @property
    def tpot_p95(self) -> float | None:
        return self.value("tpot_p95")


@dataclass(frozen=True)
class MetricCheck:
    """One metric the canary is judged on: how to measure it in a window, which limits of the
    spec apply to it, and how to print it. Adding a check is one entry in `METRIC_CHECKS`."""

    name: str  # e.g. ttft_p95; also the `check` of its results
    reason_stem: str  # CamelCase stem of its reasons: <stem>AboveLimit, <stem>AboveStable
    measure: Callable[[promtext.Scrape], float | None]
    absolute: Callable[[spec.AnalysisSpec], float | None]
    ratio: Callable[[spec.AnalysisSpec], float | None] = lambda _a: None  # canary <= stable x r
    increase: Callable[[spec.AnalysisSpec], float | None] = lambda _a: None  # <= stable + i
    percent: bool = False  # printed as a percentage (else seconds)


def _error_ratio(window: promtext.Scrape) -> float | None:
    ratio = promtext.error_ratio(window, metric=contract.METRIC_REQUESTS)
    return None if ratio.total <= 0 else ratio.errors / ratio.total


METRIC_CHECKS: tuple[MetricCheck, ...] = (
    MetricCheck(
        name="error_ratio",
        reason_stem="ErrorRatio",
        measure=_error_ratio,
        absolute=lambda a: a.metrics.max_error_ratio,
        increase=lambda a: a.relative_to_stable.max_error_ratio_increase,
        percent=True,
    ),
    MetricCheck(
        name="ttft_p95",
        reason_stem="TTFTp95",
        measure=lambda w: promtext.histogram_quantile(QUANTILE, w, contract.METRIC_TTFT_SECONDS),
        absolute=lambda a: a.metrics.max_ttft_p95_seconds,
        ratio=lambda a: a.relative_to_stable.max_ttft_p95_ratio,
    ),
    MetricCheck(
        name="tpot_p95",
        reason_stem="TPOTp95",
        measure=lambda w: promtext.histogram_quantile(QUANTILE, w, contract.METRIC_TPOT_SECONDS),
        absolute=lambda a: a.metrics.max_tpot_p95_seconds,
        ratio=lambda a: a.relative_to_stable.max_tpot_p95_ratio,
    ),
)
_BY_NAME = {c.name: c for c in METRIC_CHECKS}


def window_metrics(window: promtext.Scrape) -> WindowMetrics:
    """Reduces a summed window delta to the traffic and every check's value."""
    ratio = promtext.error_ratio(window, metric=contract.METRIC_REQUESTS)
    return WindowMetrics(
        requests=ratio.total,
        errors=ratio.errors,
        values={c.name: c.measure(window) for c in METRIC_CHECKS},
    )


def _fmt(check: str, value: float) -> str:
    """Percent for ratios; seconds with two decimals, or milliseconds below 0.1 s (TPOT)."""
    known = _BY_NAME.get(check)
    if known is not None and known.percent:
        return f"{value:.1%}"
    return f"{value:.2f}s" if abs(value) >= 0.1 else f"{value * 1000:.1f}ms"


def _stable_note(check: str, stable: float | None) -> str:
    return "" if stable is None else f" (stable {_fmt(check, stable)})"


def _absolute(c: MetricCheck, value: float, limit: float, stable: float | None) -> CheckResult:
    failed = value > limit
    sign = ">" if failed else "<="
    return CheckResult(
        check=c.name,
        verdict=Verdict.FAILED if failed else Verdict.PASSED,
        reason=_reason(c, failed),
        message=f"{c.name} {_fmt(c.name, value)} {sign} limit {_fmt(c.name, limit)}"
        + _stable_note(c.name, stable),
        value=value,
        limit=limit,
        stable=stable,
    )


def _relative(
    c: MetricCheck, value: float, stable: float, *, ratio: float | None, increase: float | None
) -> CheckResult:
    """Canary against stable: `stable x ratio` for latencies, `stable + increase` for errors."""
    name = c.name
    if ratio is not None:
        limit, how = stable * ratio, f"{ratio:g}x stable {_fmt(name, stable)}"
    else:
        assert increase is not None
        limit, how = stable + increase, f"stable {_fmt(name, stable)} + {_fmt(name, increase)}"
    failed = value > limit
    sign = ">" if failed else "<="
    return CheckResult(
        check=name,
        verdict=Verdict.FAILED if failed else Verdict.PASSED,
        reason=_reason(c, failed, relative=True),
        message=f"{name} {_fmt(name, value)} {sign} {how} = {_fmt(name, limit)}",
        value=value,
        limit=limit,
        stable=stable,
    )


def _reason(c: MetricCheck, failed: bool, *, relative: bool = False) -> str:
    if not failed:
        return f"{c.reason_stem}WithinLimit"
    return f"{c.reason_stem}AboveStable" if relative else f"{c.reason_stem}AboveLimit"


def _configured(c: MetricCheck, a: spec.AnalysisSpec) -> bool:
    return any(x is not None for x in (c.absolute(a), c.ratio(a), c.increase(a)))


def _one_metric(
    c: MetricCheck, canary: WindowMetrics, stable: WindowMetrics | None, a: spec.AnalysisSpec
) -> list[CheckResult]:
    """Absolute then relative; the relative part needs a stable value (and > 0 for a ratio)."""
    if not _configured(c, a):
        return []
    value = canary.value(c.name)
    base = None if stable is None else stable.value(c.name)
    if value is None:
        return [
            CheckResult(
                c.name, Verdict.INCONCLUSIVE, "NoObservations", f"{c.name}: no observations"
            )
        ]
    absolute, ratio, increase = c.absolute(a), c.ratio(a), c.increase(a)
    results = [] if absolute is None else [_absolute(c, value, absolute, base)]
    if base is not None and (increase is not None or (ratio is not None and base > 0)):
        results.append(_relative(c, value, base, ratio=ratio, increase=increase))
    return results


def check_metrics(
    *,
    canary: WindowMetrics,
    stable: WindowMetrics | None,
    analysis: spec.AnalysisSpec,
) -> tuple[CheckResult, ...]:
    """Every configured check of `METRIC_CHECKS` for one window; too little canary traffic is
    inconclusive (so no limit is judged on a handful of requests)."""
    if not any(_configured(c, analysis) for c in METRIC_CHECKS):
        return ()
    need = max(analysis.min_requests, 1)
    if canary.requests < need:
        return (
            CheckResult(
                check="traffic",
                verdict=Verdict.INCONCLUSIVE,
                reason="NoTraffic",
                message=f"{canary.requests:g} canary requests in the window, need >= {need}",
                value=canary.requests,
                limit=float(need),
            ),
        )
    s = stable if stable is not None and stable.requests > 0 else None
    return tuple(r for c in METRIC_CHECKS for r in _one_metric(c, canary, s, analysis))


@dataclass(frozen=True)
class Traffic:
    """Requests the canary's and the stable's pods served in one window, by their own counters:
    what really reached each revision, whatever the intended weight."""

    canary: float
    stable: float

    @property
    def total(self) -> float:
        return self.canary + self.stable

    @property
    def share(self) -> int | None:
        """The canary's share in percent (None when neither side served anything)."""
        return None if self.total <= 0 else round(100 * self.canary / self.total)


def traffic(*, canary: promtext.Scrape, stable: promtext.Scrape | None) -> Traffic:
    """The window's traffic split, from the summed per-pod deltas of each revision."""
    stable_requests = 0.0 if stable is None else window_metrics(stable).requests
    return Traffic(canary=window_metrics(canary).requests, stable=stable_requests)


def share_note(t: Traffic, weight: int) -> str:
    """How the observed split compares with the weight; says so when it is far below."""
    if t.share is None:
        return f"no requests reached either revision in the window (weight {weight}%)"
    seen = f"canary served {t.share}% of {t.total:g} requests (weight {weight}%)"
    if t.total >= 10 and t.share < weight / 2:
        return seen + "; far below the weight: do clients keep long-lived connections?"
    return seen


@dataclass(frozen=True)
class SmokeReply:
    """What one canary pod answered to smoke prompt number `index` (or the gRPC or HTTP error)."""

    pod: str
    index: int
    text: str | None
    latency_seconds: float
    error: str | None = None


def _excerpt(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def check_smoke_reply(prompt: spec.SmokePrompt, reply: SmokeReply) -> CheckResult:
    """Error, then latency budget, then the expected regex (searched, not fully matched, in
    linear time over the reply's first `expect.MAX_REPLY_CHARS` characters)."""
    where = f"pod {reply.pod} smoke prompt {reply.index} over {prompt.protocol}"

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
    compiled = expect.compile_expect(prompt.expect)
    if compiled.error is not None:
        why = f"{where}: expect /{prompt.expect}/ refused by RE2: {compiled.error}"
        return result(Verdict.FAILED, "SmokePromptInvalid", why)
    if not expect.search(compiled, reply.text):
        return result(
            Verdict.FAILED,
            "SmokePromptMismatch",
            f"{where} answered {_excerpt(reply.text)!r}, no match for /{prompt.expect}/",
        )
    return result(
        Verdict.PASSED, "SmokePromptPassed", f"{where} matched in {reply.latency_seconds:.2f}s"
    )


def check_smoke(
    prompts: Sequence[spec.SmokePrompt], replies: Iterable[SmokeReply]
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
    analysis: spec.AnalysisSpec,
) -> tuple[CheckResult, ...]:
    """Everything one closed window says: metric limits on the summed deltas, then smoke replies.

    `canary`/`stable` are `promtext.aggregate` of each revision's per-pod window deltas.
    """
    metrics = check_metrics(
        canary=window_metrics(canary),
        stable=None if stable is None else window_metrics(stable),
        analysis=analysis,
    )
    return metrics + check_smoke(analysis.smoke_prompts, replies)
