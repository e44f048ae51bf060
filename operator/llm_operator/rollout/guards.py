"""What the canary analysis must not be fooled by: pods whose metrics cannot be read or trusted,
and a stable revision that is itself unhealthy. Pure.

A canary pod whose scrape fails is not quietly left out of the window (a pod could hide its
errors by not answering): its failure is a result naming the pod. A stable that is unhealthy
makes the comparison meaningless and the promotion unsafe (the old revision is what a rollback
would return to); `decide` holds the canary where it is without blaming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from llm_operator import spec
from llm_operator.rollout import analysis, promtext, startup
from llm_operator.rollout.analysis import CheckResult, Verdict
from llm_operator.rollout.state import RolloutStatus

SCRAPE_CHECK = "scrape"
STABLE_CHECK = "stable"
STABLE_UNHEALTHY = "StableUnhealthy"  # the reason, the Event reason and the VERDICT column

# Scrape failures that may be the network or a busy node: the window cannot judge the pod
# (inconclusive). Every other failure is the pod's own doing (a huge, malformed or non-finite
# reply): the window fails.
TRANSIENT_SCRAPE_FAILURES = frozenset(
    {"ScrapeTimeout", "ScrapeConnectionFailed", "ScrapeBudgetExceeded"}
)
# Container states that say the stable is failing now (a restart long ago says nothing).
_STABLE_FAILING = frozenset({"CrashLoopBackOff", "ContainerFailed"})


def scrape_failed(*, pod: str, reason: str, error: str) -> CheckResult:
    """One canary pod's unusable scrape, as a window result."""
    transient = reason in TRANSIENT_SCRAPE_FAILURES
    return CheckResult(
        check=SCRAPE_CHECK,
        verdict=Verdict.INCONCLUSIVE if transient else Verdict.FAILED,
        reason=reason,
        message=f"pod {pod} metrics: {reason}: {error}",
        pod=pod,
    )


def bad_sample(*, pod: str, exc: promtext.BadSampleError) -> CheckResult:
    """A non-finite or negative cumulative metric of one canary pod: the window fails."""
    return CheckResult(
        check=SCRAPE_CHECK,
        verdict=Verdict.FAILED,
        reason="MetricNotFinite",
        message=f"pod {pod} metric {exc.metric} is {exc.value!r}",
        pod=pod,
    )


def _failing_containers(pods: Sequence[startup.Pod], now: datetime) -> list[str]:
    out = []
    for p in startup.live(pods):
        name = str((p.get("metadata") or {}).get("name", "?"))
        statuses = (p.get("status") or {}).get("containerStatuses") or ()
        signals = (startup.container_signal(name, cs, now) for cs in statuses)
        out += [s.message for s in signals if s is not None and s.reason in _STABLE_FAILING]
    return out


def _error_ratio_problem(window: promtext.Scrape | None, a: spec.AnalysisSpec) -> str | None:
    limit = a.metrics.max_error_ratio
    if window is None or limit is None:
        return None
    seen = analysis.window_metrics(window)
    if seen.requests < max(a.min_requests, 1):
        return None
    ratio = seen.errors / seen.requests
    if ratio <= limit:
        return None
    return f"stable error ratio {ratio:.1%} > limit {limit:.1%} over {seen.requests:g} requests"


def stable_health(
    *,
    pods: Sequence[startup.Pod],
    expected: int,
    window: promtext.Scrape | None,
    analysis_spec: spec.AnalysisSpec,
    now: datetime,
) -> CheckResult | None:
    """Why the stable revision is unhealthy this window (None when it is healthy): fewer Ready
    pods than it should have, a container crash-looping or failed now, or its own error ratio
    over the canary's absolute limit."""
    problems = _failing_containers(pods, now)
    ready = startup.ready_count(pods)
    if ready < expected:
        problems.insert(0, f"{ready}/{expected} stable pods Ready")
    ratio = _error_ratio_problem(window, analysis_spec)
    if ratio is not None:
        problems.append(ratio)
    if not problems:
        return None
    return CheckResult(
        check=STABLE_CHECK,
        verdict=Verdict.FAILED,
        reason=STABLE_UNHEALTHY,
        message="stable unhealthy: " + "; ".join(problems),
        value=float(ready),
        limit=float(expected),
    )


def split(
    results: Sequence[CheckResult],
) -> tuple[tuple[CheckResult, ...], CheckResult | None]:
    """The canary's own results, and the stable's health result if the window carried one."""
    own = tuple(r for r in results if r.check != STABLE_CHECK)
    stable = next((r for r in results if r.check == STABLE_CHECK), None)
    return own, stable


def holds(status: RolloutStatus) -> bool:
    """True while the last window found the stable unhealthy: no move, no progress deadline."""
    return status.last_verdict == STABLE_UNHEALTHY


def book_stable_unhealthy(
    status: RolloutStatus, own: Sequence[CheckResult], stable: CheckResult, *, weight_note: str
) -> RolloutStatus:
    """The status after a window that found the stable unhealthy: the canary's own results are
    on record (lastMessage) but count neither as a pass nor as a failure."""
    passed = analysis.smoke_passed_pods(own)
    return status.evolve(
        last_verdict=STABLE_UNHEALTHY,
        last_message=analysis.summary(own),
        smoked_pods=tuple(sorted(set(status.smoked_pods) | passed)),
        message=f"{weight_note}; {stable.message}; promotion held until the stable recovers",
    )
