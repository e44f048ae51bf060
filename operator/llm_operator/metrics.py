"""Every operator metric, declared in one place with fixed label names (the names are an API)."""

from __future__ import annotations

from datetime import datetime

import prometheus_client
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

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
PHASE_TRANSITIONS = prometheus_client.Counter(
    "llm_operator_phase_transitions_total",
    "LLMDeployment phase changes, by the phase entered.",
    ["phase"],
)

# Rollouts started, promotions, rollbacks by reason, analyses by verdict, time to rollback.
ROLLOUT = RolloutMetrics()


def serve(port: int) -> None:
    """Starts the /metrics HTTP endpoint in a background thread."""
    prometheus_client.start_http_server(port)
