"""The tick puts its decision on record before any Deployment moves, and writes nothing that the
caches show unchanged: a fake API server (the one function every kube call goes through)
records the calls of each tick."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from llm_operator import builders, children, kube, naming, spec, tick
from llm_operator.rollout import state
from llm_runtime.api import contract

pytestmark = pytest.mark.unit

NS, NAME = "ns", "chat"


def _body(stable: str) -> dict[str, Any]:
    rollout = state.to_status(state.RolloutStatus(stable_revision=stable))
    return {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": NAME, "namespace": NS, "uid": "u1", "generation": 2},
        "spec": {"model": {"name": "m", "source": "builtin://m"}, "replicas": 2},
        "status": rollout,
    }


def _stable_deployment(revision: str) -> dict[str, Any]:
    labels = {**naming.common_labels(NAME), contract.LABEL_REVISION: revision}
    meta = {"name": naming.deployment_name(NAME, revision), "labels": labels, "namespace": NS}
    return {"metadata": meta, "spec": {"replicas": 2}}


Calls = list[tuple[str, str, Any]]


def _fake_api(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Records every call; an apply returns the object stored (resourceVersion "1"), a read of
    one object finds nothing."""
    calls: Calls = []

    def fake_request(
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        calls.append((method, path, body))
        if method == "GET":
            return None
        stored = dict(body or {})
        stored["metadata"] = {**stored.get("metadata", {}), "resourceVersion": "1"}
        return stored

    monkeypatch.setattr(kube, "_request", fake_request)
    return calls


def test_the_decision_is_written_before_any_deployment_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _fake_api(monkeypatch)
    posted: list[str] = []
    kids = children.Children.of(NAME, {"Deployment": [_stable_deployment("old")]})
    outcome = tick.run(
        body=_body("old"),
        memo={},
        settings_image="img:1",
        kids=kids,
        post=lambda _t, reason, _m: posted.append(reason),
    )
    assert str(outcome.decided.decision.action) == "StartCanary"
    writes = [(m, p) for m, p, _ in calls if m != "GET"]
    status_at = next(i for i, (_, p) in enumerate(writes) if p.endswith(f"/{NAME}/status"))
    deployment_at = next(i for i, (_, p) in enumerate(writes) if "/deployments/" in p)
    assert status_at < deployment_at, writes
    assert "RolloutStarted" in posted
    assert not tick.settled(outcome)  # a canary in flight: ticked again soon


def test_a_settled_object_whose_children_are_cached_costs_no_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = _body("")
    body["spec"]["replicas"] = 0
    revision = builders.desired(spec.parse(body), default_image="img:1").revision
    body["status"] = state.to_status(state.RolloutStatus(stable_revision=revision))
    calls = _fake_api(monkeypatch)
    memo: dict[str, Any] = {}
    first = tick.run(body=body, memo=memo, settings_image="img:1", kids=children.Children.of(
        NAME, {}), post=lambda *_: None)  # fmt: skip
    applied = [b for m, p, b in calls if m == "PATCH" and not p.endswith("/status")]
    assert {b["kind"] for b in applied} == {
        "ServiceAccount", "Service", "PodDisruptionBudget", "Deployment"
    }  # fmt: skip
    # What the watches then deliver: the applied objects, as stored, with server defaults.
    stored = [
        {**b, "metadata": {**b["metadata"], "resourceVersion": "1", "uid": "x"}} for b in applied
    ]
    by_kind: dict[str, list[Any]] = {}
    for obj in stored:
        by_kind.setdefault(obj["kind"], []).append(obj)
    kids = children.Children.of(NAME, by_kind)
    # The Deployment now exists, so the status changes once more (Ready); then nothing does.
    status = {**body["status"], **first.decided.new_status}
    for _ in range(2):
        body["status"] = status
        calls.clear()
        again = tick.run(body=body, memo=memo, settings_image="img:1", kids=kids,
                         post=lambda *_: None)  # fmt: skip
        status = {**status, **again.decided.new_status}
    assert calls == []
    assert tick.settled(again)
    # A manual edit of a child arrives through its watch: the next tick undoes it, and only it.
    edited = next(o for o in stored if o["kind"] == "Service")
    edited["spec"] = {**edited["spec"], "ports": []}
    edited["metadata"]["resourceVersion"] = "2"
    tick.run(body=body, memo=memo, settings_image="img:1",
             kids=children.Children.of(NAME, by_kind), post=lambda *_: None)  # fmt: skip
    assert [(m, b["kind"], b["metadata"]["name"]) for m, _, b in calls] == [
        ("PATCH", "Service", edited["metadata"]["name"])
    ]
