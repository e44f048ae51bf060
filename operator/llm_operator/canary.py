"""The rollout tick (every ~2 s per LLMDeployment): observe, analyse, decide, converge, report.

All decisions are the pure core's (`llm_operator.rollout`); this module only gathers its inputs
(pods, scrapes, smoke replies) and carries out its outputs (Deployments, status, Events,
metrics). The rollout state is read from and written to the status; the per-object cache below
holds only scrapes (the start of the current analysis window) and the last status written, used
when the watch has not yet delivered it (a stale body must not replay a decision).
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from llm_operator import builders, kube, naming, observe, probes, rolloutview, spec, status
from llm_operator import metrics as op_metrics
from llm_operator import workloads as wl
from llm_operator.rollout import analysis, clock, decide, inputs, plan, pods, promtext, state
from llm_operator.rollout.analysis import CheckResult
from llm_operator.rollout.state import Phase, RolloutStatus

log = logging.getLogger(__name__)
Obj = Mapping[str, Any]


@dataclasses.dataclass
class Cache:
    """Per-object, in memory, and only a cache: losing it costs one analysis window."""

    scrapes: dict[str, promtext.Scrape] = dataclasses.field(default_factory=dict)
    based_on: str = ""  # resourceVersion of the body the last write was decided on
    written: dict[str, Any] | None = None
    forced_at: float = float("-inf")  # monotonic time of the last forced apply (drift repair)
    refused: str = ""  # the API server's refusal of a Deployment, until an apply succeeds


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


def _name(p: Obj) -> str:
    return str((p.get("metadata") or {}).get("name", ""))


def _ip(p: Obj) -> str:
    return str((p.get("status") or {}).get("podIP") or "")


def ready_pods(group: Sequence[Obj]) -> list[Obj]:
    names = set(pods.ready_names(group))
    return [p for p in group if _name(p) in names and _ip(p)]


def _scrape(p: Obj) -> promtext.Scrape | None:
    text = probes.scrape(_ip(p))
    if text is None:
        return None
    try:
        return promtext.parse(text)
    except ValueError as e:
        log.info("unparsable metrics from %s: %s", _name(p), e)
        return None


def forget_gone_pods(cache: Cache, all_pods: Sequence[Obj]) -> None:
    """Drops the scrapes of pods that no longer exist (the cache would grow forever)."""
    alive = {_name(p) for p in all_pods}
    for name in [n for n in cache.scrapes if n not in alive]:
        del cache.scrapes[name]


def baseline(group: Sequence[Obj], cache: Cache) -> None:
    """Scrapes every Ready pod: the start of the first analysis window."""
    for p in ready_pods(group):
        scraped = _scrape(p)
        if scraped is not None:
            cache.scrapes[_name(p)] = scraped


def windows(group: Sequence[Obj], cache: Cache, since: datetime | None) -> list[promtext.Scrape]:
    """Each Ready pod's delta since the window began; a pod without a start only sets one."""
    out = []
    for p in ready_pods(group):
        current = _scrape(p)
        if current is None:
            continue
        started = clock.parse_time((p.get("status") or {}).get("startTime"))
        fresh = started is not None and since is not None and started >= since
        window = promtext.window_delta(
            cache.scrapes.get(_name(p)), current, started_in_window=fresh
        )
        cache.scrapes[_name(p)] = current
        if window is not None:
            out.append(window)
    return out


def access(d: spec.LLMDeployment) -> probes.Access:
    """TLS roots and bearer token for smoke prompts, from the Secrets the runtime uses. The
    chart grants no Secret reads by default (operator/RBAC-NEEDS.md): a refusal is reported."""
    sec, ns, port = d.spec.security, d.owner.namespace, d.spec.service.port
    try:
        tls = _secret(ns, sec.tls_secret_name) if sec.tls_secret_name else {}
        auth = _secret(ns, sec.auth_token_secret_name) if sec.auth_token_secret_name else {}
    except kube.ApiError as e:
        why = f"cannot read the Secret for TLS/auth ({e}); grant the operator get on secrets"
        return probes.Access(port=port, error=why)
    ca = tls.get("ca.crt") or tls.get("tls.crt")
    token = auth.get("token")
    return probes.Access(
        port=port,
        ca_pem=ca,
        server_name=f"{d.owner.name}.{ns}.svc" if ca else None,
        token=token.decode().strip() if token else None,
    )


def _secret(namespace: str, name: str) -> dict[str, bytes]:
    obj = kube.get(api_version="v1", kind="Secret", namespace=namespace, name=name)
    if obj is None:
        raise kube.ApiError(status=404, reason="NotFound", message=f"secret {name} not found")
    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}


def analyse(
    *,
    groups: Mapping[str, list[Obj]],
    r: RolloutStatus,
    rspec: inputs.RolloutSpec,
    d: spec.LLMDeployment,
    cache: Cache,
) -> tuple[CheckResult, ...]:
    """One closed window: canary and stable metric deltas, smoke replies of unsmoked pods."""
    since = r.last_analysis_at or r.step_ready_at
    canary = groups.get(r.canary_revision or "", [])
    stable = [] if r.phase is Phase.RECREATING else groups.get(r.stable_revision or "", [])
    canary_w, stable_w = windows(canary, cache, since), windows(stable, cache, since)
    replies: list[analysis.SmokeReply] = []
    prompts = rspec.analysis.smoke_prompts
    ready = {_name(p): p for p in ready_pods(canary)}
    to_smoke = plan.pods_to_smoke(r, ready) if prompts else ()
    if to_smoke:
        how = access(d)

        def ask(name: str) -> list[analysis.SmokeReply]:
            return probes.smoke(pod=name, pod_ip=_ip(ready[name]), prompts=prompts, access=how)

        # Pods in parallel: the tick (and crash detection) waits for the slowest pod, not the sum.
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(to_smoke)) as pool:
            for answered in pool.map(ask, to_smoke):
                replies += answered
    return analysis.evaluate(
        canary=promtext.aggregate(canary_w),
        stable=promtext.aggregate(stable_w) if stable_w else None,
        replies=replies,
        spec=rspec.analysis,
    )


def converge(
    *,
    d: spec.LLMDeployment,
    r: RolloutStatus,
    rspec: inputs.RolloutSpec,
    default_image: str,
    deployments: Sequence[Obj],
    all_pods: Sequence[Obj],
    force: bool,
) -> wl.Actions:
    """Applies, resizes and deletes per-revision Deployments to match the plan."""
    planned = plan.workloads(r, rspec.replicas)
    spec_deploy, spec_rev = builders.deployment(d, default_image=default_image)
    keep = {x for x in (r.stable_revision, r.canary_revision, r.old_revision) if x}
    actions = wl.converge(
        planned=planned,
        spec_revision=spec_rev,
        current=wl.existing(deployments, all_pods),
        keep=keep,
        force_apply=force,
    )
    ns = d.owner.namespace
    if actions.apply is not None:
        obj = {**spec_deploy, "spec": {**spec_deploy["spec"], "replicas": actions.apply}}
        kube.apply(obj)
    for name, replicas in actions.scale:
        kube.scale(
            api_version="apps/v1", kind="Deployment", namespace=ns, name=name, replicas=replicas
        )
    for name in actions.delete:
        kube.delete(api_version="apps/v1", kind="Deployment", namespace=ns, name=name)
    for rev in actions.missing:
        log.warning("revision %s has no Deployment and the spec cannot rebuild it", rev)
    return actions


def base_observed(
    *,
    d: spec.LLMDeployment,
    serving: str,
    deployments: Sequence[Obj],
    all_pods: Sequence[Obj],
    apply_error: str,
) -> status.Observed:
    """What the serving revision's Deployment and pods say (the READY column and base phase)."""
    mine = rolloutview.pick(deployments, serving)
    return status.Observed(
        generation=d.owner.generation,
        desired=d.spec.replicas,
        revision=serving,
        deployment=observe.deployment_view(mine[0]) if mine else None,
        pods=tuple(observe.pod_view(p) for p in rolloutview.pick(all_pods, serving)),
        apply_error=apply_error,
    )


@dataclasses.dataclass(frozen=True)
class Tick:
    """What one tick decided and the status it wants written."""

    decision: decide.Decision
    new_status: dict[str, Any]
    phase_event: status.Transition | None


def run(*, body: Obj, memo: Any, settings_image: str, drift_seconds: float) -> Tick:
    """One tick for one LLMDeployment (see the module docstring)."""
    d = spec.parse(body)
    rspec = inputs.from_spec_dict(body.get("spec") or {})
    cache = cache_of(memo)
    previous = previous_status(body, cache)
    before = state.from_status(previous)
    spec_rev = builders.desired(d, default_image=settings_image).revision
    ns, name = d.owner.namespace, d.owner.name
    selector = naming.selector_string(name)
    all_pods = kube.list_objects(api_version="v1", kind="Pod", namespace=ns, selector=selector)
    groups = pods.by_revision(all_pods, label=naming.LABEL_REVISION)
    forget_gone_pods(cache, all_pods)
    now = datetime.now(UTC)
    results = None
    if plan.analysis_due(before, rspec, now):
        results = analyse(groups=groups, r=before, rspec=rspec, d=d, cache=cache)
    observed = pods.observe(
        pods=all_pods,
        status=before,
        spec=rspec,
        desired_revision=spec_rev,
        annotations=(body.get("metadata") or {}).get("annotations"),
        now=now,
        analysis=results,
        label=naming.LABEL_REVISION,
    )
    decision = decide.decide(observed, before, rspec, now)
    after = decision.status
    if plan.baseline_due(before, after):
        for rev in {after.canary_revision, after.stable_revision} - {None}:
            baseline(groups.get(rev or "", []), cache)
    deployments = kube.list_objects(
        api_version="apps/v1", kind="Deployment", namespace=ns, selector=selector
    )
    force = time.monotonic() - cache.forced_at >= drift_seconds
    try:
        converge(
            d=d,
            r=after,
            rspec=rspec,
            default_image=settings_image,
            deployments=deployments,
            all_pods=all_pods,
            force=force or bool(cache.refused),
        )
        cache.refused = ""
    except kube.ApiError as e:
        if e.retriable:
            raise
        cache.refused = f"{e.status} {e.reason}: {e.message}"  # the status says Failed
    if force:
        cache.forced_at = time.monotonic()
    serving = rolloutview.serving_revision(after, spec_rev)
    base = base_observed(
        d=d,
        serving=serving,
        deployments=deployments,
        all_pods=all_pods,
        apply_error=str(memo.get("apply_error", "")) or cache.refused,
    )
    v = rolloutview.verdict(status.verdict(base), after, now=now)
    body_status = status.status_body(
        base,
        selector=selector,
        endpoint=naming.endpoint(d),
        previous=previous,
        now=clock.format_time(now.replace(microsecond=0)) or "",
        v=v,
    )
    new = {**body_status, "currentRevision": spec_rev, **state.to_status(after)}
    cache.based_on = str((body.get("metadata") or {}).get("resourceVersion", ""))
    cache.written = new
    return Tick(decision, new, status.transition(previous.get("phase"), v))


def record(decision: decide.Decision, *, strategy: str) -> None:
    """Operator metrics for one decision."""
    op_metrics.ROLLOUT.record(decision, strategy=strategy)
