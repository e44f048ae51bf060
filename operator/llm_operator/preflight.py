"""Problems that need the cluster to fix (pure): observed objects -> named problems -> conditions.

Each check reads what the tick already gathered (pods, the serving Deployment, Events, claims)
or the spec alone, and names the problem the way a user would search for it: the missing Secret,
the PriorityClass, the image, the claim, the field. A problem becomes a condition of its own
type (present only while the problem is), an Event when it first appears or its message changes,
and, when it means the replicas can never load, the phase `Failed` instead of `Loading`.

Ownership: a child whose name is taken by an object this LLMDeployment does not control (no
controller ownerReference with its uid) is never applied; `conflict` says why.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from llm_operator import spec

Obj = Mapping[str, Any]
# The phase a problem forces: Failed when nothing loads until someone acts, Degraded when the
# cluster may still recover on its own (a registry back, a deadline not final), None when the
# replicas serve anyway (a warning the status carries as a condition only).
ProblemPhase = Literal["Failed", "Degraded"] | None


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing the cluster must change: its condition type, reason and message."""

    type: str
    reason: str
    message: str
    phase: ProblemPhase = "Failed"


# ----- ownership ------------------------------------------------------------------------------
def controlled_by(obj: Obj, uid: str) -> bool:
    """Whether `obj` carries a controller ownerReference to the object with `uid`."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)


def _holder(meta: Mapping[str, Any]) -> str:
    """Who holds a foreign object: its controller, else its first field manager."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return f"owned by {ref.get('kind')}/{ref.get('name')}"
    managers = [str(m.get("manager")) for m in meta.get("managedFields") or [] if m.get("manager")]
    return f"managed by {managers[0]}" if managers else "not owned by any controller"


def conflict(existing: Obj | None, *, kind: str, name: str, uid: str) -> Problem | None:
    """A NameConflict when an object of this kind and name exists that we do not control."""
    if existing is None or controlled_by(existing, uid):
        return None
    holder = _holder(existing.get("metadata") or {})
    message = f"{kind}/{name} already exists and is {holder}; the operator leaves it untouched"
    return Problem("NameConflict", "NameConflict", message)


# ----- pods -----------------------------------------------------------------------------------
# Waiting reasons of an image that will not arrive: reason -> phase it forces.
IMAGE_REASONS: dict[str, ProblemPhase] = {
    "ErrImageNeverPull": "Failed",
    "InvalidImageName": "Failed",
    "ErrImagePull": "Degraded",
    "ImagePullBackOff": "Degraded",
}
_MISSING = re.compile(r'(secret|configmap)s? "?\'?([a-z0-9.-]+)"?\'? not found', re.IGNORECASE)


def _statuses(pod: Obj) -> list[Mapping[str, Any]]:
    st = pod.get("status") or {}
    return [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def missing_object(text: str) -> Problem | None:
    """A SecretNotFound / ConfigMapNotFound named in a kubelet message, if it names one."""
    m = _MISSING.search(text)
    if m is None:
        return None
    if m.group(1).lower() == "secret":
        return Problem("SecretMissing", "SecretNotFound", f"Secret {m.group(2)!r} not found")
    return Problem("ConfigMapMissing", "ConfigMapNotFound", f"ConfigMap {m.group(2)!r} not found")


def pod_problems(pods: Iterable[Obj]) -> list[Problem]:
    """Image problems and missing Secrets (env secretKeyRef) from the pods' container statuses."""
    out: list[Problem] = []
    for pod in pods:
        for c in _statuses(pod):
            waiting = (c.get("state") or {}).get("waiting") or {}
            reason, text = str(waiting.get("reason") or ""), str(waiting.get("message") or "")
            where = f"pod {_name(pod)} container {c.get('name')}"
            if reason in IMAGE_REASONS:
                message = f"{where}: image {c.get('image')!r}: {text or reason}"
                out.append(Problem("ImagePullFailed", reason, message, IMAGE_REASONS[reason]))
            elif reason == "CreateContainerConfigError" and (found := missing_object(text)):
                out.append(dataclasses.replace(found, message=f"{where}: {found.message}"))
    return out


# ----- Events ---------------------------------------------------------------------------------
def event_problems(
    events: Iterable[Obj], *, pods: Iterable[str], owners: Iterable[str], short: bool
) -> list[Problem]:
    """FailedMount / Multi-Attach Warnings about the pods named in `pods`, and FailedCreate
    Warnings about the ReplicaSets of the Deployments in `owners` while `short` (fewer pods
    than wanted: an old FailedCreate of a ReplicaSet that has since caught up is history)."""
    pod_names, prefixes = set(pods), tuple(f"{n}-" for n in owners)
    out: list[Problem] = []
    for ev in events:
        about = ev.get("involvedObject") or {}
        name, kind = str(about.get("name", "")), str(about.get("kind", ""))
        reason, text = str(ev.get("reason") or ""), str(ev.get("message") or "")
        if kind == "Pod" and name in pod_names:
            if reason == "FailedMount":
                found = missing_object(text)
                out.append(found or Problem("VolumeMountFailed", "FailedMount", text, "Degraded"))
            elif reason == "FailedAttachVolume" and "Multi-Attach" in text:
                out.append(Problem("ClaimConflict", "ReadWriteOnceClaimShared", text))
        elif (
            kind == "ReplicaSet"
            and short
            and name.startswith(prefixes)
            and reason == "FailedCreate"
        ):
            out.append(_create_failure(f"ReplicaSet {name}: {text}"))
    return out


def _create_failure(text: str) -> Problem:
    if "PriorityClass" in text:
        return Problem("PriorityClassMissing", "PriorityClassNotFound", text)
    return Problem("ReplicaFailure", "FailedCreate", text)


# ----- the Deployment -------------------------------------------------------------------------
def deployment_problems(deployment: Obj | None) -> list[Problem]:
    """ReplicaFailure (pods refused at creation) and ProgressDeadlineExceeded conditions."""
    out: list[Problem] = []
    for c in ((deployment or {}).get("status") or {}).get("conditions") or []:
        text = f"Deployment {_name(deployment or {})}: {c.get('message') or c.get('reason')}"
        if c.get("type") == "ReplicaFailure" and c.get("status") == "True":
            out.append(_create_failure(text))
        elif c.get("reason") == "ProgressDeadlineExceeded" and c.get("status") == "False":
            out.append(
                Problem("ProgressDeadlineExceeded", "ProgressDeadlineExceeded", text, "Degraded")
            )
    return out


# ----- claims ---------------------------------------------------------------------------------
def _claim_nodes(pods: Iterable[Obj]) -> dict[str, set[str]]:
    """claimName -> the nodes of the (scheduled) pods that mount it."""
    nodes: dict[str, set[str]] = {}
    for pod in pods:
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and node:
                nodes.setdefault(str(claim), set()).add(node)
    return nodes


def claim_problems(claims: Mapping[str, Obj], pods: Iterable[Obj]) -> list[Problem]:
    """A ReadWriteOnce claim mounted by pods on more than one node (`claims`: name -> PVC)."""
    nodes = _claim_nodes(pods)
    out = []
    for name, pvc in sorted(claims.items()):
        modes = (pvc.get("spec") or {}).get("accessModes") or []
        on = sorted(nodes.get(name, ()))
        if "ReadWriteOnce" in modes and len(on) > 1:
            message = (
                f"PersistentVolumeClaim {name!r} is ReadWriteOnce but pods on nodes "
                f"{', '.join(on)} mount it; use ReadWriteMany or ReadOnlyMany, or one replica"
            )
            out.append(Problem("ClaimConflict", "ReadWriteOnceClaimShared", message))
    return out


def claims_wanted(pods: Iterable[Obj]) -> set[str]:
    """Claims the pods mount from more than one node (only then is the PVC worth reading)."""
    return {c for c, on in _claim_nodes(pods).items() if len(on) > 1}


# ----- KV cache -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ModelShape:
    """What sizes a model's KV cache: 2 (K and V) x layers x kv_heads x head_dim x dtype bytes."""

    layers: int
    kv_heads: int
    head_dim: int

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


# Known models by source (tests/unit/runtime/models checks each against the model's own config).
MODEL_SHAPES: dict[str, ModelShape] = {
    "builtin://smollm2-135m-instruct": ModelShape(layers=30, kv_heads=3, head_dim=64),
}
# The runtime computes in bfloat16 for `auto` (llm_operator.pod.fetch_dtype).
DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}
_SUFFIX = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}  # fmt: skip


def quantity_bytes(value: int | str) -> int | None:
    """A memory quantity ("512Mi", "2G", 1073741824) in bytes; None when it cannot be read."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kMGT]i?|)", str(value).strip())
    if m is None or m.group(2) not in _SUFFIX:
        return None
    return int(float(m.group(1)) * _SUFFIX[m.group(2)])


def kv_cache_problem(s: spec.LLMDeploymentSpec) -> Problem | None:
    """The worst-case KV cache (every slot at full length) above the memory limit."""
    shape = MODEL_SHAPES.get(s.model.source)
    limit = s.runtime.resources.limits.get("memory")
    limit_bytes = quantity_bytes(limit) if limit is not None else None
    if shape is None or limit_bytes is None:
        return None
    lim = s.runtime.limits
    per_token = shape.kv_bytes_per_token(DTYPE_BYTES[s.model.dtype])
    need = lim.max_batch_size * (lim.max_input_tokens + lim.max_new_tokens) * per_token
    if need <= limit_bytes:
        return None
    message = (
        f"runtime.limits.maxBatchSize ({lim.max_batch_size}) x (maxInputTokens "
        f"({lim.max_input_tokens}) + maxNewTokens ({lim.max_new_tokens})) x {per_token} KV "
        f"bytes/token = {need / 2**20:.0f}Mi exceeds runtime.resources.limits.memory ({limit}); "
        "a full batch would be OOM-killed"
    )
    return Problem("KVCacheExceedsMemory", "KVCacheExceedsMemoryLimit", message, None)


# ----- conditions and Events ------------------------------------------------------------------
def merged(problems: Iterable[Problem]) -> list[Problem]:
    """One problem per condition type (the first's reason and phase, distinct messages joined)."""
    by_type: dict[str, Problem] = {}
    for p in problems:
        have = by_type.get(p.type)
        if have is None:
            by_type[p.type] = p
        elif p.message not in have.message:
            by_type[p.type] = dataclasses.replace(have, message=f"{have.message}; {p.message}")
    return list(by_type.values())


def blocking(problems: Sequence[Problem]) -> Problem | None:
    """The problem that sets the phase: the first Failed one, else the first Degraded one."""
    for phase in ("Failed", "Degraded"):
        for p in problems:
            if p.phase == phase:
                return p
    return None


def conditions(problems: Iterable[Problem]) -> list[dict[str, Any]]:
    """One True condition per problem type (without times: status.with_times adds them)."""
    return [
        {"type": p.type, "status": "True", "reason": p.reason, "message": p.message}
        for p in problems
    ]


def appeared(problems: Iterable[Problem], previous: Sequence[Mapping[str, Any]]) -> list[Problem]:
    """Problems not already on record with the same reason and message: the Events to post."""
    old = {(c.get("type"), c.get("reason"), c.get("message")) for c in previous}
    return [p for p in problems if (p.type, p.reason, p.message) not in old]
