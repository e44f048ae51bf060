"""The tick's `converge` step: make the children match the decision, writing only what differs
from the watch caches (`children.needs_apply`), never an object another owner holds.

`apply_owned` is the one place that calls `kube.apply`: it checks ownership first, so a name
taken by something this LLMDeployment does not control is left alone and shown as a
NameConflict. The decision was persisted (`tick.persist`) before any of this runs, so an operator
that dies here resumes from the status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llm_operator import (
    builders,
    children,
    kube,
    podclient,
    preflight,
    routing,
    stablespec,
    windows,
)
from llm_operator import workloads as wl
from llm_operator.rollout import plan
from llm_operator.rollout.state import RolloutStatus

if TYPE_CHECKING:  # tick imports this module; the types only
    from llm_operator.tick import Cache, Decided, Gathered

log = logging.getLogger(__name__)
Obj = Mapping[str, Any]
# How often a name another owner holds is read again to see whether it was freed (seconds).
CONFLICT_RECHECK = 10.0


def apply_owned(
    obj: Mapping[str, Any], *, uid: str, cache: Cache, known: Obj | None = None
) -> bool:
    """Applies `obj` unless an object of its name exists that this LLMDeployment does not
    control; then records a NameConflict (the status shows it) and leaves that object alone.
    `known`: the object as the watch cache holds it (saves the GET); a name the cache does
    not hold is read first, since only labelled objects are cached."""
    meta = obj["metadata"]
    kind, name = str(obj["kind"]), str(meta["name"])
    existing = known if known is not None else kube.current(obj)
    key = f"{kind}/{name}"
    problem = preflight.conflict(existing, kind=kind, name=name, uid=uid)
    if problem is not None:
        cache.conflicts[key] = problem
        cache.conflict_checked[key] = time.monotonic()
        return False
    cache.conflicts.pop(key, None)
    cache.conflict_checked.pop(key, None)
    stored = kube.apply(obj)
    cache.applied[key] = (children.fingerprint(obj), children.version(stored))
    return True


def apply_if_needed(obj: Obj, *, uid: str, cache: Cache, kids: children.Children) -> None:
    """Applies `obj` only when the cache says it differs (or is absent): no write without a
    change. A name another owner holds is read again only every CONFLICT_RECHECK seconds."""
    key = f"{obj['kind']}/{obj['metadata']['name']}"
    live = kids.live(obj)
    if not children.needs_apply(obj, live, cache.applied.get(key)):
        return
    recent = time.monotonic() - cache.conflict_checked.get(key, float("-inf")) < CONFLICT_RECHECK
    if live is None and key in cache.conflicts and recent:
        return
    apply_owned(obj, uid=uid, cache=cache, known=live)


def apply_shared(g: Gathered, *, cache: Cache, kids: children.Children) -> None:
    """The children every revision shares (identity, Services, budget), where they differ from
    the cache; a refusal is kept for the status (phase Failed) until an apply succeeds."""
    try:
        for child in g.shared:
            apply_if_needed(child, uid=g.d.owner.uid, cache=cache, kids=kids)
    except kube.ApiError as e:
        if e.retriable:
            raise
        cache.refused_shared = f"{e.status} {e.reason}: {e.message}"
        return
    cache.refused_shared = ""


def _sized(deploy: Obj, replicas: int) -> dict[str, Any]:
    return {**deploy, "spec": {**deploy["spec"], "replicas": replicas}}


def still_routed(front_doors: Sequence[Obj]) -> set[str] | None:
    """The revisions the Ready front doors send stable traffic to, by their own metrics; None when one of
    them cannot be read (a revision is then retired on a later tick, never blindly)."""
    routed: set[str] = set()
    for door in front_doors:
        name = door["metadata"]["name"]
        got = podclient.scrape(str(door["status"]["podIP"]))
        try:
            if got.text is None:
                raise ValueError(got.error)
            routed |= routing.routed_revisions(got.text)
        except ValueError as e:
            log.info("front door %s unread (%s): no revision retires this tick", name, e)
            return None
    return routed


def apply_workloads(
    g: Gathered,
    r: RolloutStatus,
    *,
    cache: Cache,
    default_image: str,
    force: bool,
    pods: Sequence[Obj] = (),
) -> wl.Actions:
    """Applies, resizes and deletes per-revision Deployments to match the plan. The spec
    revision's Deployment is re-applied when the cache shows it drifted (or `force`). With the
    front door, a former stable keeps its pods and Service until no Ready front door (among
    `pods`) routes its stable traffic there any more: removing them earlier fails every
    request it still sends there (routing.routed_revisions)."""
    d = g.d
    planned = plan.workloads(r, d.spec.replicas)
    spec_deploy, spec_rev = builders.deployment(d, default_image=default_image)
    keep = {x for x in (r.stable_revision, r.canary_revision, r.old_revision) if x}
    name = spec_deploy["metadata"]["name"]
    listed = [x for x in g.deployments if x["metadata"]["name"] == name]
    want = {w.revision: w.replicas for w in planned}
    drifted = spec_rev in want and children.needs_apply(
        _sized(spec_deploy, want[spec_rev]),
        listed[0] if listed else None,
        cache.applied.get(f"Deployment/{name}"),
    )
    current = wl.existing(g.deployments, g.all_pods)
    routed: set[str] | None = set()
    if routing.enabled(d) and any(e.revision not in want for e in current):
        routed = still_routed(routing.ready_front_doors(pods, d.owner.name))
    actions = wl.converge(
        planned=planned,
        spec_revision=spec_rev,
        current=current,
        keep=keep,
        force_apply=force or drifted,
        routed=routed,
    )
    ns = d.owner.namespace
    if actions.apply is not None:
        sized = _sized(spec_deploy, actions.apply)
        apply_owned(sized, uid=d.owner.uid, cache=cache, known=listed[0] if listed else None)
    for name, replicas in actions.scale:
        kube.scale(
            api_version="apps/v1", kind="Deployment", namespace=ns, name=name, replicas=replicas
        )
    for name in actions.delete:
        kube.delete(api_version="apps/v1", kind="Deployment", namespace=ns, name=name)
        if routing.enabled(d):  # the retired revision's own Service goes with it
            kube.delete(api_version="v1", kind="Service", namespace=ns, name=name)
    for rev in actions.missing:
        rebuild_missing(g, rev, replicas=want[rev], cache=cache)
    return actions


def rebuild_missing(g: Gathered, rev: str, *, replicas: int, cache: Cache) -> None:
    """A planned revision whose Deployment is gone (deleted mid-canary) and that the spec no
    longer describes: rebuilt from the spec recorded in status.stableTemplate, if it is that
    revision's."""
    found = stablespec.recorded(g.previous.get("stableTemplate"), g.d, rev)
    if found is None:
        log.warning("revision %s has no Deployment and nothing recorded rebuilds it", rev)
        return
    old, image = found
    deploy, rebuilt = builders.deployment(old, default_image=image, replicas=replicas)
    if rebuilt != rev:  # rendering changed since (an operator upgrade): never a look-alike
        log.warning("revision %s: its recorded spec now renders as %s; not rebuilt", rev, rebuilt)
        return
    log.info("revision %s: Deployment rebuilt from status.stableTemplate", rev)
    apply_owned(deploy, uid=g.d.owner.uid, cache=cache, known=None)


def front_door_objects(g: Gathered, r: RolloutStatus, *, default_image: str) -> list[Obj]:
    """The front door's children for this rollout state: its routes first (the pods mount
    them), then each live revision's Service, the Deployment and its budget."""
    d = g.d
    routes = routing.routes(d, r, spec_revision=g.spec_revision)
    revisions = sorted({x for x in (r.stable_revision, r.canary_revision) if x})
    image = builders.runtime_image(d, default_image=default_image)
    return [
        routing.routes_config_map(d, routes),
        *(routing.revision_service(d, rev) for rev in revisions or [g.spec_revision]),
        routing.deployment(d, image=image),
        routing.pod_disruption_budget(d),
    ]


def converge(
    g: Gathered, t: Decided, *, cache: Cache, default_image: str, kids: children.Children
) -> None:
    """Makes the children match the decision, writing only what differs from the caches (and
    the spec's Deployment again after a refusal), and starts the analysis window of revisions
    whose step became Ready."""
    for rev in t.baseline:
        windows.baseline(g.groups.get(rev, []), cache.scrapes)
    apply_shared(g, cache=cache, kids=kids)
    try:
        if routing.enabled(g.d):  # the new routes before any Deployment moves
            for obj in front_door_objects(g, t.decision.status, default_image=default_image):
                apply_if_needed(obj, uid=g.d.owner.uid, cache=cache, kids=kids)
        apply_workloads(
            g,
            t.decision.status,
            cache=cache,
            default_image=default_image,
            force=bool(cache.refused),
            pods=kids.front_doors,
        )
        cache.refused = ""
    except kube.ApiError as e:
        if e.retriable:
            raise
        cache.refused = f"{e.status} {e.reason}: {e.message}"  # the next status says Failed
