"""The front door's Prometheus metrics, declared in this one module, names as constants.

- `llm_frontdoor_requests_total{backend, revision, method, code}`: calls the front door made to a
  backend (`stable`/`canary`) and how each ended (gRPC code name). A canary call retried on the
  stable counts twice, once per backend, with its own code each; calls refused before any backend
  was chosen (no valid config yet) count under `backend="none"`.
- `llm_frontdoor_retries_total{from_revision, reason}`: canary calls that failed before their
  first response message and were sent again to the stable; `reason` is the canary's code.
- `llm_frontdoor_weight{backend}`: the configured share in percent (canary = weight, stable =
  100 - weight).
- `llm_frontdoor_config_reloads_total{result}`: routing config file changes: ok, invalid,
  unreadable.
- `llm_frontdoor_requests_in_flight{backend}`: calls being served right now.

The registry also carries prometheus_client's process, platform and GC collectors (`process_*`,
`python_info`, `python_gc_*`), as its default registry would: this one is the only one served.

Only strings in, no gRPC types: an HTTP front door records into the same families.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge

from llm_runtime.api import contract
from llm_runtime.frontdoor import routing

# Family names as a scrape shows them (a counter's family carries its `_total` suffix here).
METRIC_REQUESTS = "llm_frontdoor_requests_total"
METRIC_RETRIES = "llm_frontdoor_retries_total"
METRIC_WEIGHT = "llm_frontdoor_weight"
METRIC_BACKEND_INFO = contract.METRIC_FRONTDOOR_BACKEND_INFO  # what the operator reads
METRIC_CONFIG_RELOADS = "llm_frontdoor_config_reloads_total"
METRIC_IN_FLIGHT = "llm_frontdoor_requests_in_flight"

NO_BACKEND = "none"
# The method label: these names as they are, anything else as "other" (bounded cardinality).
METHODS = ("Generate", "GenerateStream", "ModelInfo")
OTHER_METHOD = "other"
RELOAD_RESULTS = ("ok", "invalid", "unreadable")


def method_label(name: str) -> str:
    return name if name in METHODS else OTHER_METHOD


class FrontdoorMetrics:
    """The families in their own registry (one per front door, so tests can run several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # prometheus_client appends `_total` to a counter's name: strip it from the constant.
        self._requests = Counter(
            METRIC_REQUESTS.removesuffix("_total"),
            "Calls sent to a backend revision, by method and final gRPC status code.",
            ["backend", "revision", "method", "code"],
            registry=r,
        )
        self._retries = Counter(
            METRIC_RETRIES.removesuffix("_total"),
            "Canary calls that failed before their first response and were retried on stable.",
            ["from_revision", "reason"],
            registry=r,
        )
        self._weight = Gauge(
            METRIC_WEIGHT, "Configured share of requests in percent.", ["backend"], registry=r
        )
        self._backend_info = Gauge(
            METRIC_BACKEND_INFO,
            "The routing config in force: 1 for each backend, labelled with its revision.",
            ["backend", "revision"],
            registry=r,
        )
        self._reloads = Counter(
            METRIC_CONFIG_RELOADS.removesuffix("_total"),
            "Routing config changes seen, by result (ok, invalid, unreadable).",
            ["result"],
            registry=r,
        )
        self._in_flight = Gauge(
            METRIC_IN_FLIGHT, "Calls being served right now.", ["backend"], registry=r
        )
        for result in RELOAD_RESULTS:
            self._reloads.labels(result)
        for name in routing.BACKENDS:
            self._in_flight.labels(name)
        # prometheus_client's process-wide collectors, shared with every registry (they keep no
        # state); the runtime's metrics module, which lists them too, is not the front door's.
        for standard in (
            prometheus_client.PROCESS_COLLECTOR,
            prometheus_client.PLATFORM_COLLECTOR,
            prometheus_client.GC_COLLECTOR,
        ):
            r.register(standard)

    def configured(self, config: routing.RoutingConfig) -> None:
        """Export a new config's weights and pre-create its OK series at zero (for rate())."""
        weight = config.canary_weight
        self._weight.labels(routing.STABLE).set(100 - weight)
        self._weight.labels(routing.CANARY).set(weight)
        self._backend_info.clear()
        for name in routing.BACKENDS:
            backend = config.backend(name)
            if backend is not None:
                self._backend_info.labels(name, backend.revision).set(1)
                for method in METHODS:
                    self._requests.labels(name, backend.revision, method, "OK")

    def finished(self, *, backend: str, revision: str, method: str, code: str) -> None:
        self._requests.labels(backend, revision, method_label(method), code).inc()

    def retried(self, *, from_revision: str, reason: str) -> None:
        self._retries.labels(from_revision, reason).inc()

    def reloaded(self, result: str) -> None:
        self._reloads.labels(result).inc()

    def started(self, backend: str) -> None:
        self._in_flight.labels(backend).inc()

    def ended(self, backend: str) -> None:
        self._in_flight.labels(backend).dec()
