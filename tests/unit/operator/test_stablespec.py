"""The stable's spec kept in status, and the Deployment rebuilt from it (pure)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from llm_operator import builders, spec, stablespec

pytestmark = pytest.mark.unit

IMAGE = "llm-operator/runtime:1"
SPEC: dict[str, Any] = {
    "model": {"name": "m", "source": "builtin://smollm2-135m-instruct"},
    "replicas": 2,
    "runtime": {"env": [{"name": "MARK", "value": "stable"}]},
}


def _d(body: dict[str, Any]) -> spec.LLMDeployment:
    return spec.parse({"metadata": {"name": "chat", "namespace": "team", "uid": "u"}, "spec": body})


def _revision(body: dict[str, Any], image: str = IMAGE) -> str:
    return builders.deployment(_d(body), default_image=image)[1]


def test_the_spec_is_recorded_while_its_revision_is_the_stable_one() -> None:
    rev = _revision(SPEC)
    rec = stablespec.record(
        None, spec_body=SPEC, spec_revision=rev, stable_revision=rev, default_image=IMAGE
    )
    assert rec is not None and rec["revision"] == rev and rec["defaultImage"] == IMAGE
    assert isinstance(rec["spec"], str)  # replaced whole by a merge patch


def test_during_a_canary_the_stables_record_stays_and_a_foreign_stable_drops_it() -> None:
    rev = _revision(SPEC)
    rec = stablespec.record(
        None, spec_body=SPEC, spec_revision=rev, stable_revision=rev, default_image=IMAGE
    )
    canary = copy.deepcopy(SPEC)
    canary["runtime"]["env"][0]["value"] = "canary"
    during = stablespec.record(
        rec,
        spec_body=canary,
        spec_revision=_revision(canary),
        stable_revision=rev,
        default_image=IMAGE,
    )
    assert during == rec
    assert (
        stablespec.record(
            rec, spec_body=canary, spec_revision="x", stable_revision="y", default_image=IMAGE
        )
        is None
    )


def test_a_deleted_stable_is_rebuilt_as_the_same_revision_though_the_spec_moved_on() -> None:
    rev = _revision(SPEC)
    rec = stablespec.record(
        None, spec_body=SPEC, spec_revision=rev, stable_revision=rev, default_image=IMAGE
    )
    canary = copy.deepcopy(SPEC)
    canary["runtime"]["env"][0]["value"] = "canary"
    found = stablespec.recorded(rec, _d(canary), rev)
    assert found is not None
    old, image = found
    deploy, rebuilt = builders.deployment(old, default_image=image, replicas=2)
    assert rebuilt == rev and deploy["metadata"]["name"] == f"chat-{rev}"
    assert deploy["spec"]["replicas"] == 2


@pytest.mark.parametrize(
    "rec",
    [
        None,
        {"revision": "other", "defaultImage": IMAGE, "spec": "{}"},
        {"revision": "REV", "defaultImage": IMAGE, "spec": "not json"},
        {"revision": "REV", "defaultImage": IMAGE, "spec": '{"model": 3}'},
        {"revision": "REV", "defaultImage": IMAGE, "spec": {"model": {}}},
    ],
    ids=["none", "other-revision", "bad-json", "invalid-spec", "not-a-string"],
)
def test_nothing_usable_recorded_rebuilds_nothing(rec: dict[str, Any] | None) -> None:
    assert stablespec.recorded(rec, _d(SPEC), "REV") is None
