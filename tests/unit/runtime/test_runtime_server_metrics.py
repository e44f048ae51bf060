"""The metric contract: names, labels, and an exposition promtool accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from llm_runtime import metrics, types
from llm_runtime.api import contract
from llm_runtime.openai_api import render
from prometheus_client import generate_latest

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"


def _scrape(families: metrics.RuntimeMetrics) -> str:
    return generate_latest(families.registry).decode()


def _bound() -> tuple[metrics.RuntimeMetrics, metrics.ModelMetrics]:
    families = metrics.RuntimeMetrics()
    stats = types.EngineStats(running=3, waiting=2, batch_size=3, kv_cache_usage=0.25)
    bound = families.for_model(model="m", revision="r1", load_seconds=1.5, stats=lambda: stats)
    return families, bound


def test_engine_gauges_are_read_at_scrape_time() -> None:
    text = _scrape(_bound()[0])
    assert 'llm_runtime_requests_running{model="m",revision="r1"} 3.0' in text
    assert 'llm_runtime_requests_waiting{model="m",revision="r1"} 2.0' in text
    assert 'llm_runtime_batch_size{model="m",revision="r1"} 3.0' in text
    assert 'llm_runtime_kv_cache_usage_ratio{model="m",revision="r1"} 0.25' in text
    assert 'llm_runtime_model_load_seconds{model="m",revision="r1"} 1.5' in text


def _requests(method: str, code: str, protocol: str) -> str:
    """A requests_total series as the exposition writes it (labels sorted by name)."""
    labels = f'code="{code}",method="{method}",model="m",protocol="{protocol}",revision="r1"'
    return f"{contract.METRIC_REQUESTS}{{{labels}}}"


def test_error_codes_exist_at_zero_before_the_first_error() -> None:
    text = _scrape(_bound()[0])
    assert f"{_requests('Generate', 'UNAVAILABLE', 'grpc')} 0.0" in text
    assert f"{_requests('ChatCompletions', 'UNAVAILABLE', 'http')} 0.0" in text


@pytest.mark.parametrize(
    ("method", "protocol"),
    [("GenerateStream", "grpc"), ("Generate", "grpc"), ("ChatCompletions", "http")],
)
def test_a_finished_request_feeds_counts_ttft_and_tpot_of_its_protocol(
    method: str, protocol: str
) -> None:
    families, bound = _bound()
    clock = metrics.RequestClock(method)
    clock.token()
    bound.finish(clock, code="OK", prompt_tokens=7, completion_tokens=5)
    text = _scrape(families)
    assert f"{_requests(method, 'OK', protocol)} 1.0" in text
    mine = f'model="m",protocol="{protocol}",revision="r1"'
    assert f"llm_runtime_prompt_tokens_total{{{mine}}} 7.0" in text
    assert f"llm_runtime_generation_tokens_total{{{mine}}} 5.0" in text
    for family in (contract.METRIC_TTFT_SECONDS, contract.METRIC_TPOT_SECONDS):
        assert f"{family}_count{{{mine}}} 1.0" in text
    other = next(p for p in metrics.PROTOCOLS if p != protocol)
    assert (
        f'{contract.METRIC_TTFT_SECONDS}_count{{model="m",protocol="{other}",revision="r1"}} 0.0'
        in text
    )


def test_every_method_names_one_protocol_and_the_http_endpoints_use_the_http_ones() -> None:
    assert set(metrics.PROTOCOL_OF) == {*metrics.METHODS, *metrics.HTTP_METHODS}
    assert set(metrics.PROTOCOL_OF.values()) == set(metrics.PROTOCOLS)
    flavors = {render.CHAT.method, render.TEXT.method}
    assert flavors == set(metrics.HTTP_METHODS)
    assert {metrics.PROTOCOL_OF[m] for m in flavors} == {contract.PROTOCOL_HTTP}


def test_time_per_output_token_excludes_the_first_token() -> None:
    assert metrics.time_per_output_token(first_token=1.0, end=3.0, completion_tokens=5) == 0.5
    assert metrics.time_per_output_token(first_token=1.0, end=3.0, completion_tokens=1) is None
    assert metrics.time_per_output_token(first_token=None, end=3.0, completion_tokens=9) is None


def test_promtool_accepts_the_exposition(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run `make setup` (installs Debian's prometheus)"
    families, bound = _bound()
    clock = metrics.RequestClock("Generate")
    clock.token()
    bound.finish(clock, code="OK", prompt_tokens=1, completion_tokens=3)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=_scrape(families), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_exported_name_is_documented_in_the_contract() -> None:
    doc = DOC.read_text()
    families, _ = _bound()
    names = {m.name for m in families.registry.collect()}
    assert names, "no metrics collected"
    for name in names:
        assert f"`{name}" in doc, f"{name} is not in docs/metrics.md"
    standard = {m.name for c in metrics.STANDARD_COLLECTORS for m in c.collect()}
    assert standard <= names
    assert all(name.startswith("llm_runtime_") for name in names - standard)


def test_a_scrape_has_the_process_platform_and_gc_families_of_the_default_registry() -> None:
    """What prometheus_client's default registry would show: memory, CPU, python_info, GC."""
    text = _scrape(metrics.RuntimeMetrics())
    for family in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "python_info",
        "python_gc_objects_collected_total",
    ):
        assert f"\n{family}" in text, family
    assert 'python_info{implementation="CPython"' in text


def test_two_registries_in_one_process_both_serve_the_process_families() -> None:
    first, second = metrics.RuntimeMetrics(), metrics.RuntimeMetrics()
    assert "process_resident_memory_bytes " in _scrape(first)
    assert "process_resident_memory_bytes " in _scrape(second)


def test_the_families_the_canary_analysis_reads_are_exposed_under_the_contracts_names() -> None:
    """The contract names a family as a scrape shows it (a counter with its `_total`)."""
    text = _scrape(_bound()[0])
    assert f"# TYPE {contract.METRIC_REQUESTS} counter" in text
    assert f"# TYPE {contract.METRIC_TTFT_SECONDS} histogram" in text
    assert f"# TYPE {contract.METRIC_TPOT_SECONDS} histogram" in text
    doc = DOC.read_text()
    for name in (
        contract.METRIC_REQUESTS,
        contract.METRIC_TTFT_SECONDS,
        contract.METRIC_TPOT_SECONDS,
    ):
        assert f"`{name}`" in doc, f"{name} is not in docs/metrics.md"
