"""The front door's registry: its own llm_frontdoor_* families plus the process ones."""

from __future__ import annotations

import json

import pytest
from llm_runtime.frontdoor import metrics, routing
from prometheus_client import generate_latest

pytestmark = pytest.mark.unit

PROCESS_FAMILIES = ("process_", "python_")


def test_a_scrape_has_the_process_platform_and_gc_families_of_the_default_registry() -> None:
    text = generate_latest(metrics.FrontdoorMetrics().registry).decode()
    for family in (
        "process_resident_memory_bytes",
        "python_info",
        "python_gc_objects_collected_total",
    ):
        assert f"\n{family}" in text, family


def test_every_other_family_is_the_front_doors_own() -> None:
    names = {m.name for m in metrics.FrontdoorMetrics().registry.collect()}
    own = {n for n in names if not n.startswith(PROCESS_FAMILIES)}
    assert own and all(n.startswith("llm_frontdoor_") for n in own)


def _config(canary: bool) -> routing.RoutingConfig:
    doc = {
        "stable": {"target": "dns:///chat-r1.ns.svc.cluster.local:50051", "revision": "r1"},
        "canary": (
            {"target": "dns:///chat-r2.ns.svc.cluster.local:50051", "revision": "r2"}
            if canary
            else None
        ),
        "weight": 10 if canary else 0,
    }
    return routing.parse(json.dumps(doc))


def test_backend_info_names_exactly_the_revisions_of_the_config_in_force() -> None:
    m = metrics.FrontdoorMetrics()
    m.configured(_config(canary=True))
    info = [
        s.labels
        for f in m.registry.collect()
        for s in f.samples
        if s.name == metrics.METRIC_BACKEND_INFO and s.value == 1
    ]
    assert sorted(i["revision"] for i in info) == ["r1", "r2"]
    m.configured(_config(canary=False))  # the canary rolled back: r2 is no longer routed
    info = [
        s.labels
        for f in m.registry.collect()
        for s in f.samples
        if s.name == metrics.METRIC_BACKEND_INFO
    ]
    assert info == [{"backend": "stable", "revision": "r1"}]
