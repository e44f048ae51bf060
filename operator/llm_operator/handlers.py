"""kopf wiring: thin handlers that parse, build (pure), apply (kube) and publish status.

- create/update/resume: apply the children now.
- a drift timer re-applies the children (server-side apply is a no-op when nothing drifted, and
  recreates a deleted child).
- a status timer observes the Deployment and pods and writes a truthful status; phase changes post
  an Event. It is the only writer of status, so Events are not duplicated by racing handlers.
  Change handlers alone would miss crash loops and finished loads.
Deletion needs no handler: every child carries an ownerReference, so the garbage collector cascades.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kopf

from llm_operator import GROUP, PLURAL, VERSION, builders, kube, metrics, naming, spec, status
from llm_operator import observe as obs
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


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def apply_children(d: spec.LLMDeployment, *, settings: Settings, memo: Any) -> str:
    """Applies every child; remembers (per object, in memo) a refusal for the status to show.
    Returns the revision. Refusals that retrying cannot fix become the Failed phase."""
    desired = builders.desired(d, default_image=settings.runtime_image)
    try:
        for child in desired.children:
            kube.apply(child)
    except kube.ApiError as e:
        if e.retriable:
            raise kopf.TemporaryError(f"applying children: {e}", delay=10) from e
        memo.apply_error = f"{e.status} {e.reason}: {e.message}"
        raise
    memo.apply_error = ""
    return desired.revision


def observe(d: spec.LLMDeployment, *, revision: str, apply_error: str) -> status.Observed:
    """Reads the Deployment and the pods of one LLMDeployment."""
    ns, name = d.owner.namespace, d.owner.name
    deploy = kube.get(api_version="apps/v1", kind="Deployment", namespace=ns, name=name)
    pods = kube.list_objects(
        api_version="v1", kind="Pod", namespace=ns, selector=naming.selector_string(name)
    )
    return status.Observed(
        generation=d.owner.generation,
        desired=d.spec.replicas,
        revision=revision,
        deployment=obs.deployment_view(deploy),
        pods=tuple(obs.pod_view(p) for p in pods),
        apply_error=apply_error,
    )


def publish(
    *, body: kopf.Body, patch: Any, observed: status.Observed, d: spec.LLMDeployment
) -> None:
    """Writes the status when it changed and posts an Event when the phase changed."""
    previous = dict(body.get("status") or {})
    new = status.status_body(
        observed,
        selector=naming.selector_string(d.owner.name),
        endpoint=naming.endpoint(d),
        previous=previous,
        now=_now(),
    )
    if status.changed(previous, new):
        patch.status.update(new)
    event = status.transition(previous.get("phase"), status.verdict(observed))
    if event is not None:
        metrics.PHASE_TRANSITIONS.labels(new["phase"]).inc()
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def _revision(d: spec.LLMDeployment, settings: Settings) -> str:
    return builders.desired(d, default_image=settings.runtime_image).revision


def on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Spec (or labels/annotations) changed, or the operator restarted: apply the children now.
    The status timer reports the outcome (one writer of status and Events, so no duplicates)."""
    with _measured("change"):
        d = spec.parse(body)
        try:
            apply_children(d, settings=memo.settings, memo=memo)
        except kube.ApiError as e:
            raise kopf.PermanentError(f"the API server refused a child: {e}") from e


def repair_drift(
    body: kopf.Body, memo: kopf.Memo, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    """Re-applies the children so manual edits and deletions are undone."""
    if body.get("metadata", {}).get("deletionTimestamp"):
        return
    with _measured("drift"):
        d = spec.parse(body)
        try:
            apply_children(d, settings=memo.settings, memo=memo)
        except kube.ApiError as e:
            # Info, not warning: warnings become Events, and the status already says Failed
            # (with one Event on the transition) instead of one Event per drift period.
            metrics.ERRORS.labels("drift", e.reason or str(e.status)).inc()
            logger.info("children refused while repairing drift: %s", e)


def refresh_status(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Observes the children and writes the status (the source of truth for the phase)."""
    if body.get("metadata", {}).get("deletionTimestamp"):
        return
    with _measured("status"):
        d = spec.parse(body)
        revision = _revision(d, memo.settings)
        observed = observe(d, revision=revision, apply_error=memo.get("apply_error", ""))
        publish(body=body, patch=patch, observed=observed, d=d)


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
    kopf.timer(*resource, id="status", interval=ops.status_interval_seconds)(refresh_status)
