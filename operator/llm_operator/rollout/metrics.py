"""The operator's rollout metrics, in the registry the operator exposes. Record from decisions."""

from __future__ import annotations

from datetime import datetime

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
