"""Which pods belong to a revision: those its Deployment's ReplicaSets own, not any pod that
carries its labels. Pure.

Labels are free to copy: a hand-made pod with a revision's labels (and the selector's) would
otherwise be scraped, smoke-prompted and counted in the canary's share, and could pass or fail a
canary on its own say. A Deployment's ReplicaSet is named `<deployment>-<pod-template-hash>`
and is each of its pods' controller owner; a pod whose owner reference names a UID that does not
exist is removed by the garbage collector, so a forged reference does not live long either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from llm_runtime.api import contract

Obj = Mapping[str, Any]
P = TypeVar("P", bound=Mapping[str, Any])
TEMPLATE_HASH_LABEL = "pod-template-hash"  # set by the Deployment controller on its pods


def _meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _revision(obj: Obj) -> str:
    return str((_meta(obj).get("labels") or {}).get(contract.LABEL_REVISION, ""))


def _controller(pod: Obj) -> Mapping[str, Any] | None:
    refs = _meta(pod).get("ownerReferences") or ()
    return next((r for r in refs if r.get("controller") is True), None)


def deployments_by_revision(deployments: Iterable[Obj]) -> dict[str, set[str]]:
    """Deployment names per revision label (normally one each)."""
    out: dict[str, set[str]] = {}
    for dep in deployments:
        out.setdefault(_revision(dep), set()).add(str(_meta(dep).get("name", "")))
    return out


def is_owned(pod: Obj, names: Mapping[str, set[str]]) -> bool:
    """True when the pod's controller is a ReplicaSet of a Deployment of the pod's revision."""
    ref = _controller(pod)
    template_hash = (_meta(pod).get("labels") or {}).get(TEMPLATE_HASH_LABEL)
    if ref is None or ref.get("kind") != "ReplicaSet" or not template_hash:
        return False
    if str(ref.get("apiVersion", "")).split("/")[0] != "apps":
        return False
    expected = {f"{d}-{template_hash}" for d in names.get(_revision(pod), set())}
    return ref.get("name") in expected


def owned_pods(pods: Sequence[P], deployments: Iterable[Obj]) -> list[P]:
    """The pods the revisions' own ReplicaSets control; every other pod is ignored."""
    names = deployments_by_revision(deployments)
    return [p for p in pods if is_owned(p, names)]
