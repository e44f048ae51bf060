"""The front door inside `make bench-rollback`: what it adds to a stream, what each step measured.

Run by rollback_bench.py as the kind `frontdoor`, on the same SmolLM2 LLMDeployment as the
other kinds. It switches the object to `trafficRouting: FrontDoor` (no new revision: routing is
not part of the pod template), then:

1. Overhead, on the cluster network: bursts of N concurrent GenerateStream calls (default 32)
   straight to the stable pod's IP and the same burst through the Service (whose endpoints are
   now the front door pods), alternating which goes first. Reported: TTFT p50/p99 of each path
   and the median per-round difference (what the front door adds).
2. Shares: a good update with steps 10%, 25%, 50% (a timed pause each) while two clients, each
   on one long-lived channel through the Service, are the only traffic. Per step: the share of
   the clients' requests the canary answered (counted from the runtime's `llm-revision`
   trailer) from the step's pods Ready to the next step, and the last
   `status.rollout.observedShare` the operator wrote during the step.

The object is switched back to `trafficRouting: Pods` afterwards, so kinds run after this one
measure what they did before.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bench import canary_kit as kit
from bench import frontdoor_bench, loadgen
from llm_runtime.api import client as api
from llm_runtime.api import contract

STEPS = (10, 25, 50)
STEP_PAUSE = "30s"
STREAMS = 32
NEW_TOKENS = 16
ROUNDS = 3
LOAD_TIMEOUT = 600.0


@dataclasses.dataclass(frozen=True)
class Sample:
    """One poll of the status during the rollout, with the clients' per-revision counts then."""

    weight: int | None
    counts: Mapping[str, int]
    observed_share: int | None
    observed_requests: int | None


@dataclasses.dataclass(frozen=True)
class StepShare:
    weight: int
    client_requests: int
    client_share: float | None  # percent of the clients' requests the canary answered
    status_share: int | None  # the last observedShare the status showed during the step
    status_requests: int | None


@dataclasses.dataclass(frozen=True)
class Overhead:
    direct_p50_ms: float
    direct_p99_ms: float
    added_p50_ms: float
    added_p99_ms: float


@dataclasses.dataclass(frozen=True)
class FrontDoorResult:
    overhead: Overhead
    steps: tuple[StepShare, ...]
    failed_requests: int
    requests: int


def step_shares(samples: Sequence[Sample], canary: str) -> tuple[StepShare, ...]:
    """Pure: per weight, the clients' requests between the first and last sample at it."""
    by_weight: dict[int, list[Sample]] = collections.defaultdict(list)
    for s in samples:
        if s.weight is not None:
            by_weight[s.weight].append(s)
    out = []
    for weight in sorted(by_weight):
        first, last = by_weight[weight][0], by_weight[weight][-1]
        delta = {rev: last.counts.get(rev, 0) - first.counts.get(rev, 0) for rev in last.counts}
        total = sum(delta.values())
        shown = [s for s in by_weight[weight] if s.observed_share is not None]
        out.append(
            StepShare(
                weight=weight,
                client_requests=total,
                client_share=round(100 * delta.get(canary, 0) / total, 1) if total else None,
                status_share=shown[-1].observed_share if shown else None,
                status_requests=shown[-1].observed_requests if shown else None,
            )
        )
    return tuple(out)


def added_ms(direct: Sequence[float], door: Sequence[float]) -> float:
    """Pure: the median over rounds of (front door - direct), seconds in, milliseconds out."""
    return round(1000 * statistics.median(b - a for a, b in zip(direct, door, strict=True)), 1)


def table(result: FrontDoorResult) -> str:
    """Pure: the front door's part of the report."""
    o = result.overhead
    rows = [
        f"front door, {STREAMS} concurrent streams x {NEW_TOKENS} tokens, {ROUNDS} rounds: "
        f"direct TTFT p50 {o.direct_p50_ms:g} ms, p99 {o.direct_p99_ms:g} ms; "
        f"added by the front door p50 {o.added_p50_ms:+g} ms, p99 {o.added_p99_ms:+g} ms",
        f"{'weight':>6} {'client requests':>15} {'client share':>12} {'status share':>12} "
        f"{'status requests':>15}",
    ]
    for s in result.steps:

        def cell(v: float | int | None, width: int, unit: str = "") -> str:
            return f"{'-' if v is None else f'{v:g}{unit}':>{width}}"

        rows.append(
            f"{s.weight:>5}% {s.client_requests:>15} {cell(s.client_share, 12, '%')} "
            f"{cell(s.status_share, 12, '%')} {cell(s.status_requests, 15)}"
        )
    rows.append(
        f"failed requests during the rollout: {result.failed_requests} of {result.requests}"
    )
    return "\n".join(rows)


def _front_door_ready(chat: kit.Target) -> bool:
    sel = f"{contract.LABEL_FRONTDOOR}={chat.name}"
    pods = chat.cluster.kubectl_json("get", "pods", "-n", chat.namespace, "-l", sel)["items"]
    ready = [p for p in pods if not p["metadata"].get("deletionTimestamp") and _ready(p)]
    return len(ready) >= 1


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def _overhead(direct_target: str, door_target: str) -> Overhead:
    results: dict[str, list[frontdoor_bench.Result]] = {"direct": [], "frontdoor": []}
    async with (
        api.AsyncRuntimeClient(api.Connection(target=direct_target)) as direct,
        api.AsyncRuntimeClient(api.Connection(target=door_target)) as door,
    ):
        for client in (direct, door):  # warm both paths
            await frontdoor_bench.burst("warm-up", 0, client, 4, 4)
        for rnd in range(1, ROUNDS + 1):
            paths = [("direct", direct), ("frontdoor", door)]
            for path, client in paths if rnd % 2 else paths[::-1]:
                results[path].append(
                    await frontdoor_bench.burst(path, rnd, client, STREAMS, NEW_TOKENS)
                )
    d, f = results["direct"], results["frontdoor"]
    return Overhead(
        direct_p50_ms=round(1000 * statistics.median(r.ttft_p50 for r in d), 1),
        direct_p99_ms=round(1000 * statistics.median(r.ttft_p99 for r in d), 1),
        added_p50_ms=added_ms([r.ttft_p50 for r in d], [r.ttft_p50 for r in f]),
        added_p99_ms=added_ms([r.ttft_p99 for r in d], [r.ttft_p99 for r in f]),
    )


def _marker(chat: kit.Target) -> str | None:
    """The marker env value the object runs with now, so a routing change keeps its pods."""
    env = chat.get()["spec"].get("runtime", {}).get("env") or ()
    return next((str(e.get("value")) for e in env if e.get("name") == "CANARY_E2E"), None)


def _rollout(routing: str, **extra: Any) -> dict[str, Any]:
    return {"trafficRouting": routing, "analysis": {"interval": f"{kit.INTERVAL}s"}, **extra}


def run(chat: kit.Target) -> FrontDoorResult:
    """Overhead, then one good update's per-step shares; leaves the object on `Pods`."""
    chat.settled()
    chat.apply(kit.spec_with(env=_marker(chat), rollout=_rollout("FrontDoor")))  # same pods
    kit.wait_for("the front door Ready", lambda: _front_door_ready(chat), timeout=300)
    time.sleep(4)  # the Service's endpoints move to the front door pods
    (stable_pod,) = chat.live_pods(chat.rollout()["stableRevision"])
    direct = f"{stable_pod['status']['podIP']}:{contract.RUNTIME_GRPC_PORT}"
    overhead = asyncio.run(_overhead(direct, chat.service_target()))
    steps = [{"weight": w, "pause": {"duration": STEP_PAUSE}} for w in STEPS]
    configs = [
        loadgen.LoadConfig(target=chat.service_target(), concurrency=1, long_lived=True)
        for _ in range(2)
    ]
    loads = [loadgen.BackgroundLoad(c).start() for c in configs]
    marker = f"bench-door-{time.time():.0f}"
    samples: list[Sample] = []
    try:
        chat.apply(kit.spec_with(env=marker, rollout=_rollout("FrontDoor", steps=steps)))
        canary = chat.new_revision()
        deadline = time.monotonic() + LOAD_TIMEOUT
        while time.monotonic() < deadline:
            r = chat.rollout()
            counts: collections.Counter[str] = collections.Counter()
            for load in loads:
                counts.update(load.by_revision())
            # A step counts from its pods Ready (stepReadyAt): before that it routes nothing.
            at_step = (
                r.get("canaryRevision") == canary
                and r.get("phase") in ("Canary", "Paused")
                and bool(r.get("stepReadyAt"))
            )
            samples.append(
                Sample(
                    weight=int(r["weight"]) if at_step and r.get("weight") else None,
                    counts=dict(counts),
                    observed_share=r.get("observedShare"),
                    observed_requests=r.get("observedRequests"),
                )
            )
            if r.get("phase") == "Stable" and r.get("stableRevision") == canary:
                break
            time.sleep(1)
        else:
            raise TimeoutError(f"{canary} was not promoted within {LOAD_TIMEOUT:g} s")
    finally:
        reports = [load.stop() for load in loads]
    chat.settled()
    chat.apply(kit.spec_with(env=marker, rollout=_rollout("Pods")))  # the promoted pods, kept
    return FrontDoorResult(
        overhead=overhead,
        steps=step_shares(samples, canary),
        failed_requests=sum(rep.failed for rep in reports),
        requests=sum(rep.ok + rep.failed for rep in reports),
    )
