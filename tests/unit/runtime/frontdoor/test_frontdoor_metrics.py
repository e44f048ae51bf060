"""The front door's registry: its own llm_frontdoor_* families plus the process ones."""

from __future__ import annotations

import pytest
from llm_runtime.frontdoor import metrics
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
