"""The tick puts its decision on record before any Deployment moves: a fake API server (the
one function every kube call goes through) records the calls of one tick that starts a canary,
and the status write comes before the first write to a Deployment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from llm_operator import kube, naming, tick
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
    labels = {contract.LABEL_REVISION: revision}
    meta = {"name": naming.deployment_name(NAME, revision), "labels": labels}
    return {"metadata": meta, "spec": {"replicas": 2}}


def test_the_decision_is_written_before_any_deployment_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, str]] = []

    def fake_request(
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        calls.append((method, path))
        if method != "GET":
            return {}
        if not query:  # one object by name (the tick's lists all carry a selector): absent
            return None
        return {"items": [_stable_deployment("old")] if path.endswith("/deployments") else []}

    monkeypatch.setattr(kube, "_request", fake_request)
    posted: list[str] = []
    body = _body("old")
    decided = tick.run(
        body=body,
        memo={},
        settings_image="img:1",
        drift_seconds=300,
        post=lambda _t, reason, _m: posted.append(reason),
    )
    assert str(decided.decision.action) == "StartCanary"
    writes = [(m, p) for m, p in calls if m != "GET"]
    status_at = next(i for i, (_, p) in enumerate(writes) if p.endswith(f"/{NAME}/status"))
    deployment_at = next(i for i, (_, p) in enumerate(writes) if "/deployments/" in p)
    assert status_at < deployment_at, writes
    assert "RolloutStarted" in posted
