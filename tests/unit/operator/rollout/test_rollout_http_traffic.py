"""The canary analysis counts the OpenAI HTTP API's traffic: the runtime labels its request
metrics `protocol="http"`, and every measure of a window sums over that label.

The pods' scrapes come from the runtime's real metric families (llm_runtime.metrics), recorded
the way its HTTP edge records a finished request."""

from __future__ import annotations

import pytest
from llm_operator import spec
from llm_operator.rollout import analysis, promtext
from llm_operator.rollout.analysis import Verdict
from llm_runtime import metrics as runtime_metrics
from llm_runtime import types
from llm_runtime.api import contract
from prometheus_client import generate_latest

pytestmark = pytest.mark.unit


class Pod:
    """One runtime pod's metric families, and its scrape as the operator parses it."""

    def __init__(self, revision: str) -> None:
        self.families = runtime_metrics.RuntimeMetrics()
        self.model = self.families.for_model(
            model="smollm2",
            revision=revision,
            load_seconds=1.0,
            stats=lambda: types.EngineStats(running=0, waiting=0, batch_size=0, kv_cache_usage=0),
        )

    def serve(self, method: str, *, count: int, ttft: float, code: str = "OK") -> None:
        for _ in range(count):
            clock = runtime_metrics.RequestClock(method=method, started=0.0, first_token=ttft)
            self.model.finish(clock, code=code, prompt_tokens=5, completion_tokens=1)

    def scrape(self) -> promtext.Scrape:
        return promtext.parse(generate_latest(self.families.registry).decode())


def _window(pod: Pod, traffic: list[tuple[str, int, float, str]]) -> promtext.Scrape:
    before = pod.scrape()
    for method, count, ttft, code in traffic:
        pod.serve(method, count=count, ttft=ttft, code=code)
    return promtext.delta(before, pod.scrape())


def test_a_window_with_only_http_requests_is_judged() -> None:
    canary = _window(
        Pod("r2"),
        [("ChatCompletions", 18, 2.0, "OK"), ("Completions", 2, 2.0, "UNAVAILABLE")],
    )
    assert all(
        dict(labels)[contract.LABEL_PROTOCOL] == contract.PROTOCOL_HTTP
        for (name, labels), value in canary.samples.items()
        if name == contract.METRIC_REQUESTS and value
    )  # nothing came over gRPC
    seen = analysis.window_metrics(canary)
    assert (seen.requests, seen.errors) == (20.0, 2.0)
    assert seen.ttft_p95 is not None and 1.5 < seen.ttft_p95 <= 2.0  # the (1.5, 2] bucket
    limits = {"max_ttft_p95_seconds": 1.0, "max_error_ratio": 0.05}
    rules = spec.AnalysisSpec(min_requests=10, metrics=spec.MetricLimits(**limits))
    results = analysis.check_metrics(canary=seen, stable=None, analysis=rules)
    assert {r.reason for r in results} == {"ErrorRatioAboveLimit", "TTFTp95AboveLimit"}
    assert analysis.overall(results) is Verdict.FAILED


def test_http_and_grpc_requests_of_one_window_add_up() -> None:
    pod = Pod("r2")
    window = _window(pod, [("Generate", 10, 0.1, "OK"), ("ChatCompletions", 10, 0.1, "INTERNAL")])
    seen = analysis.window_metrics(window)
    assert (seen.requests, seen.errors) == (20.0, 10.0)
    stable = _window(Pod("r1"), [("GenerateStream", 5, 0.1, "OK")])
    assert analysis.traffic(canary=window, stable=stable).canary == 20.0
