"""Desired state as pure functions: one LLMDeployment -> the child objects the operator applies.

Nothing here talks to the API server; handlers apply what these return with server-side apply,
so a test can assert on every field without a cluster.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from llm_runtime.api import contract

from llm_operator import naming, pod, routing, spec

Obj = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Desired:
    """Everything the operator wants to exist for one LLMDeployment, plus the revision.

    `shared` are the children every revision shares (identity, Services, budget); `deployment` is
    the Deployment of the spec's revision at full size. During a canary the handler sizes it from
    the rollout plan instead (`deployment(d, replicas=...)`).
    """

    revision: str
    shared: tuple[Obj, ...]
    deployment: Obj

    @property
    def children(self) -> tuple[Obj, ...]:
        """All children in apply order: identity first, then the pods, then the ways in."""
        return (self.shared[0], self.deployment, *self.shared[1:])


def runtime_image(d: spec.LLMDeployment, *, default_image: str) -> str:
    """The spec's image, else the operator's configured default."""
    return d.spec.runtime.image or default_image


def deployment_strategy(s: spec.LLMDeploymentSpec) -> Obj:
    """A revision's pod template never changes (a change is a new revision, hence a new
    Deployment); this only governs replacing a lost pod: surge, never drop capacity."""
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def deployment(
    d: spec.LLMDeployment, *, default_image: str, replicas: int | None = None
) -> tuple[Obj, str]:
    """The Deployment of the spec's revision (`<name>-<revision>`) and the revision.

    Its selector includes the revision, so two revisions' Deployments never adopt each other's
    pods; the Services select without it, so both serve. `replicas` defaults to the spec's.
    """
    image = runtime_image(d, default_image=default_image)
    template, revision = pod.pod_template(d, image=image)
    name = naming.deployment_name(d.owner.name, revision)
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": naming.child_metadata(d, name=name, component="runtime", revision=revision),
        "spec": {
            "replicas": d.spec.replicas if replicas is None else replicas,
            "selector": {"matchLabels": naming.revision_selector_labels(d.owner.name, revision)},
            "strategy": deployment_strategy(d.spec),
            "revisionHistoryLimit": 3,
            # Kubernetes marks the rollout failed after this; loading may take the whole budget.
            "progressDeadlineSeconds": d.spec.startup_budget_seconds + 120,
            "template": template,
        },
    }
    return obj, revision


HTTP_PORT: Obj = {
    "name": "http",
    "port": contract.RUNTIME_HTTP_PORT,
    "targetPort": "http",
    "protocol": "TCP",
    "appProtocol": "http",
}


def _service_ports(d: spec.LLMDeployment) -> list[Obj]:
    """gRPC and metrics, and the OpenAI-compatible HTTP API when the Services select the runtime
    pods. With trafficRouting FrontDoor they select the front door, which proxies gRPC only, so
    they offer no HTTP port then (clients reach a pod's HTTP port on its IP)."""
    ports: list[Obj] = [
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
    return ports if routing.enabled(d) else [*ports, dict(HTTP_PORT)]


def _ways_in(d: spec.LLMDeployment) -> dict[str, str]:
    """What the Services select: the front door's pods when it splits traffic, else every
    revision's runtime pods (the canary's share is then its share of pods)."""
    if routing.enabled(d):
        return routing.selector_labels(d.owner.name)
    return naming.selector_labels(d.owner.name)


def service(d: spec.LLMDeployment) -> Obj:
    """The ClusterIP Service: one stable address (connection-level balancing)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": naming.child_metadata(d, name=d.owner.name, component="service"),
        "spec": {
            "type": "ClusterIP",
            "selector": _ways_in(d),
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
            "selector": _ways_in(d),
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
    """The shared children and the spec revision's Deployment at full size."""
    deploy, revision = deployment(d, default_image=default_image)
    shared = (
        service_account(d),
        service(d),
        headless_service(d),
        pod_disruption_budget(d),
    )
    return Desired(revision=revision, shared=shared, deployment=deploy)
