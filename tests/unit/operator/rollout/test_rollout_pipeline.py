"""The pure pieces wired the way the README tells handlers to wire them, on a simulated cluster.

Each pod exports the runtime's real metric families (llm_runtime.metrics); the loop scrapes,
takes window deltas, evaluates, decides and converges pod counts, one simulated second a tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from llm_operator import spec
from llm_operator.rollout import analysis, clock, decide, plan, pods, promtext, state
from llm_operator.rollout.analysis import Verdict
from llm_operator.rollout.state import RolloutPhase, RolloutStatus
from llm_runtime import metrics as runtime_metrics
from llm_runtime import types
from prometheus_client import generate_latest

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)


@dataclass
class SimPod:
    name: str
    revision: str
    born: datetime
    ttft: float
    crash_at: datetime | None = None
    families: runtime_metrics.RuntimeMetrics = field(default_factory=runtime_metrics.RuntimeMetrics)

    def __post_init__(self) -> None:
        self.model = self.families.for_model(
            model="m",
            revision=self.revision,
            load_seconds=1.0,
            stats=lambda: types.EngineStats(0, 0, 0, 0.0),
        )

    def ready(self, now: datetime) -> bool:
        return now - self.born >= timedelta(seconds=3) and not self.crashed(now)

    def crashed(self, now: datetime) -> bool:
        return self.crash_at is not None and now >= self.crash_at

    def serve(self, requests: int) -> None:
        for _ in range(requests):
            clock = runtime_metrics.RequestClock(
                method="Generate", started=0.0, first_token=self.ttft
            )
            self.model.finish(clock, code="OK", prompt_tokens=3, completion_tokens=1)

    def scrape(self) -> promtext.Scrape:
        return promtext.parse(generate_latest(self.families.registry).decode())

    def as_dict(self, now: datetime) -> dict[str, Any]:
        statuses: dict[str, Any] = {"name": "runtime", "restartCount": 0}
        if self.crashed(now):
            assert self.crash_at is not None
            statuses |= {
                "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {
                    "terminated": {
                        "exitCode": 1,
                        "finishedAt": clock.format_time(self.crash_at),
                    }
                },
            }
        return {
            "metadata": {"name": self.name, "labels": {pods.REVISION_LABEL: self.revision}},
            "status": {
                "startTime": clock.format_time(self.born),
                "conditions": [{"type": "Ready", "status": str(self.ready(now))}],
                "containerStatuses": [statuses],
            },
        }


@dataclass
class Cluster:
    """Pods per revision, converged to the plan; the handler's scrape cache lives here."""

    ttft: dict[str, float]
    crash_after: dict[str, float]
    pods: list[SimPod] = field(default_factory=list)
    last_scrape: dict[str, promtext.Scrape] = field(default_factory=dict)
    serial: int = 0

    def converge(self, workloads: tuple[plan.Workload, ...], now: datetime) -> None:
        want = {w.revision: w.replicas for w in workloads}
        kept: list[SimPod] = []
        for rev in {p.revision for p in self.pods} | set(want):
            mine = [p for p in self.pods if p.revision == rev][: want.get(rev, 0)]
            while len(mine) < want.get(rev, 0):
                self.serial += 1
                crash = self.crash_after.get(rev)
                mine.append(
                    SimPod(
                        f"{rev}-{self.serial}",
                        rev,
                        now,
                        self.ttft[rev],
                        None if crash is None else now + timedelta(seconds=crash),
                    )
                )
            kept += mine
        self.pods = kept

    def traffic(self, now: datetime) -> None:
        for pod in self.pods:
            if pod.ready(now):
                pod.serve(5)

    def baseline(self) -> None:
        self.last_scrape = {p.name: p.scrape() for p in self.pods}

    def window(self, revision: str, now: datetime, since: datetime) -> promtext.Scrape | None:
        windows = []
        for pod in (p for p in self.pods if p.revision == revision and p.ready(now)):
            current = pod.scrape()
            w = promtext.window_delta(
                self.last_scrape.get(pod.name), current, started_in_window=pod.born >= since
            )
            self.last_scrape[pod.name] = current
            if w is not None:
                windows.append(w)
        return promtext.aggregate(windows) if windows else None


SPEC = spec.LLMDeploymentSpec.model_validate(
    {
        "model": {"name": "m", "source": "builtin://m"},
        "replicas": 2,
        "rollout": {
            "steps": [{"weight": 50, "pause": {"duration": "10s"}}, {"weight": 100}],
            "analysis": {
                "interval": "10s",
                "failureLimit": 1,
                "metrics": {"maxTTFTp95Seconds": 1.0},
                "relativeToStable": {"maxTTFTp95Ratio": 2.0},
            },
        },
    }
)


def run(
    cluster: Cluster, *, desired: str, status: RolloutStatus, seconds: int
) -> list[tuple[datetime, decide.Decision]]:
    """The handler loop of README.md, one tick per simulated second."""
    log = []
    for tick in range(seconds):
        now = T0 + timedelta(seconds=tick)
        cluster.traffic(now)
        results = None
        if plan.analysis_due(status, SPEC, now):
            since = status.last_analysis_at or status.step_ready_at or now
            canary = cluster.window(status.canary_revision or "", now, since)
            stable = cluster.window(status.stable_revision or "", now, since)
            results = analysis.evaluate(
                canary=canary or promtext.Scrape(),
                stable=stable,
                replies=(),
                analysis=SPEC.rollout.analysis,
            )
        observed = pods.observe(
            pods=[p.as_dict(now) for p in cluster.pods],
            status=status,
            spec=SPEC,
            desired_revision=desired,
            annotations={},
            now=now,
            analysis=results,
        )
        decision = decide.decide(observed, status, SPEC, now)
        if plan.baseline_due(status, decision.status):
            cluster.baseline()
        status = state.from_status(state.to_status(decision.status))  # through the CR, always
        cluster.converge(plan.workloads(status, SPEC.replicas), now)
        log.append((now, decision))
    return log


def _stable_cluster(**canary: Any) -> tuple[Cluster, RolloutStatus]:
    cluster = Cluster(
        ttft={"r1": 0.3, "r2": canary.get("ttft", 0.3)}, crash_after=canary.get("crash", {})
    )
    adopted = decide.decide(decide.Observed("r1"), RolloutStatus(), SPEC, T0).status
    cluster.converge(plan.workloads(adopted, SPEC.replicas), T0 - timedelta(minutes=5))
    return cluster, adopted


def test_good_update_is_promoted_and_the_old_revision_drained() -> None:
    cluster, status = _stable_cluster()
    log = run(cluster, desired="r2", status=status, seconds=90)
    actions = [d.action for _, d in log]
    assert decide.Action.ROLLBACK not in actions
    final = log[-1][1].status
    assert (final.phase, final.stable_revision) == (RolloutPhase.STABLE, "r2")
    assert {p.revision for p in cluster.pods} == {"r2"}


def test_slow_canary_is_rolled_back_within_two_analysis_intervals() -> None:
    cluster, status = _stable_cluster(ttft=2.2)
    log = run(cluster, desired="r2", status=status, seconds=60)
    ready_at = next(d.status.step_ready_at for _, d in log if d.status.step_ready_at)
    when, rollback = next((t, d) for t, d in log if d.action is decide.Action.ROLLBACK)
    assert rollback.status.rollback is not None
    assert rollback.status.rollback.reason == "TTFTp95AboveLimit"
    # 2.2 s lands in the (2, 3] bucket, 0.3 s in (0.25, 0.5]: PromQL interpolation gives these
    assert rollback.status.rollback.message == (
        "ttft_p95 2.95s > limit 1.00s (stable 0.49s) (failed analyses 2 > limit 1)"
    )
    assert rollback.verdict is Verdict.FAILED
    assert ready_at is not None and when - ready_at <= timedelta(
        seconds=2 * SPEC.rollout.analysis.interval_seconds
    )
    assert {p.revision for p in cluster.pods} == {"r1"}


def test_crashing_canary_is_rolled_back_on_the_tick_after_its_first_crash() -> None:
    cluster, status = _stable_cluster(crash={"r2": 2.0})
    log = run(cluster, desired="r2", status=status, seconds=30)
    when, rollback = next((t, d) for t, d in log if d.action is decide.Action.ROLLBACK)
    assert rollback.status.rollback is not None
    assert rollback.status.rollback.reason == "CrashLoopBackOff"
    assert rollback.status.rollback.signal_at is not None
    assert when - rollback.status.rollback.signal_at <= timedelta(seconds=1)
    # and it stays rolled back: the spec still asks for r2, but r2 is rejected
    assert log[-1][1].status.phase is RolloutPhase.ROLLED_BACK
    assert {p.revision for p in cluster.pods} == {"r1"}
