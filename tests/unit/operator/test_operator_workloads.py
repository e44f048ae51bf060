"""Per-revision Deployments converge to the rollout plan: apply, resize, scale to 0, delete."""

from __future__ import annotations

from typing import Any

import pytest
from llm_operator import naming
from llm_operator import workloads as wl
from llm_operator.rollout import plan

pytestmark = pytest.mark.unit


def _have(rev: str, replicas: int, pods: int | None = None) -> wl.Existing:
    return wl.Existing(f"chat-{rev}", rev, replicas, replicas if pods is None else pods)


def _plan(*pairs: tuple[str, int]) -> tuple[plan.Workload, ...]:
    return tuple(plan.Workload(rev, n, "x") for rev, n in pairs)


def test_first_revision_is_applied_at_full_size() -> None:
    got = wl.converge(planned=_plan(("r1", 2)), spec_revision="r1", current=[], keep={"r1"})
    assert got == wl.Actions(apply=2)


def test_nothing_to_do_when_sizes_match() -> None:
    got = wl.converge(
        planned=_plan(("r1", 2)), spec_revision="r1", current=[_have("r1", 2)], keep={"r1"}
    )
    assert got.empty


def test_drift_repair_reapplies_the_spec_revision_even_at_the_right_size() -> None:
    got = wl.converge(
        planned=_plan(("r1", 2)),
        spec_revision="r1",
        current=[_have("r1", 2)],
        keep={"r1"},
        force_apply=True,
    )
    assert got.apply == 2


def test_canary_is_applied_and_the_stable_is_only_resized() -> None:
    """The spec describes the canary; the stable's template exists only in its Deployment."""
    got = wl.converge(
        planned=_plan(("r1", 3), ("r2", 1)),
        spec_revision="r2",
        current=[_have("r1", 2)],
        keep={"r1", "r2"},
    )
    assert got == wl.Actions(apply=1, scale=(("chat-r1", 3),))


def test_rolled_back_canary_is_scaled_to_zero_then_deleted_once_empty() -> None:
    planned = _plan(("r1", 2))
    first = wl.converge(
        planned=planned,
        spec_revision="r2",
        current=[_have("r1", 2), _have("r2", 1)],
        keep={"r1"},
    )
    assert first == wl.Actions(scale=(("chat-r2", 0),))
    draining = wl.converge(
        planned=planned,
        spec_revision="r2",
        current=[_have("r1", 2), _have("r2", 0, pods=1)],
        keep={"r1"},
    )
    assert draining.empty  # its pod is still finishing requests
    gone = wl.converge(
        planned=planned,
        spec_revision="r2",
        current=[_have("r1", 2), _have("r2", 0, pods=0)],
        keep={"r1"},
    )
    assert gone == wl.Actions(delete=("chat-r2",))


def test_recreate_keeps_the_old_stable_deployment_at_zero() -> None:
    """A failed new revision brings the old one back, so its Deployment must survive."""
    got = wl.converge(
        planned=_plan(("r2", 2)),
        spec_revision="r2",
        current=[_have("r1", 0, pods=0)],
        keep={"r1", "r2"},
    )
    assert got == wl.Actions(apply=2)


def test_a_planned_revision_without_deployment_that_the_spec_cannot_build_is_reported() -> None:
    got = wl.converge(planned=_plan(("r1", 2)), spec_revision="r2", current=[], keep={"r1"})
    assert got.missing == ("r1",)


def test_existing_reads_revision_labels_and_counts_pods() -> None:
    def obj(name: str, rev: str, replicas: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"metadata": {"name": name, "labels": {naming.LABEL_REVISION: rev}}}
        if replicas is not None:
            out["spec"] = {"replicas": replicas}
        return out

    deployments = [obj("chat-r1", "r1", 2), obj("chat-r2", "r2", 0)]
    pods = [obj("a", "r1"), obj("b", "r1"), obj("c", "r2")]
    assert wl.existing(deployments, pods) == [
        wl.Existing("chat-r1", "r1", 2, 2),
        wl.Existing("chat-r2", "r2", 0, 1),
    ]


def test_a_revision_a_front_door_still_routes_to_keeps_its_pods_and_deployment() -> None:
    """After a promotion the old stable leaves the plan, but until every front door has
    applied the new routes it still sends requests there: scaling it down (or deleting its
    Service with the Deployment) then fails them."""
    args: dict[str, Any] = {"planned": _plan(("r2", 1)), "spec_revision": "r2", "keep": {"r2"}}
    live, empty = [_have("r1", 1), _have("r2", 1)], [_have("r1", 0, pods=0), _have("r2", 1)]
    assert wl.converge(**args, current=live, routed={"r1", "r2"}).empty
    assert wl.converge(**args, current=empty, routed={"r1"}).delete == ()
    assert wl.converge(**args, current=live, routed=None).empty  # a front door unread: hold
    assert wl.converge(**args, current=live, routed={"r2"}).scale == (("chat-r1", 0),)
    assert wl.converge(**args, current=empty, routed={"r2"}).delete == ("chat-r1",)
