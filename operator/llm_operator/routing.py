"""Desired state of the front door (`trafficRouting: FrontDoor`), as pure functions.

With the front door, the LLMDeployment's Services select the front door's pods instead of the
runtime's; each front door pod forwards every request to the stable or the canary revision by
the step's weight (`llm-runtime frontdoor`, package `llm_runtime.frontdoor`). It reaches each
revision through that revision's own headless Service (`NAME-REVISION`, one DNS record per
ready pod, spread by the channel's round_robin), and reads the weight from a ConfigMap
(`NAME-frontdoor`, key routes.json) the rollout tick rewrites on every change of the rollout.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from llm_runtime.api import contract
from prometheus_client.parser import text_string_to_metric_families

from llm_operator import naming, pod, spec
from llm_operator.rollout import pods as rollout_pods
from llm_operator.rollout.state import RolloutPhase, RolloutStatus

Obj = dict[str, Any]
FRONTDOOR_CONTAINER = "frontdoor"


def enabled(d: spec.LLMDeployment) -> bool:
    return d.spec.rollout.traffic_routing == "FrontDoor"


def name(owner: str) -> str:
    """The front door's Deployment, PodDisruptionBudget and routes ConfigMap."""
    return f"{owner}-frontdoor"


def selector_labels(owner: str) -> dict[str, str]:
    """The front door's pods: not LABEL_DEPLOYMENT, so no runtime pod list ever counts them."""
    return {contract.LABEL_INSTANCE: owner, contract.LABEL_FRONTDOOR: owner}


def revision_target(d: spec.LLMDeployment, revision: str) -> str:
    """The gRPC target of one revision's pods: its headless Service's DNS name."""
    host = f"{naming.deployment_name(d.owner.name, revision)}.{d.owner.namespace}.svc.cluster.local"
    return f"dns:///{host}:{d.spec.service.port}"


def routes(d: spec.LLMDeployment, r: RolloutStatus, *, spec_revision: str) -> dict[str, Any]:
    """The front door's config for this rollout state: the canary gets the step's weight while
    it is being judged (Canary, Paused, Promoting); otherwise everything goes to the stable."""
    stable = r.stable_revision or spec_revision
    if r.phase is RolloutPhase.RECREATING and r.canary_revision:
        stable = r.canary_revision  # Recreate: the new revision serves alone
    out: dict[str, Any] = {
        "stable": {"target": revision_target(d, stable), "revision": stable},
        "canary": None,
        "weight": 0,
    }
    judged = (RolloutPhase.CANARY, RolloutPhase.PAUSED, RolloutPhase.PROMOTING)
    weight = _weight(d, r) if r.canary_revision and r.phase in judged else 0
    if r.canary_revision and weight > 0:
        # Named only once it takes traffic: its Service then has Ready endpoints, so the front
        # door's first resolution of the name succeeds (a failed one backs off for seconds).
        canary = r.canary_revision
        out["canary"] = {"target": revision_target(d, canary), "revision": canary}
        out["weight"] = weight
    return out


def _weight(d: spec.LLMDeployment, r: RolloutStatus) -> int:
    """The step's weight; while Promoting (the canary scales to full size and may not be Ready
    yet) the last step's, not 100, so no pod gets more than it was judged on."""
    steps = d.spec.rollout.steps
    if r.phase is RolloutPhase.PROMOTING:
        return steps[min(r.step, len(steps) - 1)].weight if steps else r.weight
    if r.step_ready_at is not None:
        return r.weight
    # The step's pods are not all Ready yet: the previous step's weight (its pods still serve),
    # or none at the first step, so no request waits on a pod that cannot answer.
    return steps[r.step - 1].weight if 0 < r.step <= len(steps) else 0


def routes_config_map(d: spec.LLMDeployment, config: dict[str, Any]) -> Obj:
    """The ConfigMap the front door pods mount; canonical JSON, so an unchanged route is an
    unchanged object (nothing written)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": naming.child_metadata(d, name=name(d.owner.name), component="frontdoor"),
        "data": {contract.FRONTDOOR_ROUTES_KEY: text},
    }


def revision_service(d: spec.LLMDeployment, revision: str) -> Obj:
    """One revision's headless Service: the front door's way to exactly that revision's pods."""
    svc_name = naming.deployment_name(d.owner.name, revision)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": naming.child_metadata(
            d, name=svc_name, component="revision-service", revision=revision
        ),
        "spec": {
            "clusterIP": "None",
            "selector": naming.revision_selector_labels(d.owner.name, revision),
            "ports": [
                {
                    "name": "grpc",
                    "port": d.spec.service.port,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                }
            ],
            "publishNotReadyAddresses": False,
        },
    }


def _container(d: spec.LLMDeployment, image: str) -> Obj:
    port = d.spec.service.port
    probe = {"grpc": {"port": port, "service": ""}, "periodSeconds": 2, "timeoutSeconds": 2}
    return {
        "name": FRONTDOOR_CONTAINER,
        "image": image,
        "imagePullPolicy": d.spec.runtime.image_pull_policy,
        "args": [
            "frontdoor",
            "--config",
            f"{contract.FRONTDOOR_CONFIG_DIR}/{contract.FRONTDOOR_ROUTES_KEY}",
            "--port",
            str(port),
            "--metrics-port",
            str(contract.RUNTIME_METRICS_PORT),
            # Clients' long-lived channels move, also onto front door replicas added later.
            "--max-connection-age-seconds",
            str(d.spec.service.max_connection_age_seconds),
            "--max-connection-age-grace-seconds",
            str(d.spec.service.max_connection_age_grace_seconds),
        ],
        "ports": [
            {"name": "grpc", "containerPort": port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": contract.RUNTIME_METRICS_PORT, "protocol": "TCP"},
        ],
        # The system resolver (getaddrinfo): it reads /etc/hosts as well as cluster DNS, and
        # returns every address of a headless name; c-ares, gRPC's default, asks DNS servers only.
        "env": [{"name": "GRPC_DNS_RESOLVER", "value": "native"}],
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
        "volumeMounts": [
            {"name": "routes", "mountPath": contract.FRONTDOOR_CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": pod.container_security_context(),
        "readinessProbe": {**probe, "failureThreshold": 2},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
        # Endpoints drop a stopping pod before its calls are cut (as for the runtime).
        "lifecycle": {"preStop": {"sleep": {"seconds": pod.PRESTOP_SLEEP_SECONDS}}},
    }


def deployment(d: spec.LLMDeployment, *, image: str) -> Obj:
    """The front door's pods: stateless, so a plain rolling update; never on the hot path of
    a model load (no init container, starts in about a second)."""
    labels = selector_labels(d.owner.name)
    meta = naming.child_metadata(d, name=name(d.owner.name), component="frontdoor")
    # Without LABEL_DEPLOYMENT: the tick lists the runtime's Deployments by it, and would take
    # this one for a revision to retire.
    common = {
        **{k: v for k, v in naming.common_labels(d.owner.name).items()},
        contract.LABEL_COMPONENT: "frontdoor",
    }
    del common[contract.LABEL_DEPLOYMENT]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**meta, "labels": {**common, **labels}},
        "spec": {
            "replicas": d.spec.rollout.front_door_replicas,
            "selector": {"matchLabels": labels},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                # The common labels too: the operator's pod watch selects managed-by and
                # instance, and a former stable's retirement asks the pods it finds there.
                "metadata": {"labels": {**common, **labels}},
                "spec": {
                    "serviceAccountName": naming.service_account_name(d.owner.name),
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": pod.PRESTOP_SLEEP_SECONDS
                    + d.spec.drain_grace_period_seconds
                    + 5,
                    "securityContext": pod.pod_security_context(),
                    "containers": [_container(d, image)],
                    "volumes": [
                        {"name": "routes", "configMap": {"name": name(d.owner.name)}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
        },
    }


def pod_disruption_budget(d: spec.LLMDeployment) -> Obj:
    """Voluntary disruptions take at most one front door pod at a time."""
    meta = naming.child_metadata(d, name=name(d.owner.name), component="frontdoor")
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta,
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(d.owner.name)}},
    }


def ready_front_doors(pods: Iterable[Mapping[str, Any]], owner: str) -> list[Mapping[str, Any]]:
    """The front door pods of `owner` that serve now: live and Ready (the same test as the
    runtime pods', rollout.pods.ready_names), with an IP."""
    mine = [
        p
        for p in pods
        if (p.get("metadata", {}).get("labels") or {}).get(contract.LABEL_FRONTDOOR) == owner
    ]
    ready = set(rollout_pods.ready_names(mine))
    return [
        p
        for p in mine
        if p["metadata"].get("name") in ready and (p.get("status") or {}).get("podIP")
    ]


def routed_revisions(text: str) -> set[str]:
    """The revisions one front door's scrape says it sends its stable traffic to, by its
    config in force. The routes ConfigMap is what the operator asked for; this is what a pod
    applied (a kubelet rewrites a ConfigMap volume at the pod's next sync, a minute or more
    later), so a former stable is retired only once no front door names it: until then its
    requests have nowhere else to go. A canary is not held: a call the front door cannot place
    there fails before its first answer and is retried on the stable. ValueError for text that
    is not the exposition format."""
    revisions = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if (
                s.name == contract.METRIC_FRONTDOOR_BACKEND_INFO
                and s.value == 1
                and s.labels.get("backend") == "stable"
            ):
                revisions.add(str(s.labels.get("revision", "")))
    return revisions - {""}
