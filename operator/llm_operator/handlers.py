"""kopf wiring: watch-backed caches of the children, and one event-driven tick per object.

- Indexes (`kopf.index`) keep every child the operator made (its labels say so): Pods,
  Deployments, Services, ServiceAccounts, PodDisruptionBudgets. kopf lists and
  watches each kind once and runs no handler before every index is filled, so a tick reads
  memory and a restart never acts on an empty cache.
- One daemon per LLMDeployment runs the rollout tick (`tick.run`: gather -> decide -> persist
  -> converge -> report) on a bounded thread pool, then sleeps: `status_interval_seconds` while
  anything is in flight (a rollout step, a pod loading or not Ready, a problem), else
  `drift_interval_seconds`. A watch event of the object (a spec, label or annotation change) or
  of one of its children (a pod crashing, a child edited or deleted) wakes it at once, so crash
  detection and drift repair take well under a second and an idle object costs nothing.
- The tick is the only writer of status and children, and it writes only what differs from the
  caches (`children.needs_apply`), so neither races and an idle fleet makes no requests.
Deletion needs no handler: every child carries an ownerReference, so the garbage collector cascades.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import kopf

from llm_operator import GROUP, PLURAL, VERSION, children, kube, metrics, naming, tick
from llm_operator.settings import Settings

PERSISTENCE_PREFIX = GROUP
# Only what this operator made is cached: Helm and others set the instance label too.
OWNED: Mapping[str, Any] = {
    "app.kubernetes.io/managed-by": "llm-operator",
    naming.LABEL_INSTANCE: kopf.PRESENT,
}


def selector_of(labels: Mapping[str, Any]) -> str:
    """Pure: the label selector the API server applies for a kopf label filter (`key=value`,
    or `key` for kopf.PRESENT), so the watches and the handlers' filters cannot disagree."""
    return ",".join(k if v is kopf.PRESENT else f"{k}={v}" for k, v in labels.items())


OWNED_SELECTOR = selector_of(OWNED)
WATCHED_CHILDREN = ("pods", "deployments", "services", "serviceaccounts", "poddisruptionbudgets")
# The index ids, which kopf also passes to handlers as keyword arguments, by kind.
INDEXES = {
    "Pod": "llm_pods",
    "Deployment": "llm_deployments",
    "Service": "llm_services",
    "ServiceAccount": "llm_serviceaccounts",
    "PodDisruptionBudget": "llm_pdbs",
}  # not ConfigMaps: watching them would mean reading every ConfigMap (see children.CACHED)
# A woken tick waits this long after the previous one started, so a burst of events (a pod's
# status changing several times in a second) costs one tick, not ten.
MIN_GAP_SECONDS = 0.2

# Per LLMDeployment (namespace, name): the event that wakes its daemon, and what the last
# watch event showed of its spec, labels and annotations (a status-only event wakes nothing:
# it is usually the tick's own write).
_WAKE: dict[children.Key, asyncio.Event] = {}
_SEEN: dict[children.Key, tuple[Any, ...]] = {}
_POOL: concurrent.futures.ThreadPoolExecutor | None = None


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


def wake(key: children.Key) -> None:
    """Wakes the daemon of the LLMDeployment `key` (no-op when it has none yet)."""
    event = _WAKE.get(key)
    if event is not None:
        event.set()


async def index_child(body: kopf.Body, **_: Any) -> dict[children.Key, dict[str, Any]] | None:
    """The index entry of one child: under its owner's key, without managedFields."""
    key = children.key_of(body)
    return {key: children.slim(body)} if key is not None else None


async def child_event(body: kopf.Body, **_: Any) -> None:
    """Any event of a child (added, changed, deleted) wakes its owner's tick."""
    key = children.key_of(body)
    if key is not None:
        wake(key)


def _essence(body: Mapping[str, Any]) -> tuple[Any, ...]:
    meta = body.get("metadata") or {}
    return (
        meta.get("generation"),
        meta.get("labels"),
        meta.get("annotations"),
        meta.get("deletionTimestamp"),
    )


async def owner_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    """A change of an LLMDeployment's spec, labels or annotations (a rollout command) wakes its
    tick; a status-only change does not (the tick wrote it). Deletion forgets its series."""
    meta = body.get("metadata") or {}
    key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
    if type == "DELETED":
        _SEEN.pop(key, None)
        metrics.OBJECTS.forget(namespace=key[0], name=key[1])
        return
    essence = _essence(body)
    if _SEEN.get(key) != essence:
        _SEEN[key] = essence
        wake(key)


def _snapshot(key: children.Key, indexes: Mapping[str, Any]) -> children.Children:
    """The cached children of `key`, copied on the event loop (the watch mutates the index)."""
    by_kind = {}
    for kind, index_id in INDEXES.items():
        index = indexes.get(index_id)
        store = index.get(key) if index is not None else None
        by_kind[kind] = list(store) if store is not None else []
    return children.Children.of(key[1], by_kind)


Inputs = tuple[str, tuple[tuple[str, str], ...]]


def inputs_of(body: Mapping[str, Any], kids: children.Children) -> Inputs:
    """Pure: what a tick reads, by version: the object's resourceVersion and its cached
    children's. A settled object's tick is a function of these alone (nothing is in flight, so
    no deadline or window is waiting on the clock), so an idle re-check with the same inputs is
    skipped: at a thousand objects the re-checks would otherwise cost a share of a core."""
    rv = str((body.get("metadata") or {}).get("resourceVersion", ""))
    return rv, kids.versions()


def settled_inputs(read: Inputs, written_version: str) -> Inputs:
    """Pure: the inputs the next re-check must find to skip its tick. A tick that wrote the
    status changed the object's version itself: the body it will read next is the one it
    wrote (same spec, that status), which decides the same again; so its own version counts."""
    return (written_version or read[0], read[1])


def _tick(
    body: Mapping[str, Any], memo: Any, kids: children.Children, target: kopf.Body, queued: float
) -> tick.Outcome:
    """One tick, in a worker thread, of `body` (a copy); `target` is where Events go;
    `queued`: when it was handed to the pool (time.monotonic)."""
    metrics.TICK_QUEUE.observe(time.monotonic() - queued)
    ops: Settings = memo.settings

    def post(kind: str, reason: str, message: str) -> None:
        kopf.event(target, type=kind, reason=reason, message=message)

    with _measured("status"):
        return tick.run(
            body=body, memo=memo, settings_image=ops.runtime_image, kids=kids, post=post
        )


async def _sleep(event: asyncio.Event, stopped: kopf.DaemonStopped, delay: float) -> None:
    """Until `delay` passes, the object or a child has an event, or the daemon is stopped."""
    waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def rollout_daemon(
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **kwargs: Any,
) -> None:
    """Ticks one LLMDeployment whenever it or a child changes, every `status_interval_seconds`
    while something is in flight, and every `drift_interval_seconds` when it is settled."""
    ops: Settings = memo.settings
    meta = body.get("metadata") or {}
    key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
    event = _WAKE[key] = asyncio.Event()  # a re-created namesake's daemon gets its own
    loop = asyncio.get_running_loop()
    settled_on: Inputs | None = None  # what the last tick that found the object settled read
    try:
        while not stopped:
            if (body.get("metadata") or {}).get("deletionTimestamp"):
                metrics.OBJECTS.forget(namespace=key[0], name=key[1])
                return
            event.clear()
            started = loop.time()
            delay = ops.status_interval_seconds
            kids = _snapshot(key, kwargs)
            inputs = inputs_of(body, kids)
            if inputs == settled_on:  # nothing it reads changed: it would decide the same
                metrics.TICKS_SKIPPED.inc()
                metrics.OBJECTS.touch(namespace=key[0], name=key[1])
                await _sleep(event, stopped, ops.drift_interval_seconds)
                continue
            settled_on = None
            context = contextvars.copy_context()  # kopf.event finds kopf's queue through it
            try:
                outcome = await loop.run_in_executor(
                    _pool(ops), context.run, _tick, dict(body), memo, kids, body, time.monotonic()
                )
                if tick.settled(outcome):
                    delay = ops.drift_interval_seconds
                    settled_on = settled_inputs(inputs, outcome.written_version)
            except kube.ApiError as e:  # retriable (the tick keeps refusals for the status)
                logger.info("rollout tick: %s; again in %.0f s", e, delay)
            except Exception:
                logger.exception("rollout tick failed; again in %.0f s", delay)
            await _sleep(event, stopped, delay)
            gap = started + MIN_GAP_SECONDS - loop.time()
            if gap > 0 and not stopped:
                await asyncio.sleep(gap)
    finally:  # this replica no longer ticks it (deleted, exiting, or standby under peering)
        if _WAKE.get(key) is event:
            del _WAKE[key]
            metrics.OBJECTS.forget(namespace=key[0], name=key[1])


def _pool(ops: Settings) -> concurrent.futures.ThreadPoolExecutor:
    """The ticks' worker threads: a fixed number, so a thousand objects waking at once queue
    instead of starting a thousand threads (each tick's scrapes have their own deadlines)."""
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(
            max_workers=ops.tick_workers, thread_name_prefix="tick"
        )
    return _POOL


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
    # The children's watches carry the label selector, so the API server sends only the
    # operator's own objects (not every Pod of the cluster); the handlers' filters stay as well.
    for plural in WATCHED_CHILDREN:
        settings.watching.label_selectors[plural] = OWNED_SELECTOR
    # Only warnings from handler logs become Events; phase changes post their own Events.
    settings.posting.level = logging.WARNING
    # A settled object reports once per drift interval: the per-object series must outlive that.
    metrics.OBJECTS.keep_for(2 * ops.drift_interval_seconds + 60)
    metrics.serve(ops.metrics_port)


def register(ops: Settings) -> None:
    """Registers the caches and handlers. Each index is its own call with literal arguments:
    tests/unit/operator/test_rbac_calls.py reads the watched resources from this source."""
    kopf.on.startup()(configure)
    kopf.index("", "v1", "pods", id=INDEXES["Pod"], labels=OWNED)(index_child)
    kopf.index("apps", "v1", "deployments", id=INDEXES["Deployment"], labels=OWNED)(index_child)
    kopf.index("", "v1", "services", id=INDEXES["Service"], labels=OWNED)(index_child)
    kopf.index("", "v1", "serviceaccounts", id=INDEXES["ServiceAccount"], labels=OWNED)(index_child)
    kopf.index("policy", "v1", "poddisruptionbudgets", id=INDEXES["PodDisruptionBudget"],
               labels=OWNED)(index_child)  # fmt: skip
    kopf.on.event("", "v1", "pods", id="wake-pod", labels=OWNED)(child_event)
    kopf.on.event("apps", "v1", "deployments", id="wake-deployment", labels=OWNED)(child_event)
    kopf.on.event("", "v1", "services", id="wake-service", labels=OWNED)(child_event)
    kopf.on.event("", "v1", "serviceaccounts", id="wake-sa", labels=OWNED)(child_event)
    kopf.on.event("policy", "v1", "poddisruptionbudgets", id="wake-pdb", labels=OWNED)(child_event)
    kopf.on.event(GROUP, VERSION, PLURAL, id="wake")(owner_event)
    # A deleted object's daemon is asked to stop and given the backoff to finish its tick (it
    # may wait in the pool behind others) before kopf cancels it.
    kopf.daemon(
        GROUP, VERSION, PLURAL, id="rollout", cancellation_backoff=5, cancellation_timeout=10
    )(rollout_daemon)
