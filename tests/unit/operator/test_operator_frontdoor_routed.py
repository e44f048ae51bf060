"""What the operator reads from the front doors before it retires a revision."""

from __future__ import annotations

from typing import Any

import pytest
from llm_operator import routing
from llm_runtime.frontdoor import metrics
from llm_runtime.frontdoor import routing as fd_routing
from prometheus_client import generate_latest

pytestmark = pytest.mark.unit


def _scrape(stable: str, canary: str | None) -> str:
    m = metrics.FrontdoorMetrics()
    backend = {"target": "dns:///x.ns.svc.cluster.local:50051"}
    m.configured(
        fd_routing.from_mapping(
            {
                "stable": {**backend, "revision": stable},
                "canary": None if canary is None else {**backend, "revision": canary},
                "weight": 10 if canary else 0,
            }
        )
    )
    return generate_latest(m.registry).decode()


def test_routed_revisions_is_the_stable_of_the_front_doors_own_config_in_force() -> None:
    # The canary is not held: the front door retries on the stable what it cannot place there.
    assert routing.routed_revisions(_scrape("r1", "r2")) == {"r1"}
    assert routing.routed_revisions(_scrape("r2", None)) == {"r2"}
    assert routing.routed_revisions("# nothing configured yet\n") == set()
    with pytest.raises(ValueError):
        routing.routed_revisions("not { metrics")


def _pod(name: str, *, owner: str = "chat", ready: bool = True, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"llm-operator.io/frontdoor": owner}}
    status = {
        "podIP": "198.18.0.9",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    return {"metadata": {**meta, **extra.get("meta", {})}, "status": {**status, **extra.get("status", {})}}  # fmt: skip


def test_only_ready_live_front_doors_of_this_deployment_are_asked() -> None:
    pods = [
        _pod("a"),
        _pod("b", ready=False),
        _pod("c", owner="other"),
        _pod("d", meta={"deletionTimestamp": "2026-12-05T00:00:00Z"}),
        _pod("e", status={"podIP": ""}),
        {"metadata": {"name": "runtime", "labels": {}}, "status": {"podIP": "198.18.0.8"}},
    ]
    assert [p["metadata"]["name"] for p in routing.ready_front_doors(pods, "chat")] == ["a"]
