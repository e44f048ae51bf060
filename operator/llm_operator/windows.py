"""Analysis windows: each Ready pod's metric delta since the window began, and one closed
window's checks (metrics of canary and stable, smoke replies of canary pods not yet smoked).

This is the tick's gather-side I/O toward pods (through `podclient`) and toward the Secrets
smoke prompts need; the judging itself is the pure `rollout.analysis`. The scrapes live in the
tick's per-object cache, passed in as a plain dict (pod name -> the scrape at the window start).
"""

from __future__ import annotations

import base64
import concurrent.futures
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from llm_operator import kube, podclient, spec
from llm_operator.rollout import analysis, clock, plan, pods, promtext
from llm_operator.rollout.state import RolloutPhase, RolloutStatus

log = logging.getLogger(__name__)
Obj = Mapping[str, Any]
Scrapes = dict[str, promtext.Scrape]


def _name(p: Obj) -> str:
    return str((p.get("metadata") or {}).get("name", ""))


def _ip(p: Obj) -> str:
    return str((p.get("status") or {}).get("podIP") or "")


def ready_pods(group: Sequence[Obj]) -> list[Obj]:
    """The live, Ready pods that have an IP: the only ones worth scraping or prompting."""
    names = set(pods.ready_names(group))
    return [p for p in group if _name(p) in names and _ip(p)]


def _scrape(p: Obj) -> promtext.Scrape | None:
    text = podclient.scrape(_ip(p))
    if text is None:
        return None
    try:
        return promtext.parse(text)
    except ValueError as e:
        log.info("unparsable metrics from %s: %s", _name(p), e)
        return None


def forget_gone_pods(scrapes: Scrapes, all_pods: Sequence[Obj]) -> None:
    """Drops the scrapes of pods that no longer exist (the cache would grow forever)."""
    alive = {_name(p) for p in all_pods}
    for name in [n for n in scrapes if n not in alive]:
        del scrapes[name]


def baseline(group: Sequence[Obj], scrapes: Scrapes) -> None:
    """Scrapes every Ready pod: the start of the first analysis window."""
    for p in ready_pods(group):
        scraped = _scrape(p)
        if scraped is not None:
            scrapes[_name(p)] = scraped


def deltas(group: Sequence[Obj], scrapes: Scrapes, since: datetime | None) -> list[promtext.Scrape]:
    """Each Ready pod's delta since the window began; a pod without a start only sets one."""
    out = []
    for p in ready_pods(group):
        current = _scrape(p)
        if current is None:
            continue
        started = clock.parse_time((p.get("status") or {}).get("startTime"))
        fresh = started is not None and since is not None and started >= since
        window = promtext.window_delta(scrapes.get(_name(p)), current, started_in_window=fresh)
        scrapes[_name(p)] = current
        if window is not None:
            out.append(window)
    return out


def access(d: spec.LLMDeployment) -> podclient.Access:
    """TLS roots and bearer token for smoke prompts, from the Secrets the runtime uses. The
    chart grants no Secret reads by default (docs/rbac.md): a refusal is reported."""
    sec, ns, port = d.spec.security, d.owner.namespace, d.spec.service.port
    try:
        tls = _secret(ns, sec.tls_secret_name) if sec.tls_secret_name else {}
        auth = _secret(ns, sec.auth_token_secret_name) if sec.auth_token_secret_name else {}
    except kube.ApiError as e:
        why = f"cannot read the Secret for TLS/auth ({e}); grant the operator get on secrets"
        return podclient.Access(port=port, error=why)
    ca = tls.get("ca.crt") or tls.get("tls.crt")
    token = auth.get("token")
    return podclient.Access(
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


def smoke_replies(
    *, ready: Mapping[str, Obj], names: Sequence[str], d: spec.LLMDeployment
) -> list[analysis.SmokeReply]:
    """Every smoke prompt to every named pod, pods in parallel: the tick (and so crash
    detection) waits for the slowest pod, not the sum."""
    if not names:
        return []
    how = access(d)
    prompts = d.spec.rollout.analysis.smoke_prompts

    def ask(name: str) -> list[analysis.SmokeReply]:
        return podclient.smoke(pod=name, pod_ip=_ip(ready[name]), prompts=prompts, access=how)

    replies: list[analysis.SmokeReply] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
        for answered in pool.map(ask, names):
            replies += answered
    return replies


def analyse(
    *, groups: Mapping[str, list[Obj]], r: RolloutStatus, d: spec.LLMDeployment, scrapes: Scrapes
) -> tuple[tuple[analysis.CheckResult, ...], analysis.Traffic]:
    """One closed window: canary and stable metric deltas, smoke replies of unsmoked pods, and
    the split of requests the two revisions' pods served."""
    since = r.last_analysis_at or r.step_ready_at
    canary = groups.get(r.canary_revision or "", [])
    stable = [] if r.phase is RolloutPhase.RECREATING else groups.get(r.stable_revision or "", [])
    canary_w, stable_w = deltas(canary, scrapes, since), deltas(stable, scrapes, since)
    rules = d.spec.rollout.analysis
    ready = {_name(p): p for p in ready_pods(canary)}
    to_smoke = plan.pods_to_smoke(r, ready) if rules.smoke_prompts else ()
    canary_sum = promtext.aggregate(canary_w)
    stable_sum = promtext.aggregate(stable_w) if stable_w else None
    results = analysis.evaluate(
        canary=canary_sum,
        stable=stable_sum,
        replies=smoke_replies(ready=ready, names=to_smoke, d=d),
        analysis=rules,
    )
    return results, analysis.traffic(canary=canary_sum, stable=stable_sum)
