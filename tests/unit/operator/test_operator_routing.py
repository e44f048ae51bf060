"""The front door's desired state: what the Services select, the routes per rollout state, and
the pods it runs (pure builders, no cluster)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from llm_operator import builders, routing, spec
from llm_operator.rollout.state import RolloutPhase, RolloutStatus
from llm_runtime.api import contract

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
IMAGE = "llm-operator/runtime:test"


def _d(**rollout: Any) -> spec.LLMDeployment:
    return spec.parse(
        {
            "metadata": {"name": "chat", "namespace": "team", "uid": "u-1", "generation": 1},
            "spec": {
                "model": {"name": "m", "source": "builtin://smollm2-135m-instruct"},
                "rollout": {
                    "trafficRouting": "FrontDoor",
                    "steps": [{"weight": 10}, {"weight": 50}],
                    **rollout,
                },
            },
        }
    )


def test_with_the_front_door_the_services_select_its_pods_not_the_runtime() -> None:
    shared = builders.desired(_d(), default_image=IMAGE).shared
    services = [o for o in shared if o["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == {"chat", "chat-headless"}
    for s in services:
        assert s["spec"]["selector"] == routing.selector_labels("chat")
        assert contract.LABEL_DEPLOYMENT not in s["spec"]["selector"]
    pods = builders.desired(_d(trafficRouting="Pods"), default_image=IMAGE).shared
    assert all(
        contract.LABEL_DEPLOYMENT in o["spec"]["selector"] for o in pods if o["kind"] == "Service"
    )


def test_routes_give_the_canary_the_step_weight_once_its_pods_are_ready() -> None:
    d = _d()
    starting = RolloutStatus(
        phase=RolloutPhase.CANARY, stable_revision="r1", canary_revision="r2", weight=10
    )
    routes = routing.routes(d, starting, spec_revision="r2")
    assert routes["stable"] == {
        "target": "dns:///chat-r1.team.svc.cluster.local:50051",
        "revision": "r1",
    }
    assert routes["weight"] == 0  # no request waits on a pod that cannot answer yet
    ready = starting.evolve(step_ready_at=NOW)
    assert routing.routes(d, ready, spec_revision="r2")["weight"] == 10
    second = ready.evolve(step=1, weight=50, step_ready_at=None)
    assert routing.routes(d, second, spec_revision="r2")["weight"] == 10  # the last Ready step's
    promoting = second.evolve(phase=RolloutPhase.PROMOTING, weight=100)
    assert routing.routes(d, promoting, spec_revision="r2")["weight"] == 50


def test_after_a_rollback_or_promotion_everything_goes_to_the_stable() -> None:
    d = _d()
    rolled_back = RolloutStatus(phase=RolloutPhase.ROLLED_BACK, stable_revision="r1")
    assert routing.routes(d, rolled_back, spec_revision="r2") == {
        "stable": {"target": "dns:///chat-r1.team.svc.cluster.local:50051", "revision": "r1"},
        "canary": None,
        "weight": 0,
    }
    draining = RolloutStatus(phase=RolloutPhase.DRAINING, stable_revision="r2", old_revision="r1")
    assert routing.routes(d, draining, spec_revision="r2")["stable"]["revision"] == "r2"


def test_the_routes_config_map_is_canonical_so_an_unchanged_route_is_an_unchanged_object() -> None:
    d = _d()
    r = RolloutStatus(stable_revision="r1")
    one = routing.routes_config_map(d, routing.routes(d, r, spec_revision="r1"))
    two = routing.routes_config_map(d, routing.routes(d, r, spec_revision="r1"))
    assert one == two
    assert json.loads(one["data"][contract.FRONTDOOR_ROUTES_KEY])["stable"]["revision"] == "r1"


def test_the_front_door_runs_non_root_read_only_from_the_runtime_image() -> None:
    deploy = routing.deployment(_d(frontDoorReplicas=3), image=IMAGE)
    assert deploy["spec"]["replicas"] == 3
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    assert c["image"] == IMAGE and c["args"][0] == "frontdoor"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["runAsNonRoot"] is True
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert routing.selector_labels("chat").items() <= pod_labels.items()
    # The operator's pod watch (handlers.OWNED) must see the front door's pods: a former
    # stable's retirement waits on them. Without these labels it saw none and never waited.
    from llm_operator import handlers

    assert (
        pod_labels["app.kubernetes.io/managed-by"] == handlers.OWNED["app.kubernetes.io/managed-by"]
    )
    assert pod_labels[contract.LABEL_INSTANCE] == "chat"
    mount = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mount["routes"] == contract.FRONTDOOR_CONFIG_DIR


def test_each_revision_has_a_headless_service_selecting_only_its_pods() -> None:
    svc = routing.revision_service(_d(), "r2")
    assert svc["metadata"]["name"] == "chat-r2"
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"][contract.LABEL_REVISION] == "r2"


def test_every_object_the_front_door_needs_has_a_rest_path() -> None:
    """kube.apply must know the path of each kind the builders produce (a missing one once
    stopped every tick with a KeyError)."""
    from llm_operator import kube

    d = _d()
    r = RolloutStatus(stable_revision="r1")
    objects = [
        *builders.desired(d, default_image=IMAGE).children,
        routing.routes_config_map(d, routing.routes(d, r, spec_revision="r1")),
        routing.revision_service(d, "r1"),
        routing.deployment(d, image=IMAGE),
        routing.pod_disruption_budget(d),
    ]
    for obj in objects:
        path = kube.path_for(
            api_version=obj["apiVersion"],
            kind=obj["kind"],
            namespace="team",
            name=obj["metadata"]["name"],
        )
        assert path.endswith("/" + obj["metadata"]["name"])


def test_the_front_door_is_never_taken_for_a_runtime_revision() -> None:
    """The tick lists the runtime's Deployments and pods by the LLMDeployment's selector and
    retires any revision it does not keep; the front door must not match it."""
    from llm_operator import naming

    deploy = routing.deployment(_d(), image=IMAGE)
    runtime = naming.selector_labels("chat")
    for labels in (deploy["metadata"]["labels"], deploy["spec"]["template"]["metadata"]["labels"]):
        assert not runtime.items() <= labels.items(), labels


def test_the_front_door_ages_client_connections_as_the_spec_says() -> None:
    from llm_runtime.frontdoor import main

    d = spec.parse(
        {
            "metadata": {"name": "chat", "namespace": "team"},
            "spec": {
                "model": {"name": "m", "source": "builtin://smollm2-135m-instruct"},
                "service": {"maxConnectionAgeSeconds": 45, "maxConnectionAgeGraceSeconds": 90},
                "rollout": {"trafficRouting": "FrontDoor"},
            },
        }
    )
    (c,) = routing.deployment(d, image=IMAGE)["spec"]["template"]["spec"]["containers"]
    settings = main.parse_args(c["args"][1:])  # the real front door's own parser
    assert (settings.max_connection_age_seconds, settings.max_connection_age_grace_seconds) == (
        45.0,
        90.0,
    )
