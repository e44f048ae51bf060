"""kopf wiring: thin handlers that parse, build (pure), apply (kube) and publish status.

- create/update/resume: apply the shared children (ServiceAccount, Services, PDB) now.
- a drift timer re-applies them (server-side apply is a no-op when nothing drifted, and
  recreates a deleted child).
- the rollout tick (`tick.run`, every ~2 s): gather -> decide (pure core in
  `llm_operator.rollout`) -> persist (status, Events) -> converge (per-revision Deployments)
  -> report (metrics). It is the only writer of status and of
  the Deployments, so neither races. Change handlers alone would miss crash loops and loads.
Deletion needs no handler: every child carries an ownerReference, so the garbage collector cascades.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kopf

from llm_operator import GROUP, PLURAL, VERSION, builders, kube, metrics, spec, tick
from llm_operator.settings import Settings

PERSISTENCE_PREFIX = GROUP


@contextmanager
def _measured(trigger: str) -> Iterator[None]:
    """Counts and times one reconciliation, labelling failures with their reason."""
    start = time.monotonic()
    try:
        yield
    except kube.ApiError as e:
        metrics.ERRORS.labels(trigger, e.reason or str(e.status)).inc()
        metrics.RECONCILES.labels(trigger, "error").inc()
        raise
    except Exception as e:
        metrics.ERRORS.labels(trigger, type(e).__name__).inc()
        metrics.RECONCILES.labels(trigger, "error").inc()
        raise
    else:
        metrics.RECONCILES.labels(trigger, "ok").inc()
    finally:
        metrics.DURATION.labels(trigger).observe(time.monotonic() - start)


def apply_shared(d: spec.LLMDeployment, *, settings: Settings, memo: Any) -> str:
    """Applies the children every revision shares (identity, Services, budget); remembers (per
    object, in memo) a refusal for the status to show. Returns the spec's revision. The
    per-revision Deployments are the rollout tick's (they depend on the rollout state).

    A child whose name another owner holds is skipped (a NameConflict condition, the tick's
    next status shows it); the others are still applied, so what can serve does."""
    desired = builders.desired(d, default_image=settings.runtime_image)
    cache = tick.cache_of(memo)
    try:
        for child in desired.shared:
            tick.apply_owned(child, uid=d.owner.uid, cache=cache)
    except kube.ApiError as e:
        if e.retriable:
            raise kopf.TemporaryError(f"applying children: {e}", delay=10) from e
        memo.apply_error = f"{e.status} {e.reason}: {e.message}"
        raise
    memo.apply_error = ""
    return desired.revision


def on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Spec (or labels/annotations) changed, or the operator restarted: apply the shared
    children now. The rollout tick sizes the Deployments and reports the outcome (one writer of
    status and Events, so no duplicates)."""
    with _measured("change"):
        d = spec.parse(body)
        try:
            apply_shared(d, settings=memo.settings, memo=memo)
        except kube.ApiError as e:
            raise kopf.PermanentError(f"the API server refused a child: {e}") from e


def repair_drift(
    body: kopf.Body, memo: kopf.Memo, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    """Re-applies the shared children so manual edits and deletions are undone (the rollout
    tick re-applies the spec revision's Deployment on the same period)."""
    if body.get("metadata", {}).get("deletionTimestamp"):
        return
    with _measured("drift"):
        d = spec.parse(body)
        try:
            apply_shared(d, settings=memo.settings, memo=memo)
        except kube.ApiError as e:
            # Info, not warning: warnings become Events, and the status already says Failed
            # (with one Event on the transition) instead of one Event per drift period.
            metrics.ERRORS.labels("drift", e.reason or str(e.status)).inc()
            logger.info("children refused while repairing drift: %s", e)


def rollout_tick(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Observes pods, analyses a canary, decides, writes the status and Events, converges the
    Deployments (`tick.run`). Runs every few seconds: crash loops must not wait for a spec
    change."""
    meta = body.get("metadata", {})
    if meta.get("deletionTimestamp"):  # going: its per-object series go now, not at their TTL
        metrics.OBJECTS.forget(namespace=meta.get("namespace") or "", name=meta.get("name") or "")
        return
    ops: Settings = memo.settings

    def post(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)

    with _measured("status"):
        try:
            tick.run(
                body=body,
                memo=memo,
                settings_image=ops.runtime_image,
                drift_seconds=ops.drift_interval_seconds,
                post=post,
            )
        except kube.ApiError as e:
            raise kopf.TemporaryError(f"rollout tick: {e}", delay=2) from e


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """kopf's own settings: peering identity, annotation prefixes, quiet event posting."""
    ops: Settings = memo.settings
    settings.peering.priority = ops.priority
    settings.peering.mandatory = ops.peering
    settings.peering.standalone = not ops.peering
    if ops.peering:
        settings.peering.name = ops.peering_name
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=PERSISTENCE_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PERSISTENCE_PREFIX, key="last-handled-configuration"
    )
    # Only warnings from handler logs become Events; phase changes post their own Events.
    settings.posting.level = logging.WARNING
    metrics.serve(ops.metrics_port)


def register(ops: Settings) -> None:
    """Registers the handlers; intervals come from the settings, hence not decorators."""
    kopf.on.startup()(configure)
    resource = (GROUP, VERSION, PLURAL)
    kopf.on.create(*resource, id="apply")(on_change)
    kopf.on.update(*resource, id="apply")(on_change)
    kopf.on.resume(*resource, id="apply")(on_change)
    kopf.timer(*resource, id="drift", interval=ops.drift_interval_seconds)(repair_drift)
    kopf.timer(*resource, id="status", interval=ops.status_interval_seconds)(rollout_tick)
