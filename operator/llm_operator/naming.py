"""Names and labels every child shares: one place, so selectors and builders cannot disagree."""

from __future__ import annotations

from llm_runtime.api import contract

from llm_operator import GROUP, KIND, VERSION, spec

# The label keys and the runtime's metrics port are the runtime contract's; these names stay.
LABEL_INSTANCE = contract.LABEL_INSTANCE
LABEL_DEPLOYMENT = contract.LABEL_DEPLOYMENT
LABEL_FRONTDOOR = contract.LABEL_FRONTDOOR
LABEL_REVISION = contract.LABEL_REVISION
LABEL_COMPONENT = contract.LABEL_COMPONENT
METRICS_PORT = contract.RUNTIME_METRICS_PORT
MODEL_MOUNT = "/models"
SOURCE_MOUNT = "/mnt/source"


def selector_labels(name: str) -> dict[str, str]:
    """Labels that select a deployment's runtime pods; never change for the object's lifetime."""
    return {LABEL_INSTANCE: name, LABEL_DEPLOYMENT: name}


def common_labels(name: str) -> dict[str, str]:
    """Labels on every child, so `kubectl get all -l <LABEL_INSTANCE>=NAME` finds them."""
    return {
        **selector_labels(name),
        "app.kubernetes.io/name": "llm-runtime",
        "app.kubernetes.io/part-of": "llm-operator",
        "app.kubernetes.io/managed-by": "llm-operator",
    }


def revision_selector_labels(name: str, revision: str) -> dict[str, str]:
    """Labels that select one revision's pods: the selector of that revision's Deployment."""
    return {**selector_labels(name), LABEL_REVISION: revision}


def deployment_name(name: str, revision: str) -> str:
    """One Deployment per revision, so stable and canary are sized independently."""
    return f"{name}-{revision}"


def selector_string(name: str) -> str:
    """The pod selector as a string, the form the scale subresource and HPAs read."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def headless_name(name: str) -> str:
    """The headless Service: one DNS A record per ready pod, for client-side round_robin."""
    return f"{name}-headless"


def service_account_name(name: str) -> str:
    return f"{name}-runtime"


def endpoint(d: spec.LLMDeployment) -> str:
    """The in-cluster gRPC address of the ClusterIP Service."""
    return f"{d.owner.name}.{d.owner.namespace}.svc:{d.spec.service.port}"


def owner_reference(owner: spec.Owner) -> dict[str, object]:
    """Makes the custom resource own a child, so deleting it cascades through the GC."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(
    d: spec.LLMDeployment, *, name: str, component: str, revision: str | None = None
) -> dict[str, object]:
    """metadata for a child object: its name, the common labels (plus the revision label for a
    revision's own objects) and the owner reference."""
    labels = {**common_labels(d.owner.name), LABEL_COMPONENT: component}
    if revision is not None:
        labels[LABEL_REVISION] = revision
    return {
        "name": name,
        "namespace": d.owner.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(d.owner)],
    }
