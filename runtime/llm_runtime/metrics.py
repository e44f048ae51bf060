"""Every Prometheus metric the runtime exports, declared in this one module.

The names and labels are a contract: the operator's canary analysis and the dashboards query them
(docs/metrics.md lists them); the families the analysis reads are named in
`llm_runtime.api.contract`. All carry `model` and `revision`, which the operator sets per pod
through the model_name / model_revision settings' variables, so a stable and a canary revision
can be compared.
Gauges of the engine's state are read from `engine.stats()` at scrape time by a custom collector,
so they are never stale and the engine never pushes. The registry also carries prometheus_client's
process, platform and GC collectors (`process_*`, `python_info`, `python_gc_*`), which its default
registry would have had: this registry is the only one the runtime serves.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llm_runtime import types
from llm_runtime.api import contract

LABELS = ("model", "revision")
# The generation calls of each way in: gRPC's RPCs and the OpenAI HTTP API's endpoints
# (`openai_api.render`'s flavors). A method names its protocol, so the `protocol` label of the
# request metrics is read from this table and can never disagree with `method`.
METHODS = ("Generate", "GenerateStream")
HTTP_METHODS = ("ChatCompletions", "Completions")
PROTOCOL_OF: dict[str, str] = {
    **dict.fromkeys(METHODS, contract.PROTOCOL_GRPC),
    **dict.fromkeys(HTTP_METHODS, contract.PROTOCOL_HTTP),
}
PROTOCOLS = (contract.PROTOCOL_GRPC, contract.PROTOCOL_HTTP)
# The labels of every per-request family: the model's, then the way the request came in.
REQUEST_LABELS = (*LABELS, contract.LABEL_PROTOCOL)
# Codes pre-created at zero so `rate()` and ratios work before the first error happens.
CODES = (
    "OK",
    "INVALID_ARGUMENT",
    "RESOURCE_EXHAUSTED",
    "DEADLINE_EXCEEDED",
    "CANCELLED",
    "UNAUTHENTICATED",
    "UNAVAILABLE",
    "INTERNAL",
)

_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 60)
_TPOT_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5)

# Names of the gauges read from EngineStats at scrape time, with their help text.
ENGINE_GAUGES = {
    "llm_runtime_requests_running": "Requests in the running batch (prefilling or decoding).",
    "llm_runtime_requests_waiting": "Requests queued for a slot in the running batch.",
    "llm_runtime_batch_size": "Rows in the last decode step.",
    "llm_runtime_kv_cache_usage_ratio": "Used fraction (0..1) of the KV-cache budget.",
}


def engine_gauge_values(stats: types.EngineStats) -> dict[str, float]:
    """The value of each engine gauge in a stats snapshot."""
    return {
        "llm_runtime_requests_running": stats.running,
        "llm_runtime_requests_waiting": stats.waiting,
        "llm_runtime_batch_size": stats.batch_size,
        "llm_runtime_kv_cache_usage_ratio": stats.kv_cache_usage,
    }


# prometheus_client's process-wide collectors, the ones its default registry holds. They keep no
# state of their own (they read /proc, the platform and the gc module), so registries share them.
STANDARD_COLLECTORS: tuple[Collector, ...] = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)


@dataclasses.dataclass(frozen=True)
class _Source:
    labels: tuple[str, str]
    stats: Callable[[], types.EngineStats]


class _EngineCollector(Collector):
    """Reads `engine.stats()` on every scrape; empty families until a model is bound."""

    def __init__(self) -> None:
        self.source: _Source | None = None

    def describe(self) -> Iterator[Metric]:
        for name, doc in ENGINE_GAUGES.items():
            yield GaugeMetricFamily(name, doc, labels=LABELS)

    def collect(self) -> Iterator[Metric]:
        source = self.source
        values = engine_gauge_values(source.stats()) if source else {}
        for name, doc in ENGINE_GAUGES.items():
            family = GaugeMetricFamily(name, doc, labels=LABELS)
            if source is not None:
                family.add_metric(list(source.labels), values[name])
            yield family


@dataclasses.dataclass
class RequestClock:
    """Times one RPC: created when it arrives, `token()` on each event that carries tokens."""

    method: str
    started: float = dataclasses.field(default_factory=time.perf_counter)
    first_token: float | None = None

    def token(self) -> None:
        if self.first_token is None:
            self.first_token = time.perf_counter()


def time_per_output_token(
    *, first_token: float | None, end: float, completion_tokens: int
) -> float | None:
    """Mean decode time after the first token; None when fewer than two tokens were produced."""
    if first_token is None or completion_tokens < 2:
        return None
    return (end - first_token) / (completion_tokens - 1)


class RuntimeMetrics:
    """The runtime's metric families in their own registry (one per server, so tests can run many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            # prometheus_client appends `_total` to a counter's name: strip it from the contract's.
            contract.METRIC_REQUESTS.removesuffix("_total"),
            "Finished generation requests by protocol, method and gRPC status code.",
            [*REQUEST_LABELS, "method", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "llm_runtime_request_duration_seconds",
            "Time from a generation request's arrival to its last message, any status.",
            REQUEST_LABELS,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            contract.METRIC_TTFT_SECONDS,
            "Time from a generation request's arrival to its first generated token.",
            REQUEST_LABELS,
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            contract.METRIC_TPOT_SECONDS,
            "Mean time between generated tokens after the first, per request.",
            REQUEST_LABELS,
            buckets=_TPOT_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "llm_runtime_prompt_tokens",
            "Prompt tokens of finished requests.",
            REQUEST_LABELS,
            registry=r,
        )
        self.generation_tokens = Counter(
            "llm_runtime_generation_tokens",
            "Tokens generated, including those of requests cancelled midway.",
            REQUEST_LABELS,
            registry=r,
        )
        self.model_load = Gauge(
            "llm_runtime_model_load_seconds",
            "Seconds it took to load the model (read files, build, move to device).",
            LABELS,
            registry=r,
        )
        self._engine = _EngineCollector()
        r.register(self._engine)
        for standard in STANDARD_COLLECTORS:
            r.register(standard)

    def for_model(
        self,
        *,
        model: str,
        revision: str,
        load_seconds: float,
        stats: Callable[[], types.EngineStats],
    ) -> ModelMetrics:
        """Bind the labels once the model is known and start exporting the engine's gauges."""
        labels = (model, revision)
        self.model_load.labels(*labels).set(load_seconds)
        self._engine.source = _Source(labels=labels, stats=stats)
        for method, protocol in PROTOCOL_OF.items():
            for code in CODES:
                self.requests.labels(*labels, protocol, method, code)
        return ModelMetrics(self, labels)


@dataclasses.dataclass(frozen=True)
class _RequestChildren:
    """The per-request children of one model and protocol, bound once."""

    duration: Histogram
    ttft: Histogram
    tpot: Histogram
    prompt: Counter
    generated: Counter


class ModelMetrics:
    """The metric children of one model, as the servicer and the HTTP API record them."""

    def __init__(self, families: RuntimeMetrics, labels: tuple[str, str]) -> None:
        self._f = families
        self._labels = labels
        self._children = {p: self._bind(p) for p in PROTOCOLS}

    def _bind(self, protocol: str) -> _RequestChildren:
        f, labels = self._f, (*self._labels, protocol)
        return _RequestChildren(
            duration=f.request_duration.labels(*labels),
            ttft=f.ttft.labels(*labels),
            tpot=f.tpot.labels(*labels),
            prompt=f.prompt_tokens.labels(*labels),
            generated=f.generation_tokens.labels(*labels),
        )

    def finish(
        self, clock: RequestClock, *, code: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Record one finished request, whatever its status; its method names its protocol."""
        end = time.perf_counter()
        protocol = PROTOCOL_OF[clock.method]
        self._f.requests.labels(*self._labels, protocol, clock.method, code).inc()
        children = self._children[protocol]
        children.duration.observe(end - clock.started)
        if clock.first_token is not None:
            children.ttft.observe(clock.first_token - clock.started)
        tpot = time_per_output_token(
            first_token=clock.first_token, end=end, completion_tokens=completion_tokens
        )
        if tpot is not None:
            children.tpot.observe(tpot)
        children.prompt.inc(prompt_tokens)
        children.generated.inc(completion_tokens)

    def reject(self, *, method: str, code: str) -> None:
        """Count a request refused before it reached the engine (auth, drain, loading)."""
        self._f.requests.labels(*self._labels, PROTOCOL_OF[method], method, code).inc()
