"""Every operator metric, declared in one place with fixed label names (the names are an API).

Two kinds: process-wide counters of what the operator did (`llm_operator_*`), and per-object
gauges (`llmdeployment_*{namespace, name, ...}`) that name the LLMDeployment, so an alert can say
which one is in trouble. docs/monitoring.md lists both and the alerts built on them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import prometheus_client
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llm_operator import spec
from llm_operator.rollout import state
from llm_operator.rollout.decide import Action, Decision


class RolloutMetrics:
    """Rollouts started, promotions, rollbacks by reason, analyses by verdict, rollback delay."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.started = Counter(
            "llm_operator_rollouts",
            "Rollouts started (a new revision went out), by strategy.",
            ["strategy"],
            registry=registry,
        )
        self.promotions = Counter(
            "llm_operator_rollout_promotions", "Canaries promoted to stable.", registry=registry
        )
        self.rollbacks = Counter(
            "llm_operator_rollout_rollbacks",
            "Canaries rolled back, by the reason of the failed check.",
            ["reason"],
            registry=registry,
        )
        self.analyses = Counter(
            "llm_operator_rollout_analyses",
            "Canary analyses (one per closed window), by verdict.",
            ["verdict"],
            registry=registry,
        )
        self.rollback_delay = Histogram(
            "llm_operator_rollout_rollback_delay_seconds",
            "From the failing signal (e.g. the first crash) to the rollback decision.",
            ["reason"],
            buckets=(0.5, 1, 2, 5, 10, 15, 30, 60, 120),
            registry=registry,
        )

    def record(self, decision: Decision, *, strategy: str) -> None:
        """Count what one decision did; call once per decision that was written to status."""
        if decision.verdict is not None:
            self.analyses.labels(str(decision.verdict)).inc()
        if decision.action is Action.START:
            self.started.labels(strategy).inc()
        elif decision.action is Action.PROMOTED:
            self.promotions.inc()
        elif decision.action is Action.ROLLBACK and decision.status.rollback is not None:
            rb = decision.status.rollback
            self.rollbacks.labels(rb.reason).inc()
            if rb.signal_at is not None:
                self.rollback_delay.labels(rb.reason).observe(_seconds(rb.signal_at, rb.at))


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


RECONCILES = prometheus_client.Counter(
    "llm_operator_reconciles_total",
    "Reconciliations of LLMDeployments, by trigger (change, drift, status) and result.",
    ["trigger", "result"],
)
ERRORS = prometheus_client.Counter(
    "llm_operator_reconcile_errors_total",
    "Failed reconciliations, by trigger and reason (the API status reason or the exception type).",
    ["trigger", "reason"],
)
DURATION = prometheus_client.Histogram(
    "llm_operator_reconcile_duration_seconds",
    "Time spent in one reconciliation, by trigger.",
    ["trigger"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
TICK_QUEUE = prometheus_client.Histogram(
    "llm_operator_tick_queue_seconds",
    "From a tick's wake-up to a worker starting it (the tick pool's queue): when this grows, "
    "raise LLM_OPERATOR_TICK_WORKERS or shard the fleet.",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
TICKS_SKIPPED = prometheus_client.Counter(
    "llm_operator_ticks_skipped_total",
    "Idle re-checks of a settled LLMDeployment that were not run: neither the object nor any "
    "cached child had changed (same resourceVersions) since a tick found it settled.",
)
API_REQUESTS = prometheus_client.Counter(
    "llm_operator_api_requests_total",
    "Requests this operator's own code made to the API server (kopf's watches and its own "
    "patches are not counted), by HTTP method, resource and response code: an idle fleet "
    "should make none.",
    ["method", "resource", "code"],
)
PHASE_TRANSITIONS = prometheus_client.Counter(
    "llm_operator_phase_transitions_total",
    "LLMDeployment phase changes, by the phase entered.",
    ["phase"],
)

# Rollouts started, promotions, rollbacks by reason, analyses by verdict, time to rollback.
ROLLOUT = RolloutMetrics()


# Per-object metrics. Their label values come from the LLMDeployment's status, which the tick
# writes; the collector keeps only the latest state of each object and renders the families at
# scrape time, so a phase or revision change leaves no old label set behind.
OBJECT_LABELS = ("namespace", "name")
# An object is exported while its daemon runs: the daemon forgets it when it stops (the object
# was deleted, or this replica exits or goes standby under peering: kopf stops its daemons). The
# TTL is only a backstop for a daemon that died without its `finally`; a settled object is
# ticked only every drift interval, so `handlers.configure` sets the TTL from that interval.
OBJECT_TTL_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class ObjectState:
    """What the per-object families say about one LLMDeployment, read from its status."""

    namespace: str
    name: str
    phase: str
    revision: str
    desired: int
    ready: int
    rollout: state.RolloutStatus


def object_state(
    *, namespace: str, name: str, desired: int, status: Mapping[str, Any]
) -> ObjectState:
    """The exported view of the status the tick just decided (the one it writes)."""
    return ObjectState(
        namespace=namespace,
        name=name,
        phase=str(status.get("phase") or ""),
        revision=str(status.get("currentRevision") or ""),
        desired=desired,
        ready=int(status.get("readyReplicas") or 0),
        rollout=state.from_status(status),
    )


def _gauge(name: str, doc: str, *extra: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=[*OBJECT_LABELS, *extra])


# Every per-object family: name -> (help, labels beyond namespace and name).
OBJECT_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "llmdeployment_info": (
        "1 per LLMDeployment: its phase and spec revision.",
        ("phase", "revision"),
    ),
    "llmdeployment_replicas_desired": ("Replicas the spec asks for.", ()),
    "llmdeployment_replicas_ready": ("Ready pods of the serving revision.", ()),
    "llmdeployment_rollout_phase": ("1 for the rollout's phase, 0 for the others.", ("phase",)),
    "llmdeployment_rollout_weight": ("The canary's share of traffic, in percent.", ()),
    "llmdeployment_rollout_step": ("Index of the rollout step the canary is at.", ()),
    "llmdeployment_rollout_stalled": ("1 while the step is past its progress deadline.", ()),
    "llmdeployment_revision_info": (
        "1 per revision the rollout names, by role (stable, canary, old).",
        ("revision", "role"),
    ),
    "llmdeployment_rollback_timestamp_seconds": (
        "Unix time of the last rollback, with its reason and revisions.",
        ("reason", "from_revision", "to_revision"),
    ),
}


def _roles(r: state.RolloutStatus) -> dict[str, str]:
    roles = {"stable": r.stable_revision, "canary": r.canary_revision, "old": r.old_revision}
    return {role: rev for role, rev in roles.items() if rev}


def _samples(s: ObjectState) -> Iterator[tuple[str, tuple[str, ...], float]]:
    """(family, extra label values, value) for one object."""
    r = s.rollout
    yield "llmdeployment_info", (s.phase, s.revision), 1.0
    yield "llmdeployment_replicas_desired", (), float(s.desired)
    yield "llmdeployment_replicas_ready", (), float(s.ready)
    for phase in state.RolloutPhase:
        yield "llmdeployment_rollout_phase", (str(phase),), float(phase is r.phase)
    yield "llmdeployment_rollout_weight", (), float(r.weight)
    yield "llmdeployment_rollout_step", (), float(r.step)
    yield "llmdeployment_rollout_stalled", (), float(r.stalled)
    for role, revision in _roles(r).items():
        yield "llmdeployment_revision_info", (revision, role), 1.0
    if r.rollback is not None:
        rb = r.rollback
        labels = (rb.reason, rb.from_revision, rb.to_revision)
        yield "llmdeployment_rollback_timestamp_seconds", labels, rb.at.timestamp()


def object_families(states: Iterable[ObjectState]) -> list[GaugeMetricFamily]:
    """Pure: the per-object families of these objects (each family present even when empty)."""
    families = {name: _gauge(name, doc, *extra) for name, (doc, extra) in OBJECT_FAMILIES.items()}
    for s in states:
        for name, extra, value in _samples(s):
            families[name].add_metric([s.namespace, s.name, *extra], value)
    return list(families.values())


class ObjectMetrics(Collector):
    """The latest state of every LLMDeployment this operator ticks, rendered at scrape time."""

    def __init__(
        self,
        *,
        ttl_seconds: float = OBJECT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()  # the tick thread writes while the HTTP thread scrapes
        self._states: dict[tuple[str, str], tuple[float, ObjectState]] = {}

    def observe(self, d: spec.LLMDeployment, status: Mapping[str, Any]) -> None:
        """Record the status one tick decided; replaces what the object exported before."""
        o = d.owner
        s = object_state(namespace=o.namespace, name=o.name, desired=d.spec.replicas, status=status)
        with self._lock:
            self._states[(o.namespace, o.name)] = (self._clock(), s)

    def touch(self, *, namespace: str, name: str) -> None:
        """The object was looked at and is unchanged: keep exporting what it last reported."""
        with self._lock:
            found = self._states.get((namespace, name))
            if found is not None:
                self._states[(namespace, name)] = (self._clock(), found[1])

    def forget(self, *, namespace: str, name: str) -> None:
        """Stop exporting an object now (e.g. when its deletion is seen)."""
        with self._lock:
            self._states.pop((namespace, name), None)

    def keep_for(self, ttl_seconds: float) -> None:
        """Sets the backstop TTL (it must exceed the longest gap between two ticks)."""
        self._ttl = ttl_seconds

    def current(self) -> list[ObjectState]:
        """The states reported within the TTL; older ones are dropped."""
        cutoff = self._clock() - self._ttl
        with self._lock:
            for key in [k for k, (at, _) in self._states.items() if at < cutoff]:
                del self._states[key]
            return [s for _, s in self._states.values()]

    def describe(self) -> Iterator[Metric]:
        yield from object_families(())

    def collect(self) -> Iterator[Metric]:
        yield from object_families(self.current())


# The latest state of each LLMDeployment; the tick's `report` step feeds it.
OBJECTS = ObjectMetrics()
REGISTRY.register(OBJECTS)


def serve(port: int) -> None:
    """Starts the /metrics HTTP endpoint in a background thread."""
    prometheus_client.start_http_server(port)
