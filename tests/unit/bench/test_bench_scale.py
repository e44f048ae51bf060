"""The scale benchmark's pure parts: the idle object it creates and how it reads its numbers."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from bench import scale_bench

pytestmark = pytest.mark.unit


def test_an_idle_object_has_no_pods_and_is_otherwise_the_benchmark_spec() -> None:
    obj = scale_bench.idle_object("idle-0001")
    assert obj["metadata"] == {"name": "idle-0001"}
    assert obj["spec"]["replicas"] == 0
    assert obj["spec"]["model"]["source"] == "builtin://smollm2-135m-instruct"


def test_percentiles_are_nearest_rank() -> None:
    values = [0.5, 0.1, 0.3, 0.2, 0.4]
    assert scale_bench.percentile(values, 0.5) == 0.3
    assert scale_bench.percentile(values, 0.99) == 0.5
    assert scale_bench.percentile([2.0], 0.99) == 2.0


def test_the_verdicts_follow_the_issue_targets() -> None:
    good = scale_bench.Result(
        n=1000, requests_per_second=0.0, requests_by_kind={}, audit_requests_per_second=0.2,
        audit_watches_opened=0, audit_by_kind={}, cpu_percent=1.0, ticks_per_second=16.0,
        skipped_per_second=15.0, drift_s=60, rss_base_mb=80,
        rss_mb=200, rss_per_object_kb=120, spec_p50_s=0.3, spec_p99_s=0.9,
        crash_to_rollback_s=1.0, settle_s=100,
    )  # fmt: skip
    assert all(v.endswith("PASS") for v in good.verdicts())
    # The API server's count decides: kopf's own requests are not in the operator's.
    slow = dataclasses.replace(good, audit_requests_per_second=2.0, crash_to_rollback_s=None)
    assert [v.rsplit(" ", 1)[1] for v in slow.verdicts()] == ["FAIL", "PASS", "PASS", "FAIL"]


def test_an_object_is_settled_only_once_ready_and_stable_for_its_generation() -> None:
    status: dict[str, Any] = {
        "observedGeneration": 2, "phase": "Ready", "rollout": {"phase": "Stable"},
    }  # fmt: skip
    obj: dict[str, Any] = {"metadata": {"generation": 2}, "status": status}
    assert scale_bench.settled(obj)
    first_write = {**obj, "status": {**status, "phase": "Progressing"}}
    assert not scale_bench.settled(first_write)
    assert not scale_bench.settled({**obj, "metadata": {"generation": 3}})
    assert not scale_bench.settled({"metadata": {"generation": 1}})


def test_the_operator_is_quiet_when_its_request_count_stops_moving() -> None:
    samples = [{"requests": n} for n in (10, 40, 41, 41)]
    assert not scale_bench.quiet(samples, runs=3)
    assert scale_bench.quiet([*samples, {"requests": 41}], runs=3)
    assert not scale_bench.quiet([{"requests": 5}], runs=3)  # too few to tell


def test_the_drift_interval_reaches_the_operator_as_its_environment() -> None:
    from bench import canary_kit

    flag, value = canary_kit.drift_values(60)
    assert flag == "--set-json"
    assert (
        value
        == 'operator.extraEnv=[{"name": "LLM_OPERATOR_DRIFT_INTERVAL_SECONDS", "value": "60"}]'
    )
