"""Analysis windows: each Ready pod's metric delta since the window began, and one closed
window's checks (metrics of canary and stable, smoke replies of canary pods not yet smoked).

This is the tick's gather-side I/O toward pods (through `podclient`); the judging itself is the pure `rollout.analysis`. The scrapes live in the
tick's per-object cache, passed in as a plain dict (pod name -> the scrape at the window start).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from llm_operator import podclient, spec
from llm_operator.rollout import analysis, clock, guards, plan, pods, promtext
from llm_operator.rollout.state import RolloutPhase, RolloutStatus

log = logging.getLogger(__name__)
Obj = Mapping[str, Any]
Scrapes = dict[str, promtext.Scrape]
Fetch = Callable[[str], podclient.Scraped]  # pod IP -> its /metrics (podclient.scrape)

# Every LLMDeployment's scrapes share these threads (the operator serves many objects in one
# process); each scrape holds one for at most podclient.SCRAPE_TIMEOUT_SECONDS.
SCRAPE_WORKERS = 16
SCRAPES_PER_TICK = 4  # one tick's scrapes in flight at once: its share of the pool
TICK_SCRAPE_BUDGET_SECONDS = 5.0  # all of one tick's scrapes of one revision
SMOKE_WORKERS = 8  # one tick's smoke-prompted pods at once
_POOL = concurrent.futures.ThreadPoolExecutor(
    max_workers=SCRAPE_WORKERS, thread_name_prefix="llmop-scrape"
)


def _name(p: Obj) -> str:
    return str((p.get("metadata") or {}).get("name", ""))


def _ip(p: Obj) -> str:
    return str((p.get("status") or {}).get("podIP") or "")


def ready_pods(group: Sequence[Obj]) -> list[Obj]:
    """The live, Ready pods that have an IP: the only ones worth scraping or prompting."""
    names = set(pods.ready_names(group))
    return [p for p in group if _name(p) in names and _ip(p)]


@dataclasses.dataclass(frozen=True)
class PodScrape:
    """One Ready pod's parsed metrics, or why there are none (a `CheckResult` for the window)."""

    pod: str
    scrape: promtext.Scrape | None
    problem: analysis.CheckResult | None = None


def _parsed(name: str, got: podclient.Scraped) -> PodScrape:
    if got.text is None:
        reason = str(got.failure or podclient.ScrapeFailure.CONNECTION)
        return PodScrape(name, None, guards.scrape_failed(pod=name, reason=reason, error=got.error))
    try:
        return PodScrape(name, promtext.parse(got.text))
    except promtext.BadSampleError as e:
        log.info("non-finite metrics from %s: %s", name, e)
        return PodScrape(name, None, guards.bad_sample(pod=name, exc=e))
    except ValueError as e:
        log.info("unparsable metrics from %s: %s", name, e)
        problem = guards.scrape_failed(pod=name, reason="ScrapeUnparsable", error=str(e)[:200])
        return PodScrape(name, None, problem)


def _over_budget(name: str, budget: float) -> PodScrape:
    why = f"the tick's {budget:g}s for scrapes ran out first"
    return PodScrape(
        name, None, guards.scrape_failed(pod=name, reason="ScrapeBudgetExceeded", error=why)
    )


def scrape_all(
    group: Sequence[Obj],
    *,
    budget: float = TICK_SCRAPE_BUDGET_SECONDS,
    fetch: Fetch = podclient.scrape,
) -> list[PodScrape]:
    """Every Ready pod of `group` scraped on the process-wide pool, at most `SCRAPES_PER_TICK`
    at once and all within `budget`: a slow pod costs its own deadline, never the others',
    and one object's many pods cannot take every worker from the other objects."""
    ready = ready_pods(group)
    pending = list(ready)
    running: dict[concurrent.futures.Future[podclient.Scraped], str] = {}
    done: dict[str, PodScrape] = {}
    deadline = time.monotonic() + budget
    while pending or running:
        while pending and len(running) < SCRAPES_PER_TICK:
            p = pending.pop(0)
            running[_POOL.submit(fetch, _ip(p))] = _name(p)
        left = deadline - time.monotonic()
        if left <= 0:
            break
        finished, _ = concurrent.futures.wait(
            running, timeout=left, return_when=concurrent.futures.FIRST_COMPLETED
        )
        for f in finished:
            name = running.pop(f)
            done[name] = _parsed(name, f.result())
    for f, name in running.items():
        f.cancel()  # a running scrape ends at its own deadline; its result is dropped
        done[name] = _over_budget(name, budget)
    for p in pending:
        done[_name(p)] = _over_budget(_name(p), budget)
    return [done[_name(p)] for p in ready]


def forget_gone_pods(scrapes: Scrapes, all_pods: Sequence[Obj]) -> None:
    """Drops the scrapes of pods that no longer exist (the cache would grow forever)."""
    alive = {_name(p) for p in all_pods}
    for name in [n for n in scrapes if n not in alive]:
        del scrapes[name]


def baseline(group: Sequence[Obj], scrapes: Scrapes) -> None:
    """Scrapes every Ready pod: the start of the first analysis window."""
    for got in scrape_all(group):
        if got.scrape is not None:
            scrapes[got.pod] = got.scrape


@dataclasses.dataclass(frozen=True)
class Deltas:
    """One revision's per-pod window deltas, and the pods whose scrape was unusable."""

    windows: list[promtext.Scrape]
    problems: list[analysis.CheckResult]


def deltas(group: Sequence[Obj], scrapes: Scrapes, since: datetime | None) -> Deltas:
    """Each Ready pod's delta since the window began; a pod without a start only sets one.
    A pod whose scrape fails keeps its start (its next delta spans both windows)."""
    by_name = {_name(p): p for p in group}
    out, problems = [], []
    for got in scrape_all(group):
        if got.scrape is None:
            problems += [got.problem] if got.problem is not None else []
            continue
        started = clock.parse_time((by_name[got.pod].get("status") or {}).get("startTime"))
        fresh = started is not None and since is not None and started >= since
        window = promtext.window_delta(scrapes.get(got.pod), got.scrape, started_in_window=fresh)
        scrapes[got.pod] = got.scrape
        if window is not None:
            out.append(window)
    return Deltas(out, problems)


def access(d: spec.LLMDeployment) -> podclient.Access:
    """How smoke prompts reach a pod: gRPC on service.port, HTTP on the runtime's HTTP port
    asking for model.name (the name the operator gives the runtime); plaintext, no token. The
    spec refuses smoke prompts for a runtime with TLS or a token
    (spec._SMOKE_NEEDS_NO_SECRET_RULE): the operator reads no Secrets, so it would hold neither
    the roots nor the token."""
    return podclient.Access(port=d.spec.service.port, model=d.spec.model.name)


def smoke_replies(
    *, ready: Mapping[str, Obj], names: Sequence[str], d: spec.LLMDeployment
) -> list[analysis.SmokeReply]:
    """Every smoke prompt to every named pod, pods in parallel: the tick (and so crash
    detection) waits for the slowest pod, not the sum."""
    if not names:
        return []
    how = access(d)
    prompts = d.spec.rollout.analysis.smoke_prompts

    def ask(name: str) -> list[analysis.SmokeReply]:
        return podclient.smoke(pod=name, pod_ip=_ip(ready[name]), prompts=prompts, access=how)

    replies: list[analysis.SmokeReply] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(names), SMOKE_WORKERS)) as pool:
        for answered in pool.map(ask, names):
            replies += answered
    return replies


def _stable_result(
    stable: Sequence[Obj], window: promtext.Scrape | None, r: RolloutStatus, d: spec.LLMDeployment
) -> analysis.CheckResult | None:
    """The stable's health beside a canary (none while Recreating: there is no stable then)."""
    if r.phase is RolloutPhase.RECREATING or not r.stable_revision:
        return None
    planned = plan.workloads(r, d.spec.replicas)
    expected = sum(w.replicas for w in planned if w.role == "stable")
    return guards.stable_health(
        pods=stable,
        expected=expected,
        window=window,
        analysis_spec=d.spec.rollout.analysis,
        now=datetime.now(UTC),
    )


def analyse(
    *, groups: Mapping[str, list[Obj]], r: RolloutStatus, d: spec.LLMDeployment, scrapes: Scrapes
) -> tuple[tuple[analysis.CheckResult, ...], analysis.Traffic]:
    """One closed window: canary and stable metric deltas, smoke replies of unsmoked pods, the
    canary pods whose metrics could not be used, the stable's health, and the split of requests
    the two revisions' pods served. `groups` holds only owned pods (`rollout.owners`)."""
    since = r.last_analysis_at or r.step_ready_at
    canary = groups.get(r.canary_revision or "", [])
    stable = [] if r.phase is RolloutPhase.RECREATING else groups.get(r.stable_revision or "", [])
    canary_w, stable_w = deltas(canary, scrapes, since), deltas(stable, scrapes, since)
    rules = d.spec.rollout.analysis
    ready = {_name(p): p for p in ready_pods(canary)}
    to_smoke = plan.pods_to_smoke(r, ready) if rules.smoke_prompts else ()
    canary_sum = promtext.aggregate(canary_w.windows)
    stable_sum = promtext.aggregate(stable_w.windows) if stable_w.windows else None
    results = analysis.evaluate(
        canary=canary_sum,
        stable=stable_sum,
        replies=smoke_replies(ready=ready, names=to_smoke, d=d),
        analysis=rules,
    )
    health = _stable_result(stable, stable_sum, r, d)
    extra = (*canary_w.problems, *([health] if health is not None else []))
    return results + extra, analysis.traffic(canary=canary_sum, stable=stable_sum)
