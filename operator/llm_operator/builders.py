"""Desired state as pure functions: one LLMDeployment -> the child objects the operator applies.

Nothing here talks to the API server; handlers apply what these return with server-side apply,
so a test can assert on every field without a cluster.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from llm_operator import naming, pod, spec

Obj = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Desired:
    """Everything the operator wants to exist for one LLMDeployment, plus the revision."""

    revision: str
    children: tuple[Obj, ...]


def runtime_image(d: spec.LLMDeployment, *, default_image: str) -> str:
    """The spec's image, else the operator's configured default."""
    return d.spec.runtime.image or default_image


def deployment_strategy(s: spec.LLMDeploymentSpec) -> Obj:
    """Never drop serving capacity on a change: surge one new pod, wait for it to load, then
    retire an old one. (The Canary strategy will drive its own revisions on top of this.)"""
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def deployment(d: spec.LLMDeployment, *, default_image: str) -> tuple[Obj, str]:
    """The runtime Deployment and the revision of its pod template."""
    image = runtime_image(d, default_image=default_image)
    template, revision = pod.pod_template(d, image=image)
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": naming.child_metadata(d, name=d.owner.name, component="runtime"),
        "spec": {
            "replicas": d.spec.replicas,
            "selector": {"matchLabels": naming.selector_labels(d.owner.name)},
            "strategy": deployment_strategy(d.spec),
            "revisionHistoryLimit": 3,
            # Kubernetes marks the rollout failed after this; loading may take the whole budget.
            "progressDeadlineSeconds": d.spec.startup_budget_seconds + 120,
            "template": template,
        },
    }
    return obj, revision


def _service_ports(d: spec.LLMDeployment) -> list[Obj]:
    return [
        {
            "name": "grpc",
            "port": d.spec.service.port,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
        },
        {
            "name": "metrics",
            "port": naming.METRICS_PORT,
            "targetPort": "metrics",
            "protocol": "TCP",
        },
    ]


def service(d: spec.LLMDeployment) -> Obj:
    """The ClusterIP Service: one stable address (connection-level balancing)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": naming.child_metadata(d, name=d.owner.name, component="service"),
        "spec": {
            "type": "ClusterIP",
            "selector": naming.selector_labels(d.owner.name),
            "ports": _service_ports(d),
        },
    }


def headless_service(d: spec.LLMDeployment) -> Obj:
    """The headless Service: DNS returns every ready pod, so gRPC clients using
    `dns:///NAME-headless:PORT` with round_robin spread requests across replicas."""
    name = naming.headless_name(d.owner.name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": naming.child_metadata(d, name=name, component="headless-service"),
        "spec": {
            "clusterIP": "None",
            "selector": naming.selector_labels(d.owner.name),
            "ports": _service_ports(d),
            "publishNotReadyAddresses": False,
        },
    }


def pod_disruption_budget(d: spec.LLMDeployment) -> Obj:
    """At most one replica evicted at a time by drains; a single replica may still be evicted
    (maxUnavailable, not minAvailable, so node drains never deadlock)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": naming.child_metadata(d, name=d.owner.name, component="disruption-budget"),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": naming.selector_labels(d.owner.name)},
        },
    }


def service_account(d: spec.LLMDeployment) -> Obj:
    """A dedicated identity with no API permissions and no token mounted (the runtime needs none)."""
    name = naming.service_account_name(d.owner.name)
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": naming.child_metadata(d, name=name, component="service-account"),
        "automountServiceAccountToken": False,
    }


def desired(d: spec.LLMDeployment, *, default_image: str) -> Desired:
    """All children in apply order: identity first, then the pods, then the ways to reach them."""
    deploy, revision = deployment(d, default_image=default_image)
    children = (
        service_account(d),
        deploy,
        service(d),
        headless_service(d),
        pod_disruption_budget(d),
    )
    return Desired(revision=revision, children=children)
