"""What the watch caches keep of a child, and when a desired child needs a write."""

from __future__ import annotations

from typing import Any

import pytest
from llm_operator import children, naming, routing

pytestmark = pytest.mark.unit


def _svc(name: str = "chat", **spec: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "labels": naming.common_labels("chat")}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def test_the_server_adding_defaults_is_no_difference() -> None:
    want = _svc(ports=[{"name": "grpc", "port": 50051}])
    live = _svc(ports=[{"name": "grpc", "port": 50051, "protocol": "TCP"}], clusterIP="10.0.0.1")
    live["metadata"]["resourceVersion"] = "7"
    assert children.contains(live, want)
    assert not children.needs_apply(want, live, None)


@pytest.mark.parametrize(
    "live_spec",
    [
        {"ports": [{"name": "grpc", "port": 1}]},  # a changed value
        {"ports": []},  # an item removed
        {"ports": [{"name": "grpc", "port": 50051}, {"name": "x", "port": 2}]},  # one added
        {},  # the field removed
    ],
)
def test_an_edit_of_what_the_operator_set_is_a_difference(live_spec: dict[str, Any]) -> None:
    want = _svc(ports=[{"name": "grpc", "port": 50051}])
    assert children.needs_apply(want, _svc(**live_spec), None)


def test_an_absent_child_needs_an_apply() -> None:
    assert children.needs_apply(_svc(), None, None)


def test_a_value_the_server_normalizes_is_not_rewritten_until_the_object_changes() -> None:
    want = _svc(resources={"cpu": "0.5"})
    live = _svc(resources={"cpu": "500m"})
    live["metadata"]["resourceVersion"] = "3"
    applied = (children.fingerprint(want), "3")  # what the apply returned
    assert not children.needs_apply(want, live, applied)
    live["metadata"]["resourceVersion"] = "4"  # someone changed it since
    assert children.needs_apply(want, live, applied)
    assert children.needs_apply(_svc(resources={"cpu": "1"}), live, applied)  # new desire


def test_the_index_keeps_children_by_owner_and_drops_managed_fields() -> None:
    live = _svc()
    live["metadata"]["managedFields"] = [{"manager": "x"}]
    live["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
        "keep": "me",
    }
    assert children.key_of(live) == ("ns", "chat")
    slim = children.slim(live)
    assert "managedFields" not in slim["metadata"]
    assert slim["metadata"]["annotations"] == {"keep": "me"}
    assert "managedFields" in live["metadata"]  # the watch's own object is untouched
    assert children.key_of({"metadata": {"name": "x", "labels": {}}}) is None


def test_a_snapshot_keeps_only_the_runtime_pods_and_finds_children_by_name() -> None:
    ours = {"metadata": {"name": "p1", "labels": naming.selector_labels("chat")}}
    frontdoor = {"metadata": {"name": "p2", "labels": {naming.LABEL_INSTANCE: "chat"}}}
    deploy = {"kind": "Deployment", "metadata": {"name": "chat-abc",
              "labels": naming.common_labels("chat")}}  # fmt: skip
    kids = children.Children.of(
        "chat", {"Pod": [ours, frontdoor], "Deployment": [deploy], "Service": [_svc()]}
    )
    assert [p["metadata"]["name"] for p in kids.pods] == ["p1"]
    assert kids.front_doors == ()  # an instance label alone is not the front door's
    door = {"metadata": {"name": "p3", "labels": routing.selector_labels("chat")}}
    with_door = children.Children.of("chat", {"Pod": [ours, door]})
    assert [p["metadata"]["name"] for p in with_door.front_doors] == ["p3"]
    assert [p["metadata"]["name"] for p in with_door.pods] == ["p1"]
    assert kids.deployments == (deploy,)
    assert kids.live(_svc()) == _svc()
    assert kids.live({"kind": "Deployment", "metadata": {"name": "chat-abc"}}) == deploy
    assert kids.live(_svc("other")) is None


def test_an_uncached_kind_is_written_when_its_desired_text_changes() -> None:
    routes = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "r"},
        "data": {"a": "1"},
    }
    assert "ConfigMap" not in children.CACHED  # a watch of them would read every ConfigMap
    assert children.needs_apply(routes, None, None)  # never applied by this process
    applied = (children.fingerprint(routes), "5")
    assert not children.needs_apply(routes, None, applied)
    assert children.needs_apply({**routes, "data": {"a": "2"}}, None, applied)


def _versioned(obj: dict[str, Any], rv: str) -> dict[str, Any]:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": rv}}


def test_versions_name_every_child_a_tick_reads_and_change_with_any_of_them() -> None:
    pod = _versioned({"metadata": {"name": "p1", "labels": naming.selector_labels("chat")}}, "3")
    deploy = _versioned({"kind": "Deployment", "metadata": {"name": "chat-abc",
                         "labels": naming.common_labels("chat")}}, "4")  # fmt: skip
    svc = _versioned(_svc(), "5")
    kids = children.Children.of("chat", {"Pod": [pod], "Deployment": [deploy], "Service": [svc]})
    assert kids.versions() == (
        ("Deployment/chat-abc", "4"),
        ("Pod/p1", "3"),
        ("Service/chat", "5"),
    )
    edited = children.Children.of(
        "chat", {"Pod": [_versioned(pod, "9")], "Deployment": [deploy], "Service": [svc]}
    )
    gone = children.Children.of("chat", {"Pod": [pod], "Deployment": [deploy]})
    assert len({kids.versions(), edited.versions(), gone.versions()}) == 3
