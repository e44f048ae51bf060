"""Every operator metric, declared in one place with fixed label names (the names are an API)."""

from __future__ import annotations

import prometheus_client

from llm_operator.rollout import metrics as rollout_metrics

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
ROLLOUT = rollout_metrics.RolloutMetrics()


def serve(port: int) -> None:
    """Starts the /metrics HTTP endpoint in a background thread."""
    prometheus_client.start_http_server(port)
