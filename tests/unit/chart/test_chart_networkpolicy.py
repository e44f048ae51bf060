"""The optional NetworkPolicy (networkPolicy.enabled) admits exactly what model pods need: the
operator on gRPC, HTTP and metrics, clients and the front door on gRPC and the OpenAI HTTP port,
anyone on the plaintext health port the kubelet probes, and nobody else. Rendered with the real helm binary."""

from __future__ import annotations

from typing import Any

import pytest
from llm_operator import builders, spec
from llm_runtime.api import contract

from tests.unit.chart.helmrender import CHART, NAMESPACE, RELEASE, Doc, of_kind, render, run_helm
from tests.unit.chart.helmrender import selects as _matches

pytestmark = pytest.mark.unit

ON = "networkPolicy.enabled=true"


def _policies(scenario: str, *sets: str) -> dict[str, Doc]:
    return {
        p["metadata"]["namespace"]: p for p in of_kind(render(scenario, *sets), "NetworkPolicy")
    }


def _rule_for(policy: Doc, *ports: str) -> Doc:
    """The ingress rule whose ports are exactly these named ports."""
    (rule,) = [
        r for r in policy["spec"]["ingress"] if {p["port"] for p in r["ports"]} == set(ports)
    ]
    return dict(rule)


def _runtime_template() -> Doc:
    """The pod template the operator builds for a plain LLMDeployment."""
    body: dict[str, Any] = {
        "metadata": {"name": "chat", "namespace": "team-a", "uid": "u", "generation": 1},
        "spec": {"model": {"name": "m", "source": "builtin://smollm2-135m-instruct"}},
    }
    deploy, _ = builders.deployment(spec.parse(body), default_image="img")
    return dict(deploy["spec"]["template"])


def _runtime_pod_labels() -> dict[str, str]:
    return dict(_runtime_template()["metadata"]["labels"])


def test_no_network_policy_unless_enabled() -> None:
    assert not _policies("namespaced-values.yaml")


def test_the_scenario_protects_its_namespace_and_lets_prometheus_scrape() -> None:
    (policy,) = _policies("networkpolicy-values.yaml").values()
    assert policy["metadata"]["namespace"] == "ml"
    (scraper,) = _rule_for(policy, "metrics")["from"]
    assert scraper["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }


def test_one_policy_per_watched_namespace_selecting_runtime_pods_only() -> None:
    policies = _policies("namespaced-values.yaml", ON)
    assert sorted(policies) == ["team-a", "team-b"]
    for policy in policies.values():
        assert policy["spec"]["policyTypes"] == ["Ingress"]  # everything not listed is denied
        selector = policy["spec"]["podSelector"]
        assert _matches(selector, _runtime_pod_labels())
        frontdoor = {contract.LABEL_INSTANCE: "chat", contract.LABEL_FRONTDOOR: "chat"}
        assert not _matches(selector, frontdoor)


def test_the_operator_reaches_grpc_http_and_metrics_from_its_own_namespace() -> None:
    policy = _policies("namespaced-values.yaml", ON)["team-a"]
    (peer,) = _rule_for(policy, "grpc", "http", "metrics")["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}
    operator_pod = {"app.kubernetes.io/name": "llm-operator", "app.kubernetes.io/instance": RELEASE}
    assert _matches(peer["podSelector"], operator_pod)


def test_clients_reach_grpc_and_http_and_the_front_door_always_gets_in() -> None:
    policy = _policies("namespaced-values.yaml", ON)["team-a"]
    frontdoor, *clients = _rule_for(policy, "grpc", "http")["from"]
    assert clients == [{"podSelector": {}}]
    assert _matches(frontdoor["podSelector"], {contract.LABEL_FRONTDOOR: "chat"})
    assert set(frontdoor) == {"podSelector"}  # the model's own namespace only


def test_clients_are_configurable_without_locking_out_the_front_door() -> None:
    sets = (ON, "networkPolicy.clients[0].namespaceSelector.matchLabels.team=apps")
    rule = _rule_for(_policies("namespaced-values.yaml", *sets)["team-b"], "grpc", "http")
    frontdoor, client = rule["from"]
    assert client == {"namespaceSelector": {"matchLabels": {"team": "apps"}}}
    assert contract.LABEL_FRONTDOOR in str(frontdoor)


def test_probes_reach_the_health_port_from_the_node() -> None:
    policy = _policies("namespaced-values.yaml", ON)["team-a"]
    assert "from" not in _rule_for(policy, "health")  # any source: the kubelet is not a pod
    narrowed = _policies(
        "namespaced-values.yaml", ON, "networkPolicy.probeSources[0].ipBlock.cidr=10.0.0.0/16"
    )["team-a"]
    assert _rule_for(narrowed, "health")["from"] == [{"ipBlock": {"cidr": "10.0.0.0/16"}}]


def test_metrics_scrapers_get_the_metrics_port_only() -> None:
    assert len(_policies("namespaced-values.yaml", ON)["team-a"]["spec"]["ingress"]) == 3
    sets = (ON, "networkPolicy.metricsScrapers[0].namespaceSelector.matchLabels.name=monitoring")
    rule = _rule_for(_policies("namespaced-values.yaml", *sets)["team-a"], "metrics")
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]


def test_every_port_the_policy_names_is_a_runtime_container_port() -> None:
    (runtime,) = _runtime_template()["spec"]["containers"]
    policy = _policies("namespaced-values.yaml", ON)["team-a"]
    named = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert named == {p["name"] for p in runtime["ports"]} == {"grpc", "metrics", "health", "http"}


def test_explicit_namespaces_win_and_a_clusterwide_install_must_name_them() -> None:
    proc = run_helm("template", RELEASE, str(CHART), "--set", ON)
    assert proc.returncode != 0
    assert "networkPolicy.namespaces" in proc.stderr
    policies = _policies("default-values.yaml", ON, "networkPolicy.namespaces={ml}")
    assert sorted(policies) == ["ml"]
