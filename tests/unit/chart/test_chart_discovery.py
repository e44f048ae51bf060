"""The file_sd stand-in for Kubernetes service discovery (hack/monitoring/discovery.py): the
targets and `__meta_kubernetes_*` labels Prometheus' own discovery gives pods and Endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from llm_operator import builders, spec
from llm_runtime.api import contract
from monitoring import discovery, scrape

pytestmark = pytest.mark.unit


def _pod() -> dict[str, Any]:
    body = {
        "metadata": {"name": "chat", "namespace": "team-a", "uid": "u", "generation": 1},
        "spec": {"model": {"name": "m", "source": "builtin://smollm2-135m-instruct"}},
    }
    deploy, _ = builders.deployment(spec.parse(body), default_image="img")
    template = deploy["spec"]["template"]
    return {
        "metadata": {
            **template["metadata"],
            "name": "chat-abc-1",
            "namespace": "team-a",
            "uid": "pod-uid",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "chat-abc", "controller": True}],
        },
        "spec": {**template["spec"], "nodeName": "local-node"},
        "status": {
            "phase": "Running",
            "podIP": "198.18.0.7",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def test_a_runtime_pod_has_one_target_per_container_port_with_its_labels() -> None:
    groups = discovery.pod_targets(_pod())
    by_port = {g["labels"]["__meta_kubernetes_pod_container_port_name"]: g for g in groups}
    metrics = by_port["metrics"]
    assert metrics["targets"] == [f"198.18.0.7:{contract.RUNTIME_METRICS_PORT}"]
    labels = metrics["labels"]
    key = scrape.sanitize(contract.LABEL_DEPLOYMENT)
    assert labels[f"__meta_kubernetes_pod_label_{key}"] == "chat"
    assert labels[f"__meta_kubernetes_pod_labelpresent_{key}"] == "true"
    assert labels["__meta_kubernetes_pod_ready"] == "true"
    assert labels["__meta_kubernetes_pod_controller_name"] == "chat-abc"
    assert labels["__meta_kubernetes_pod_container_init"] == "false"
    assert "grpc" in by_port and "http" in by_port  # every declared port is a target


def test_a_pod_without_an_ip_has_no_target() -> None:
    pod = _pod()
    del pod["status"]["podIP"]
    assert discovery.pod_targets(pod) == []


def test_endpoints_carry_the_service_labels_and_the_backing_pod() -> None:
    pod = _pod()
    pod["spec"]["containers"][0]["ports"] = [{"name": "metrics", "containerPort": 9090}]
    endpoints = {
        "metadata": {"name": "op-metrics", "namespace": "team-a"},
        "subsets": [
            {
                "addresses": [
                    {"ip": "198.18.0.7", "targetRef": {"kind": "Pod", "name": "chat-abc-1"}}
                ],
                "notReadyAddresses": [{"ip": "198.18.0.8"}],
                "ports": [{"name": "metrics", "port": 9090}],
            }
        ],
    }
    service = {"metadata": {"name": "op-metrics", "labels": {"app.kubernetes.io/name": "x"}}}
    ready, not_ready = discovery.endpoints_targets(endpoints, service, {"chat-abc-1": pod})
    assert ready["targets"] == ["198.18.0.7:9090"]
    assert ready["labels"]["__meta_kubernetes_service_label_app_kubernetes_io_name"] == "x"
    assert ready["labels"]["__meta_kubernetes_endpoint_port_name"] == "metrics"
    assert ready["labels"]["__meta_kubernetes_pod_name"] == "chat-abc-1"
    assert ready["labels"]["__meta_kubernetes_pod_container_port_number"] == "9090"
    assert not_ready["labels"]["__meta_kubernetes_endpoint_ready"] == "false"
    assert "__meta_kubernetes_pod_name" not in not_ready["labels"]


def test_the_stand_in_replaces_kubernetes_sd_and_needs_named_namespaces(tmp_path: Path) -> None:
    config = {
        "scrape_configs": [
            {
                "job_name": "j",
                "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": ["a"]}}],
            }
        ]
    }
    out, (w,) = discovery.stand_in(config, tmp_path)
    assert out["scrape_configs"][0]["file_sd_configs"][0]["files"] == [str(w.file)]
    assert "kubernetes_sd_configs" not in out["scrape_configs"][0]
    assert "kubernetes_sd_configs" in config["scrape_configs"][0]  # the input is left alone
    with pytest.raises(ValueError, match="name the namespaces"):
        discovery.stand_in({"scrape_configs": [{"job_name": "j", "kubernetes_sd_configs": [
            {"role": "pod"}]}]}, tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="node"):
        discovery.stand_in({"scrape_configs": [{"job_name": "j", "kubernetes_sd_configs": [
            {"role": "node", "namespaces": {"names": ["a"]}}]}]}, tmp_path)  # fmt: skip


def test_groups_are_listed_per_namespace_and_written_whole(tmp_path: Path) -> None:
    pod = _pod()
    seen: list[tuple[str, str]] = []

    def lister(resource: str, namespace: str) -> list[dict[str, Any]]:
        seen.append((resource, namespace))
        return [pod] if resource == "pods" and namespace == "team-a" else []

    w = discovery.Watched(tmp_path / "sd.json", "pod", ("team-a", "team-b"))
    groups = discovery.groups_for(w, lister)
    discovery.write(w, groups)
    assert json.loads(w.file.read_text()) == json.loads(json.dumps(groups, sort_keys=True))
    assert seen == [("pods", "team-a"), ("pods", "team-b")]
    assert len(groups) == len(discovery.pod_targets(pod))
