"""The children of an LLMDeployment as the watch caches hold them, and when one needs a write.

The operator reads its children from kopf indexes (watch-backed, listed once at start; kopf
runs no handler before every index is filled), never with a LIST per tick: at a thousand
objects that LIST is most of the API server's load. This module is pure: what an index keeps
of an object (`slim`), under which key (`key_of`), a tick's snapshot (`Children`), and whether
a desired child differs from the cached one (`needs_apply`), so an unchanged child costs no
request. Drift (a manual edit or deletion) arrives as a watch event, which wakes the owner's
tick; the comparison then finds the difference and the tick re-applies.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llm_operator import naming

Obj = Mapping[str, Any]
Key = tuple[str, str]  # (namespace, the LLMDeployment's name from the instance label)

# The kinds kept in watch caches. Not ConfigMaps: a watch of them reads every ConfigMap in the
# watched namespaces, and the operator's RBAC grants get/create/patch on them only. The front
# door's routes ConfigMap is written when its desired text changes (see `needs_apply`).
CACHED = frozenset({"Pod", "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"})

# Metadata an index drops: large, never read by a tick (managedFields alone is often half a Pod).
_DROPPED_METADATA = ("managedFields",)
_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def key_of(body: Obj) -> Key | None:
    """The owner key of a child: its namespace and instance label; None for an unlabelled
    object (nothing the operator made, so no index keeps it)."""
    meta = body.get("metadata") or {}
    owner = (meta.get("labels") or {}).get(naming.LABEL_INSTANCE)
    if not owner:
        return None
    return str(meta.get("namespace") or ""), str(owner)


def slim(body: Obj) -> dict[str, Any]:
    """A plain-dict copy of `body` without what no tick reads: the index's memory per object."""
    out = dict(body)
    meta = dict(out.get("metadata") or {})
    for field in _DROPPED_METADATA:
        meta.pop(field, None)
    annotations = meta.get("annotations")
    if annotations and any(a in annotations for a in _DROPPED_ANNOTATIONS):
        meta["annotations"] = {
            k: v for k, v in annotations.items() if k not in _DROPPED_ANNOTATIONS
        }
    out["metadata"] = meta
    return out


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _selected(objs: Iterable[Obj], owner: str) -> list[Obj]:
    """The objects the old label selector (instance and deployment labels) would have listed."""
    want = naming.selector_labels(owner)
    return [
        o
        for o in objs
        if all(((o.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in want.items())
    ]


@dataclasses.dataclass(frozen=True)
class Children:
    """What the caches hold of one LLMDeployment's children at the start of a tick (copied on
    the event loop, so a tick in a worker thread never reads a dict the watch is changing)."""

    owner: str
    pods: tuple[Obj, ...] = ()
    deployments: tuple[Obj, ...] = ()
    # The front door's pods (no deployment label, so not among `pods`): what a former stable's
    # retirement asks first (converge.still_routed).
    front_doors: tuple[Obj, ...] = ()
    others: Mapping[str, Obj] = dataclasses.field(default_factory=dict)  # "Kind/name" -> object

    @classmethod
    def of(cls, owner: str, by_kind: Mapping[str, Sequence[Obj]]) -> Children:
        """From each kind's cached objects under the owner's key."""
        others = {
            f"{kind}/{_name(o)}": o
            for kind, objs in by_kind.items()
            if kind not in ("Pod", "Deployment")
            for o in objs
        }
        for o in by_kind.get("Deployment", ()):  # every Deployment is also found by name
            others[f"Deployment/{_name(o)}"] = o
        return cls(
            owner=owner,
            pods=tuple(_selected(by_kind.get("Pod", ()), owner)),
            deployments=tuple(_selected(by_kind.get("Deployment", ()), owner)),
            front_doors=tuple(
                p
                for p in by_kind.get("Pod", ())
                if ((p.get("metadata") or {}).get("labels") or {}).get(naming.LABEL_FRONTDOOR)
                == owner
            ),
            others=others,
        )

    def versions(self) -> tuple[tuple[str, str], ...]:
        """Pure: ("Kind/name", resourceVersion) of every cached child, sorted: two snapshots
        with the same versions hold the same objects. `others` holds every Deployment too."""
        found = {f"Pod/{_name(p)}": version(p) for p in self.pods}
        found |= {k: version(o) for k, o in self.others.items()}
        return tuple(sorted(found.items()))

    def live(self, obj: Obj) -> Obj | None:
        """The cached object of `obj`'s kind and name (None: not cached, maybe not ours)."""
        return self.others.get(f"{obj['kind']}/{_name(obj)}")


def contains(live: Any, want: Any) -> bool:
    """Whether `live` holds everything `want` says: every key of a mapping (the server adds
    defaults, never removes what was applied), lists item by item and of the same length,
    scalars equal. A server that normalizes a value (a CPU of "0.5" stored as "500m") makes
    this False, which costs one no-op apply per change of the object (see `needs_apply`)."""
    if isinstance(want, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and contains(live[k], v) for k, v in want.items()
        )
    if isinstance(want, list | tuple):
        return (
            isinstance(live, list | tuple)
            and len(live) == len(want)
            and all(contains(a, b) for a, b in zip(live, want, strict=True))
        )
    return bool(live == want)


def fingerprint(desired: Obj) -> str:
    """A canonical text of a desired child, to remember what was last applied."""
    return json.dumps(desired, sort_keys=True, separators=(",", ":"))


def version(live: Obj | None) -> str:
    return str(((live or {}).get("metadata") or {}).get("resourceVersion", ""))


def needs_apply(desired: Obj, live: Obj | None, applied: tuple[str, str] | None) -> bool:
    """Whether `desired` must be written: absent, or the cached object lacks some of it. An
    object this operator applied and nobody changed since (the same desired text, the same
    resourceVersion as the apply returned) is left alone even when the comparison disagrees,
    so a value the server normalizes is not rewritten on every tick. A kind no cache holds is
    written when its desired text differs from what was last applied (a manual edit of it is
    undone on the next change, not at once)."""
    if str(desired.get("kind")) not in CACHED:
        return applied is None or applied[0] != fingerprint(desired)
    if live is None:
        return True
    if applied is not None and applied == (fingerprint(desired), version(live)):
        return False
    return not contains(live, desired)
