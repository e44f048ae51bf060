"""Rollback benchmark: how long a bad canary lives, per failure kind, on the local cluster.

    .venv/bin/python hack/bench/rollback_bench.py                  # every kind, ~8 min
    .venv/bin/python hack/bench/rollback_bench.py --kinds crash,metric --json /tmp/rb.json

It installs the chart under its own release watching a fresh namespace, makes one SmolLM2
LLMDeployment Ready (one replica, a model cache claim), then for each kind applies a change whose
revision must fail, and measures:

- signal: the first moment the failure could be seen. crash: the canary container's first
  `finishedAt`; smoke and metric: the canary pod becoming Ready (from then on it answers wrongly,
  or slowly, to real requests); abort: when the annotation was written.
- decided: `status.rollback.at` (the operator's verdict, written with the rollback).
- gone: the first poll (every 0.5 s) that finds no live canary pod (the rollback complete).

and, for a good update under load, the total time from `kubectl apply` to Stable, with the number
of failed requests. The kind `frontdoor` (frontdoor_rollout.py, run first so it keeps the pods it
finds) measures what the front door adds to TTFT at 32 streams next to a direct call, and the
canary's share of two long-lived clients' requests at each step, as the clients counted it and as
the status reported it. The table compares "signal -> decided" with what Flagger and Argo Rollouts
would need at best with their documented analysis loops: Flagger rolls back after `threshold`
failed checks run every `interval` (interval x threshold; 60 s at best with its 1m interval),
Argo Rollouts after failureLimit+1 failed measurements (interval x (failureLimit+1)). Both
read metrics on a timer, so a crash-looping canary waits for that loop too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from bench import canary_kit as kit
from bench import frontdoor_rollout, loadgen, podwatch
from localcluster import cp_layout, cp_testing
from localcluster.cp_layout import Layout
from localcluster.cp_testing import Cluster

RELEASE = "rollback-bench"
KINDS = ("frontdoor", "good", "crash", "smoke", "metric", "abort")  # frontdoor first: same pods
LOAD_TIMEOUT = 600.0
FAILURE_LIMIT = 1
FLAGGER_INTERVAL, FLAGGER_THRESHOLD = 60.0, 1  # Flagger's 1m interval, threshold at its minimum


@dataclasses.dataclass(frozen=True)
class Result:
    """One kind's measurement; times are RFC 3339 strings, durations seconds."""

    kind: str
    reason: str
    signal_at: str | None
    decided_at: str | None
    gone_at: str | None
    total_seconds: float | None = None  # the good update: apply -> Stable
    failed_requests: int | None = None
    operator_delay: float | None = None  # the operator's own rollback.at - rollback.signalAt

    @property
    def to_decision(self) -> float | None:
        return _between(self.signal_at, self.decided_at)

    @property
    def to_gone(self) -> float | None:
        return _between(self.signal_at, self.gone_at)


def _between(a: str | None, b: str | None) -> float | None:
    return None if a is None or b is None else round(podwatch.seconds_between(a, b), 1)


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def argo_seconds(interval: float, failure_limit: int) -> float:
    """Pure: Argo Rollouts aborts on measurement failureLimit+1, one measurement per interval."""
    return interval * (failure_limit + 1)


def flagger_seconds(interval: float, threshold: int) -> float:
    """Pure: Flagger rolls back when failed checks reach `threshold`, one check per interval."""
    return interval * threshold


def table(results: Sequence[Result], *, interval: float) -> str:
    """Pure: the report printed at the end."""
    rows = [
        f"{'kind':<8} {'reason':<22} {'signal->decided':>15} {'signal->gone':>13} "
        f"{'operator':>9} {'total':>7} {'failed req':>10}"
    ]
    for r in results:

        def cell(v: float | int | None, width: int, unit: str = " s") -> str:
            return f"{'-' if v is None else f'{v}{unit}':>{width}}"

        rows.append(
            f"{r.kind:<8} {r.reason:<22} {cell(r.to_decision, 15)} {cell(r.to_gone, 13)} "
            f"{cell(r.operator_delay, 9)} {cell(r.total_seconds, 7)} "
            f"{cell(r.failed_requests, 10, '')}"
        )
    argo_same = argo_seconds(interval, FAILURE_LIMIT)
    rows += [
        "",
        f"analysis interval {interval:g} s, failureLimit {FAILURE_LIMIT}.",
        f"Flagger at best (interval {FLAGGER_INTERVAL:g} s x threshold {FLAGGER_THRESHOLD}): "
        f"{flagger_seconds(FLAGGER_INTERVAL, FLAGGER_THRESHOLD):g} s for every kind.",
        f"Argo Rollouts with the same interval and failureLimit: {argo_same:g} s for every kind "
        "(metric checks only; it has no smoke prompts and reads crashes through the same loop).",
    ]
    return "\n".join(rows)


def wait_gone(chat: kit.Target, rev: str) -> str:
    kit.wait_for(f"{rev} pods gone", lambda: not chat.live_pods(rev), timeout=120, interval=0.5)
    return now_text()


def first_ready(pods: list[podwatch.Pod]) -> str | None:
    """Pure: the earliest Ready transition among `pods` (the canary starts serving)."""
    times = [
        str(c["lastTransitionTime"])
        for p in pods
        for c in (p.get("status") or {}).get("conditions") or ()
        if c.get("type") == "Ready" and c.get("status") == "True" and c.get("lastTransitionTime")
    ]
    return min(
        times,
        key=lambda t: podwatch.parse_time(t) or datetime.max.replace(tzinfo=UTC),
        default=None,
    )


def rollback_result(
    kind: str, chat: kit.Target, rev: str, st: dict[str, Any], signal: str | None
) -> Result:
    rb = st["rollback"]
    return Result(
        kind=kind,
        reason=str(rb["reason"]),
        signal_at=signal,
        decided_at=str(rb["at"]),
        gone_at=wait_gone(chat, rev),
        operator_delay=_between(rb.get("signalAt"), rb["at"]),
    )


def run_good(chat: kit.Target) -> Result:
    chat.settled()
    config = loadgen.LoadConfig(target=chat.service_target(), concurrency=2, pause_seconds=0.2)
    with loadgen.BackgroundLoad(config) as load:
        start = now_text()
        chat.apply(kit.spec_with(env=f"bench-{time.time():.0f}"))
        rev = chat.new_revision()
        chat.promoted(rev, timeout=LOAD_TIMEOUT)
        done = now_text()
        time.sleep(2)
    assert load.report is not None
    print(f"[rollback-bench] load during the good update: {load.report.summary()}", flush=True)
    total = podwatch.seconds_between(start, done)
    return Result("good", "Promoted", None, None, None, round(total, 1), load.report.failed)


def run_crash(chat: kit.Target) -> Result:
    chat.settled()
    bad = kit.corrupt_gguf_on_node(f"bench-corrupt-{chat.namespace}")
    with chat.watch() as pods:
        chat.apply(kit.spec_with(model={"source": f"file://{bad}", "format": "gguf"}))
        rev = chat.new_revision()
        st = chat.rolled_back(rev, timeout=300)
        time.sleep(1)
        signal = podwatch.first_termination(pods.of_revision(rev))
    return rollback_result("crash", chat, rev, st, signal)


def run_smoke(chat: kit.Target) -> Result:
    chat.settled()
    tiny = kit.tiny_model_on_node(f"bench-tiny-{chat.namespace}")
    smoke = [{"prompt": "What is the capital of France?", "expect": "(?i)paris"}]
    analysis = {"interval": f"{kit.INTERVAL}s", "smokePrompts": smoke}
    with chat.watch() as pods:
        chat.apply(
            kit.spec_with(
                model={"source": f"file://{tiny}", "format": "hf"}, rollout={"analysis": analysis}
            )
        )
        rev = chat.new_revision()
        st = chat.rolled_back(rev, timeout=300)
        signal = first_ready(pods.of_revision(rev))
    return rollback_result("smoke", chat, rev, st, signal)


def run_metric(chat: kit.Target) -> Result:
    chat.settled()
    analysis = {
        "interval": f"{kit.INTERVAL}s",
        "failureLimit": FAILURE_LIMIT,
        "metrics": {"maxTTFTp95Seconds": 0.001},
    }
    config = loadgen.LoadConfig(target=chat.service_target(), concurrency=2, pause_seconds=0.2)
    with chat.watch() as pods, loadgen.BackgroundLoad(config):
        chat.apply(
            kit.spec_with(env=f"bench-slow-{time.time():.0f}", rollout={"analysis": analysis})
        )
        rev = chat.new_revision()
        st = chat.rolled_back(rev, timeout=LOAD_TIMEOUT)
        signal = first_ready(pods.of_revision(rev))
    return rollback_result("metric", chat, rev, st, signal)


def run_abort(chat: kit.Target) -> Result:
    chat.settled()
    steps = [{"weight": 50, "pause": {}}]
    chat.apply(kit.spec_with(env=f"bench-abort-{time.time():.0f}", rollout={"steps": steps}))
    rev = chat.new_revision()
    kit.wait_for(
        "Paused",
        lambda: (r := chat.rollout()).get("phase") == "Paused" and r.get("canaryRevision") == rev,
        timeout=LOAD_TIMEOUT,
    )
    signal = now_text()
    chat.cluster.kubectl(
        "annotate", "llmd", chat.name, "-n", chat.namespace, "--overwrite",
        f"rollout.llm-operator.io/abort={signal}",
    )  # fmt: skip
    st = chat.rolled_back(rev, timeout=120)
    return rollback_result("abort", chat, rev, st, signal)


RUNNERS: dict[str, Callable[[kit.Target], Result]] = {
    "good": run_good,
    "crash": run_crash,
    "smoke": run_smoke,
    "metric": run_metric,
    "abort": run_abort,
}


def cluster_handle() -> Cluster:
    layout = Layout(cp_layout.default_state_dir())
    if not cp_testing.cluster_is_up(layout):
        raise SystemExit("the local cluster is not up: make cluster-up")
    cp_testing.guard_kubeconfig(layout.kubeconfig, layout=layout)
    return Cluster(layout=layout, bin_dir=cp_layout.bin_dir(), started_here=False)


def setup(
    cluster: Cluster, ns: str, op_ns: str, *, release: str = RELEASE, extra: Sequence[str] = ()
) -> kit.Target:
    """`chat` Ready and Stable under a fresh release watching `ns`; `extra`: Helm arguments."""
    cluster.kubectl("create", "namespace", ns)
    kit.wait_for_no_foreign_operator(cluster, ns, release)
    done = kit.install_operator(cluster, namespace=op_ns, release=release, watch=ns, extra=extra)
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    chat = kit.Target(cluster, ns)
    cluster.apply(kit.cache_claim(), namespace=ns)
    chat.apply(kit.spec_with())
    kit.wait_for(
        "chat Ready and Stable",
        lambda: chat.status().get("ready") == "1/1" and chat.rollout().get("phase") == "Stable",
        timeout=LOAD_TIMEOUT,
        interval=3,
    )
    return chat


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated: {KINDS}")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="leave the namespaces and release")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)  # "frontdoor" has its own runner and table
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}")
    cluster = cluster_handle()
    ns, op_ns = cp_testing.namespace_name("rollback-bench"), cp_testing.namespace_name("rb-op")
    results: list[Result] = []
    door: frontdoor_rollout.FrontDoorResult | None = None
    try:
        chat = setup(cluster, ns, op_ns)
        for kind in kinds:
            print(f"[rollback-bench] {kind} ...", flush=True)
            if kind == "frontdoor":
                door = frontdoor_rollout.run(chat)
                print(f"[rollback-bench] {door}", flush=True)
            else:
                results.append(RUNNERS[kind](chat))
                print(f"[rollback-bench] {results[-1]}", flush=True)
            foreign = kit.foreign_operators(cluster, ns, RELEASE)
            if foreign:  # two operators on one object: this kind's numbers mean nothing
                print(f"[rollback-bench] WARNING: {foreign} also acted on {ns}", flush=True)
    finally:
        if not args.keep:
            # While the operator runs: its finalizer would otherwise hold the namespace.
            cluster.kubectl("delete", "llmd", "--all", "-n", ns, "--timeout=120s", check=False)
            kit.uninstall_operator(cluster, namespace=op_ns, release=RELEASE)
            for name in (ns, op_ns):
                cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
    print(table(results, interval=kit.INTERVAL))
    if door is not None:
        print()
        print(frontdoor_rollout.table(door))
    if args.json:
        rows = [
            {**dataclasses.asdict(r), "to_decision": r.to_decision, "to_gone": r.to_gone}
            for r in results
        ]
        with open(args.json, "w") as f:
            json.dump({"kinds": rows, "frontdoor": door and dataclasses.asdict(door)}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
