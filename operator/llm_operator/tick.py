"""The rollout tick of one LLMDeployment in five named steps:

    gather -> decide -> persist -> converge -> report

Only `gather` (scrapes and smoke-prompts pods; children come from the watch caches, see
`children`), `persist` (writes the status and posts Events) and `converge` (applies what
differs from the caches, resizes and deletes Deployments; sets window baselines: the module
`converge`) do I/O.
`decide` is pure: every decision is the rollout core's (`llm_operator.rollout`) and the
status body is `status`'s. `report` only counts (operator metrics). The decision is persisted
before any Deployment changes, so an operator that dies between the two resumes from the status.

The per-object cache holds only scrapes (the start of the current analysis window), the last
status written (used while the watch has not yet delivered it: a stale body must not replay a
decision), what was last applied and the last refusal of a child.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from llm_operator import (
    builders,
    children,
    converge,
    kube,
    naming,
    observe,
    preflight,
    rolloutview,
    spec,
    stablespec,
    status,
    windows,
)
from llm_operator import metrics as op_metrics
from llm_operator.rollout import analysis, clock, decide, owners, plan, pods, promtext, state
from llm_operator.rollout.state import RolloutStatus

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


def _held(g: Gathered, r: RolloutStatus) -> bool:
    """A revision out of the plan still has live pods: its retirement waits (on the front
    doors' routes, converge.still_routed), and only a tick notices when that ends."""
    planned = {w.revision for w in plan.workloads(r, g.d.spec.replicas)}
    return any(
        rev not in planned and any(not _terminating(p) for p in group)
        for rev, group in g.groups.items()
    )


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


def persist(g: Gathered, t: Decided, *, cache: Cache, post: PostEvent) -> str:
    """Writes the status (only when it changed) and posts the decision's and the phase's Events.
    Runs before `converge`: the decision is on record before the Deployments move. Returns the
    resourceVersion the write stored ("" when nothing was written)."""
    stored: dict[str, Any] = {}
    if status.changed(g.previous, t.new_status):
        stored = kube.patch_status(
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
    return children.version(stored)


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
    written_version: str = ""  # the object's resourceVersion after this tick's status write


def settled(o: Outcome) -> bool:
    """Pure: nothing in flight, so only a watch event (or the idle re-check) needs a tick: no
    rollout step, every wanted pod serving and Ready, none going, no problem and no refusal."""
    g, t = o.gathered, o.decided
    r = t.decision.status
    return (
        r.phase in (state.RolloutPhase.STABLE, state.RolloutPhase.ROLLED_BACK)
        and not unsettled(g.all_pods, g.deployments, g.d.spec.replicas)
        and not any(_terminating(p) for p in g.all_pods)
        and not _held(g, r)
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
    written = persist(g, t, cache=cache, post=post)
    converge.converge(g, t, cache=cache, default_image=settings_image, kids=kids)
    report(g, t)
    refused = bool(cache.refused or cache.refused_shared)
    return Outcome(decided=t, gathered=g, refused=refused, written_version=written)
