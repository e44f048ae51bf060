"""The rollout tick of one LLMDeployment in five named steps:

    gather -> decide -> persist -> converge -> report

Only `gather` (scrapes and smoke-prompts pods; children come from the watch caches, see
`children`), `persist` (writes the status and posts Events) and `converge` (applies what
differs from the caches, resizes and deletes Deployments; sets window baselines) do I/O.
`decide` is pure: every decision is the rollout core's (`llm_operator.rollout`) and the
status body is `status`'s. `report` only counts (operator metrics). The decision is persisted
before any Deployment changes, so an operator that dies between the two resumes from the status.

The per-object cache holds only scrapes (the start of the current analysis window), the last
status written (used while the watch has not yet delivered it: a stale body must not replay a
decision), what was last applied and the last refusal of a child.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from llm_operator import (
    builders,
    children,
    kube,
    naming,
    observe,
    preflight,
    rolloutview,
    routing,
    spec,
    stablespec,
    status,
    windows,
)
from llm_operator import metrics as op_metrics
from llm_operator import workloads as wl
from llm_operator.rollout import analysis, clock, decide, owners, plan, pods, promtext, state
from llm_operator.rollout.state import RolloutStatus

log = logging.getLogger(__name__)
Obj = Mapping[str, Any]
# Posts one Event on the LLMDeployment: (type, reason, message).
PostEvent = Callable[[str, str, str], None]


@dataclasses.dataclass
class Cache:
    """Per-object, in memory, and only a cache: losing it costs one analysis window."""

    scrapes: dict[str, promtext.Scrape] = dataclasses.field(default_factory=dict)
    based_on: str = ""  # resourceVersion of the body the last write was decided on
    written: dict[str, Any] | None = None
    refused: str = ""  # the API server's refusal of a Deployment, until an apply succeeds
    refused_shared: str = ""  # its refusal of a shared child (Service, budget, identity)
    # What was last applied, per "Kind/name": (children.fingerprint, the resourceVersion the
    # apply returned); see children.needs_apply.
    applied: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    # Children left alone because another owner holds their name (kind/name -> NameConflict),
    # and when each was last read (an uncached name costs a GET: once per CONFLICT_RECHECK).
    conflicts: dict[str, preflight.Problem] = dataclasses.field(default_factory=dict)
    conflict_checked: dict[str, float] = dataclasses.field(default_factory=dict)


# How often a name another owner holds is read again to see whether it was freed (seconds).
CONFLICT_RECHECK = 10.0


def cache_of(memo: Any) -> Cache:
    """The object's cache in kopf's per-object memo (created on first use)."""
    found = memo.get("canary_cache")
    if isinstance(found, Cache):
        return found
    fresh = Cache()
    memo["canary_cache"] = fresh
    return fresh


def previous_status(body: Obj, cache: Cache) -> dict[str, Any]:
    """The status to decide from: the body's, unless the body predates our own last write."""
    current = dict(body.get("status") or {})
    rv = str((body.get("metadata") or {}).get("resourceVersion", ""))
    if cache.written is not None and rv == cache.based_on:
        return {**current, **cache.written}
    return current


@dataclasses.dataclass(frozen=True)
class Gathered:
    """Everything one tick read: the parsed object, its status, its children and, when a window
    closed, the canary analysis."""

    d: spec.LLMDeployment
    previous: dict[str, Any]  # the status to decide from (see previous_status)
    before: RolloutStatus
    spec_revision: str
    all_pods: Sequence[Obj]
    groups: Mapping[str, list[Obj]]
    deployments: Sequence[Obj]
    annotations: Mapping[str, str] | None
    resource_version: str
    now: datetime
    results: tuple[analysis.CheckResult, ...] | None
    traffic: analysis.Traffic | None  # the closed window's split, with `results`
    apply_error: str  # a refusal of the shared children or of a Deployment, if any
    events: Sequence[Obj] = ()  # Warning Events of the namespace (read only while unsettled)
    claims: Mapping[str, Obj] = dataclasses.field(default_factory=dict)  # PVCs pods share
    conflicts: tuple[preflight.Problem, ...] = ()
    spec_body: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # as written
    default_image: str = ""  # the operator's runtime image setting
    shared: tuple[Obj, ...] = ()  # the shared children the spec asks for (builders.desired)


@dataclasses.dataclass(frozen=True)
class Decided:
    """What the tick decided: the rollout decision, the whole status to write, the Event of a
    phase change, and the revisions whose window starts now."""

    decision: decide.Decision
    new_status: dict[str, Any]
    phase_event: status.Transition | None
    baseline: tuple[str, ...]
    problems: tuple[preflight.Problem, ...] = ()  # each posts an Event when it appears


def gather(*, body: Obj, cache: Cache, settings_image: str, kids: children.Children) -> Gathered:
    """Takes the cached children and, when a window closed, analyses the canary (scrapes,
    smoke prompts)."""
    d = spec.parse(body)
    previous = previous_status(body, cache)
    before = state.from_status(previous)
    ns = d.owner.namespace
    deployments = list(kids.deployments)
    # Copied labels do not make a pod ours.
    all_pods = owners.owned_pods(list(kids.pods), deployments)
    groups = pods.by_revision(all_pods)
    windows.forget_gone_pods(cache.scrapes, all_pods)
    now = datetime.now(UTC)
    results, traffic = None, None
    if plan.analysis_due(before, d.spec, now):
        results, traffic = windows.analyse(groups=groups, r=before, d=d, scrapes=cache.scrapes)
    meta = body.get("metadata") or {}
    desired = builders.desired(d, default_image=settings_image)
    return Gathered(
        d=d,
        previous=previous,
        before=before,
        spec_revision=desired.revision,
        all_pods=all_pods,
        groups=groups,
        deployments=deployments,
        annotations=meta.get("annotations"),
        resource_version=str(meta.get("resourceVersion", "")),
        now=now,
        results=results,
        traffic=traffic,
        apply_error=cache.refused_shared or cache.refused,
        events=_warnings(ns) if unsettled(all_pods, deployments, d.spec.replicas) else (),
        claims=_claims(ns, preflight.claims_wanted(all_pods)),
        conflicts=tuple(cache.conflicts.values()),
        spec_body=body.get("spec") or {},
        default_image=settings_image,
        shared=desired.shared,
    )


def unsettled(pods: Sequence[Obj], deployments: Sequence[Obj], desired: int) -> bool:
    """Whether some pod is missing or not Ready: only then are Events worth reading."""
    views = [observe.pod_view(p) for p in pods]
    serving = [v for v in views if not v.terminating]
    return not deployments or len(serving) < desired or any(not v.ready for v in serving)


def _warnings(namespace: str) -> list[dict[str, Any]]:
    return kube.list_objects(
        api_version="v1", kind="Event", namespace=namespace, fields="type=Warning"
    )


def _claims(namespace: str, names: set[str]) -> dict[str, Obj]:
    found = {
        n: kube.get(api_version="v1", kind="PersistentVolumeClaim", namespace=namespace, name=n)
        for n in sorted(names)
    }
    return {n: pvc for n, pvc in found.items() if pvc is not None}


def problems_of(g: Gathered, serving: str) -> tuple[preflight.Problem, ...]:
    """Pure: what the cluster must fix, from the serving revision's pods, its Deployment and
    Events, the claims its pods share, the conflicts of the last applies and the spec itself."""
    pods_ = [p for p in rolloutview.pick(g.all_pods, serving) if not _terminating(p)]
    mine = rolloutview.pick(g.deployments, serving)
    names = [str(p["metadata"]["name"]) for p in pods_ if p.get("metadata")]
    short = len(pods_) < g.d.spec.replicas
    owners = [naming.deployment_name(g.d.owner.name, serving)]
    kv = preflight.kv_cache_problem(g.d.spec)
    found = [
        *g.conflicts,
        *preflight.pod_problems(pods_),
        *preflight.deployment_problems(mine[0] if mine else None),
        *preflight.event_problems(g.events, pods=names, owners=owners, short=short),
        *preflight.claim_problems(g.claims, pods_),
        *([kv] if kv else []),
    ]
    return tuple(preflight.merged(found))


def _terminating(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def serving_state(g: Gathered, serving: str) -> status.ServingState:
    """What the serving revision's Deployment and pods say (the READY column and base phase)."""
    mine = rolloutview.pick(g.deployments, serving)
    return status.ServingState(
        generation=g.d.owner.generation,
        desired=g.d.spec.replicas,
        revision=serving,
        deployment=observe.deployment_view(mine[0]) if mine else None,
        pods=tuple(observe.pod_view(p) for p in rolloutview.pick(g.all_pods, serving)),
        apply_error=g.apply_error,
        problems=problems_of(g, serving),
    )


def decide_tick(g: Gathered) -> Decided:
    """Pure: the rollout decision from what was gathered, and the whole status it implies."""
    observed = pods.observe(
        pods=g.all_pods,
        status=g.before,
        spec=g.d.spec,
        desired_revision=g.spec_revision,
        annotations=g.annotations,
        now=g.now,
        analysis=g.results,
        traffic=g.traffic,
    )
    decision = decide.decide(observed, g.before, g.d.spec, g.now)
    after = decision.status
    baseline: tuple[str, ...] = ()
    if plan.baseline_due(g.before, after):
        revs = (after.canary_revision, after.stable_revision)
        baseline = tuple(sorted({r for r in revs if r}))
    serving = serving_state(g, rolloutview.serving_revision(after, g.spec_revision))
    summary = rolloutview.summarize(status.summarize(serving), after, now=g.now)
    body_status = status.status_body(
        serving,
        selector=naming.selector_string(g.d.owner.name),
        endpoint=naming.endpoint(g.d),
        previous=g.previous,
        now=clock.format_time(g.now.replace(microsecond=0)) or "",
        v=summary,
        spec_revision=g.spec_revision,
    )
    kept = stablespec.record(
        g.previous.get("stableTemplate"),
        spec_body=g.spec_body,
        spec_revision=g.spec_revision,
        stable_revision=after.stable_revision,
        default_image=g.default_image,
    )
    new = {
        **body_status,
        "currentRevision": g.spec_revision,
        **state.to_status(after),
        "stableTemplate": kept,
    }
    return Decided(
        decision=decision,
        new_status=new,
        phase_event=status.transition(
            g.previous.get("phase"), summary, previous_reason=status.failing_reason(g.previous)
        ),
        baseline=baseline,
        problems=serving.problems,
    )


def persist(g: Gathered, t: Decided, *, cache: Cache, post: PostEvent) -> None:
    """Writes the status (only when it changed) and posts the decision's and the phase's Events.
    Runs before `converge`: the decision is on record before the Deployments move."""
    if status.changed(g.previous, t.new_status):
        kube.patch_status(
            namespace=g.d.owner.namespace,
            name=g.d.owner.name,
            patch=status.patch_of(t.new_status, previous=g.previous),
        )
    cache.based_on = g.resource_version
    cache.written = t.new_status
    ev = t.decision.event
    if ev is not None:
        post(ev.type, ev.reason, ev.message)
    if t.phase_event is not None:
        post(t.phase_event.type, t.phase_event.reason, t.phase_event.message)
    for p in preflight.appeared(t.problems, g.previous.get("conditions") or []):
        post("Warning", p.reason, p.message)


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


def apply_workloads(
    g: Gathered, r: RolloutStatus, *, cache: Cache, default_image: str, force: bool
) -> wl.Actions:
    """Applies, resizes and deletes per-revision Deployments to match the plan. The spec
    revision's Deployment is re-applied when the cache shows it drifted (or `force`)."""
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
    actions = wl.converge(
        planned=planned,
        spec_revision=spec_rev,
        current=wl.existing(g.deployments, g.all_pods),
        keep=keep,
        force_apply=force or drifted,
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
        )
        cache.refused = ""
    except kube.ApiError as e:
        if e.retriable:
            raise
        cache.refused = f"{e.status} {e.reason}: {e.message}"  # the next status says Failed


def report(g: Gathered, t: Decided) -> None:
    """Operator metrics for what this tick decided (in-process counters; no I/O)."""
    op_metrics.ROLLOUT.record(t.decision, strategy=str(g.d.spec.rollout.strategy))
    op_metrics.OBJECTS.observe(g.d, t.new_status)
    if t.phase_event is not None and g.previous.get("phase") != t.new_status["phase"]:
        op_metrics.PHASE_TRANSITIONS.labels(t.new_status["phase"]).inc()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A tick's result for the scheduler: what it decided and whether anything is in flight."""

    decided: Decided
    gathered: Gathered
    refused: bool = False  # converge's applies were refused (the next status says Failed)


def settled(o: Outcome) -> bool:
    """Pure: nothing in flight, so only a watch event (or the idle re-check) needs a tick: no
    rollout step, every wanted pod serving and Ready, none going, no problem and no refusal."""
    g, t = o.gathered, o.decided
    r = t.decision.status
    return (
        r.phase in (state.RolloutPhase.STABLE, state.RolloutPhase.ROLLED_BACK)
        and not unsettled(g.all_pods, g.deployments, g.d.spec.replicas)
        and not any(_terminating(p) for p in g.all_pods)
        and not t.problems
        and not g.apply_error
        and not o.refused
    )


def run(
    *,
    body: Obj,
    memo: Any,
    settings_image: str,
    kids: children.Children,
    post: PostEvent,
) -> Outcome:
    """One tick for one LLMDeployment: gather -> decide -> persist -> converge -> report."""
    cache = cache_of(memo)
    g = gather(
        body=body,
        cache=cache,
        settings_image=settings_image,
        kids=kids,
    )
    t = decide_tick(g)
    persist(g, t, cache=cache, post=post)
    converge(g, t, cache=cache, default_image=settings_image, kids=kids)
    report(g, t)
    return Outcome(decided=t, gathered=g, refused=bool(cache.refused or cache.refused_shared))
