"""Converging per-revision Deployments to the rollout plan (pure): what to apply, scale, delete.

Only the spec's revision can be built from the spec; every other revision (the stable one while
a canary runs, an old one draining) already has a Deployment, so it is only ever resized. A
revision the plan no longer lists is scaled to 0 first and deleted once its pods are gone, so
its replicas drain through their grace period instead of vanishing with the Deployment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from llm_operator import naming
from llm_operator.rollout import plan


@dataclasses.dataclass(frozen=True)
class Existing:
    """One revision's Deployment as it is now."""

    name: str
    revision: str
    replicas: int
    pods: int  # pods of this revision (any state) still around


@dataclasses.dataclass(frozen=True)
class Actions:
    """What to do this tick. `apply` is the replica count for the spec revision's Deployment
    (server-side apply of the whole object), None when it is not wanted or already right."""

    apply: int | None = None
    scale: tuple[tuple[str, int], ...] = ()
    delete: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # planned revisions without a Deployment that cannot be rebuilt

    @property
    def empty(self) -> bool:
        return self.apply is None and not self.scale and not self.delete


def existing(
    deployments: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> list[Existing]:
    """Deployments (raw dicts) with their revision label and the number of their pods."""
    counts: dict[str, int] = {}
    for p in pods:
        rev = ((p.get("metadata") or {}).get("labels") or {}).get(naming.LABEL_REVISION, "")
        counts[rev] = counts.get(rev, 0) + 1
    out = []
    for dep in deployments:
        meta = dep.get("metadata") or {}
        rev = str((meta.get("labels") or {}).get(naming.LABEL_REVISION, ""))
        out.append(
            Existing(
                name=str(meta.get("name", "")),
                revision=rev,
                replicas=int((dep.get("spec") or {}).get("replicas") or 0),
                pods=counts.get(rev, 0) if rev else 0,
            )
        )
    return out


def converge(
    *,
    planned: Sequence[plan.Workload],
    spec_revision: str,
    current: Sequence[Existing],
    keep: Collection[str],
    force_apply: bool = False,
    routed: Collection[str] | None = frozenset(),
) -> Actions:
    """The actions that bring `current` to `planned`.

    `keep`: revisions whose Deployment must survive even at 0 (the stable while Recreate starts
    the new one: a failed start brings it back). `force_apply` re-applies the spec revision even
    when its size is right (drift repair undoes manual edits of the template). `routed`:
    revisions a front door still sends its stable traffic to, left as they are (neither scaled
    down nor deleted) until it stops; None when that is unknown (a front door could not be read), which
    holds every retirement.
    """
    by_rev = {e.revision: e for e in current if e.revision}
    want = {w.revision: w.replicas for w in planned}
    apply = None
    scale: list[tuple[str, int]] = []
    missing: list[str] = []
    for rev, replicas in want.items():
        have = by_rev.get(rev)
        if rev == spec_revision:
            if force_apply or have is None or have.replicas != replicas:
                apply = replicas
        elif have is None:
            missing.append(rev)
        elif have.replicas != replicas:
            scale.append((have.name, replicas))
    delete: list[str] = []
    for e in current:
        if e.revision in want or routed is None or e.revision in routed:
            continue
        if e.replicas != 0:
            scale.append((e.name, 0))
        elif e.pods == 0 and e.revision not in keep:
            delete.append(e.name)
    return Actions(apply=apply, scale=tuple(scale), delete=tuple(delete), missing=tuple(missing))
