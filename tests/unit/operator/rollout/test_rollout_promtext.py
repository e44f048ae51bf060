"""Scrape parsing, window deltas and PromQL-equivalent quantiles (pure)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llm_operator.rollout import analysis, promtext
from llm_runtime import metrics as runtime_metrics
from llm_runtime import types
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

pytestmark = pytest.mark.unit

TTFT = "llm_runtime_time_to_first_token_seconds"


def _registry() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    requests = Counter(
        "llm_runtime_requests_total", "requests", ["model", "revision", "code"], registry=registry
    )
    ttft = Histogram(
        TTFT, "ttft", ["model", "revision"], buckets=[0.1, 0.5, 1.0], registry=registry
    )
    Gauge("llm_runtime_queue_depth", "waiting", registry=registry).set(7)
    return registry, requests, ttft


def _scrape(registry: CollectorRegistry) -> promtext.Scrape:
    return promtext.parse(generate_latest(registry).decode())


def test_parse_keeps_counters_and_histograms_but_not_gauges_or_created() -> None:
    registry, requests, ttft = _registry()
    requests.labels("m", "r1", "OK").inc(3)
    ttft.labels("m", "r1").observe(0.3)
    names = {name for name, _ in _scrape(registry).samples}
    assert names == {
        "llm_runtime_requests_total",
        f"{TTFT}_bucket",
        f"{TTFT}_count",
        f"{TTFT}_sum",
    }


def test_window_from_real_exposition_gives_error_ratio_and_p95() -> None:
    registry, requests, ttft = _registry()
    requests.labels("m", "r1", "OK").inc(100)
    ttft.labels("m", "r1").observe(5.0)  # before the window: must not count
    before = _scrape(registry)
    requests.labels("m", "r1", "OK").inc(18)
    requests.labels("m", "r1", "UNAVAILABLE").inc(2)  # a label child that appears in the window
    for value in [0.05] * 10 + [0.3] * 10:
        ttft.labels("m", "r1").observe(value)
    window = promtext.delta(before, _scrape(registry))
    ratio = promtext.error_ratio(window)
    assert (ratio.errors, ratio.total, ratio.value) == (2.0, 20.0, 0.1)
    # rank 19 of 20 lands in (0.1, 0.5]: 0.1 + 0.4 * (19 - 10) / 10
    assert promtext.histogram_quantile(0.95, window, TTFT) == pytest.approx(0.46)


def test_counter_reset_makes_the_current_scrape_the_whole_delta() -> None:
    key = ("llm_runtime_requests_total", (("code", "OK"),))
    before = promtext.Scrape({key: 50.0})
    after_restart = promtext.Scrape({key: 4.0})
    assert promtext.is_reset(before, after_restart)
    assert promtext.delta(before, after_restart).samples == {key: 4.0}


def test_window_delta_without_baseline_is_known_only_for_fresh_processes() -> None:
    current = promtext.Scrape({("x_total", ()): 3.0})
    assert promtext.window_delta(None, current, started_in_window=True) == current
    assert promtext.window_delta(None, current, started_in_window=False) is None


def test_aggregate_sums_the_same_series_across_pods() -> None:
    key = ("x_total", (("code", "OK"),))
    other = ("x_total", (("code", "INTERNAL"),))
    total = promtext.aggregate(
        [promtext.Scrape({key: 1.0}), promtext.Scrape({key: 2.0, other: 1.0})]
    )
    assert total.samples == {key: 3.0, other: 1.0}


def test_client_errors_do_not_count_against_the_server() -> None:
    window = promtext.Scrape(
        {
            ("llm_runtime_requests_total", (("code", "OK"),)): 8.0,
            ("llm_runtime_requests_total", (("code", "INVALID_ARGUMENT"),)): 1.0,
            ("llm_runtime_requests_total", (("code", "INTERNAL"),)): 1.0,
        }
    )
    assert promtext.error_ratio(window).value == pytest.approx(0.1)
    assert promtext.error_ratio(promtext.Scrape()).value is None


INF = math.inf


@pytest.mark.parametrize(
    ("q", "pairs", "expected"),
    [
        (0.95, [(0.1, 0), (0.5, 10), (1.0, 10), (INF, 10)], 0.1 + 0.4 * 0.95),
        (0.5, [(1.0, 10), (2.0, 20), (INF, 20)], 1.0),
        (0.99, [(1.0, 1), (2.0, 2), (INF, 100)], 2.0),  # in the +Inf bucket: highest finite bound
        (0.5, [(1.0, 0), (INF, 0)], None),  # no observations: NaN in PromQL
        (0.5, [(1.0, 3), (2.0, 4)], None),  # no +Inf bucket
        (0.5, [(INF, 4)], None),  # fewer than two buckets
        (-0.1, [(1.0, 3), (INF, 3)], -INF),
        (1.5, [(1.0, 3), (INF, 3)], INF),
        (0.5, [(1.0, 4), (2.0, 2), (INF, 4)], 0.5),  # non-monotonic counts are enveloped
        (0.5, [(-1.0, 4), (INF, 4)], -1.0),  # first bucket's bound <= 0 is returned as is
    ],
)
def test_bucket_quantile_matches_promql(
    q: float, pairs: list[tuple[float, float]], expected: float | None
) -> None:
    result = promtext.bucket_quantile(q, pairs)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


@given(
    values=st.lists(st.floats(min_value=0.001, max_value=20.0), min_size=1, max_size=200),
    bounds=st.lists(
        st.floats(min_value=0.01, max_value=10.0), min_size=1, max_size=12, unique=True
    ),
    q=st.floats(min_value=0.01, max_value=1.0),
)
def test_estimate_lies_in_the_bucket_of_the_true_quantile(
    values: list[float], bounds: list[float], q: float
) -> None:
    edges = [*sorted(bounds), INF]
    pairs = [(le, float(sum(1 for v in values if v <= le))) for le in edges]
    estimate = promtext.bucket_quantile(q, pairs)
    assert estimate is not None
    true = sorted(values)[math.ceil(q * len(values)) - 1]
    upper_index = next(i for i, le in enumerate(edges) if true <= le)
    if upper_index == len(edges) - 1:
        assert estimate == edges[-2]
    else:
        lower = 0.0 if upper_index == 0 else edges[upper_index - 1]
        assert lower <= estimate <= edges[upper_index]


@given(
    counts=st.lists(st.integers(min_value=0, max_value=50), min_size=2, max_size=8),
    q1=st.floats(min_value=0.0, max_value=1.0),
    q2=st.floats(min_value=0.0, max_value=1.0),
)
def test_quantile_never_decreases_with_q(counts: list[int], q1: float, q2: float) -> None:
    cumulative = [float(sum(counts[: i + 1])) for i in range(len(counts))]
    pairs = [(float(i + 1), c) for i, c in enumerate(cumulative[:-1])] + [(INF, cumulative[-1])]
    low, high = sorted((q1, q2))
    a, b = promtext.bucket_quantile(low, pairs), promtext.bucket_quantile(high, pairs)
    if a is not None and b is not None:
        assert a <= b


def test_analysis_reads_the_names_the_runtime_exports() -> None:
    """Contract with runtime/llm_runtime/metrics.py: same names, codes and buckets."""
    families = runtime_metrics.RuntimeMetrics()
    model = families.for_model(
        model="smollm2",
        revision="r2",
        load_seconds=1.0,
        stats=lambda: types.EngineStats(running=0, waiting=0, batch_size=0, kv_cache_usage=0.0),
    )
    before = promtext.parse(generate_latest(families.registry).decode())
    for ttft in [0.2] * 18 + [3.0] * 2:
        clock = runtime_metrics.RequestClock(method="Generate", started=0.0, first_token=ttft)
        model.finish(clock, code="OK", prompt_tokens=5, completion_tokens=1)
    model.reject(method="Generate", code="UNAVAILABLE")
    model.reject(method="Generate", code="INVALID_ARGUMENT")
    window = promtext.delta(before, promtext.parse(generate_latest(families.registry).decode()))

    seen = analysis.window_metrics(window)
    assert (seen.requests, seen.errors) == (22.0, 1.0)
    # rank 19 of 20 falls in the (2, 3] bucket, which holds the two slow requests
    assert seen.ttft_p95 == pytest.approx(2.5)
    assert seen.tpot_p95 is None  # single-token replies record no TPOT
