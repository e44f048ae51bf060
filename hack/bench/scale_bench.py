"""Scale benchmark: what N idle LLMDeployments cost one operator, on the local cluster.

    .venv/bin/python hack/bench/scale_bench.py                      # N = 200, then 1000 (~15 min)
    .venv/bin/python hack/bench/scale_bench.py --n 200 --window 60 --json /tmp/scale.json

It installs the chart under its own release watching a fresh namespace, makes one SmolLM2
LLMDeployment Ready (`chat`, one replica: the rollback benchmark's set-up), then adds N-1 idle ones
(`replicas: 0`, so no pods) and waits until the operator has written every one's status. Then,
with nothing changing, over `--window` seconds it reads the operator's own /metrics page:

- API requests per second, twice: `llm_operator_api_requests_total`, which counts every request
  the operator's code sends (applies, status patches, GETs; scrapes are not API requests), and
  the API server's audit log (`localcluster.audit`), which also sees kopf's own requests (its
  LISTs, watches, patches and Events) from the operator's ServiceAccount. The verdict uses the
  audit log; watches opened are reported apart (each is one long-lived request);
- CPU: `process_cpu_seconds_total` over the window, as a share of one core;
- memory: `process_resident_memory_bytes` with only `chat`, and with all N (per object = the
  difference / (N-1)).

Then spec change -> Deployment applied: for K idle objects, one at a time, a merge patch of an
env variable (a new revision) and the time until the watch on Deployments delivers the new
revision's Deployment (p50, p99). Last, with N-1 idle objects beside it, `chat` gets a canary
whose model file is corrupt (it crash-loops): the time from the container's first exit to the
operator's rollback decision (`status.rollback.at`), as rollback_bench.py measures it.
Targets (issue 11): <= 1 request/s and <= 5% of a core idle at N = 1000, p50 < 1 s, rollback < 3 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import kubernetes
from bench import canary_kit as kit
from bench import rollback_bench
from llm_runtime.api import contract
from localcluster import audit, cp_testing
from localcluster.cp_testing import Cluster
from prometheus_client.parser import text_string_to_metric_families

K8S: Any = kubernetes  # untyped package
RELEASE = "scale-bench"
IDLE_PREFIX = "idle-"
CHUNK = 200


@dataclasses.dataclass
class Result:
    n: int
    requests_per_second: float  # the operator's own count
    requests_by_kind: dict[str, float]
    audit_requests_per_second: float  # the API server's count of the operator's account
    audit_watches_opened: int
    audit_by_kind: dict[str, int]
    cpu_percent: float
    ticks_per_second: float  # ticks run in the window (llm_operator_reconciles_total)
    skipped_per_second: float  # idle re-checks that found nothing changed (no tick run)
    drift_s: float  # the operator's idle re-check interval in this run
    rss_base_mb: float
    rss_mb: float
    rss_per_object_kb: float
    spec_p50_s: float
    spec_p99_s: float
    crash_to_rollback_s: float | None
    settle_s: float

    def verdicts(self) -> list[str]:
        rb = self.crash_to_rollback_s
        checks = [
            ("<= 1 API request/s idle (audit log)", self.audit_requests_per_second <= 1.0),
            ("<= 5% of a core idle", self.cpu_percent <= 5.0),
            ("spec -> Deployment p50 < 1 s", self.spec_p50_s < 1.0),
            ("crash -> rollback < 3 s", rb is not None and rb < 3.0),
        ]
        return [f"  N={self.n} {what}: {'PASS' if ok else 'FAIL'}" for what, ok in checks]


def idle_object(name: str) -> dict[str, Any]:
    """Pure: an LLMDeployment with no pods (the rollback benchmark's spec at replicas 0)."""
    return {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": name},
        "spec": kit.spec_with(replicas=0),
    }


def metrics_sample(cluster: Cluster, op_ns: str) -> dict[str, Any]:
    text = kit.operator_metrics(cluster, namespace=op_ns, release=RELEASE)
    kinds: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "llm_operator_api_requests_total":
                key = f"{s.labels['method']} {s.labels['resource']}"
                kinds[key] = kinds.get(key, 0.0) + s.value
    return {
        "t": time.monotonic(),
        "cpu": kit.sample(text, "process_cpu_seconds_total"),
        "rss": kit.sample(text, "process_resident_memory_bytes"),
        "requests": sum(kinds.values()),
        "kinds": kinds,
        "ticks": kit.sample(text, "llm_operator_reconciles_total", trigger="status"),
        "skipped": kit.sample(text, "llm_operator_ticks_skipped_total"),
    }


def audited(op_ns: str, t0: datetime, t1: datetime) -> dict[str, Any]:
    """The API server's count of the operator's requests in [t0, t1) (its audit log)."""
    return audit.namespace_report(
        audit.read_lines(audit.default_log()), namespace=op_ns, t0=t0, t1=t1
    )


def create_idle(cluster: Cluster, ns: str, first: int, count: int) -> None:
    """Applies `count` idle objects in chunks (one kubectl call per chunk)."""
    names = [f"{IDLE_PREFIX}{i:04d}" for i in range(first, first + count)]
    for start in range(0, len(names), CHUNK):
        items = [idle_object(n) for n in names[start : start + CHUNK]]
        doc = {"apiVersion": "v1", "kind": "List", "items": items}
        cluster.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(doc))


def statuses_written(cluster: Cluster, ns: str, total: int) -> bool:
    """Every object's status is written for its generation and says Ready (its first write
    comes before its Deployment is seen, so observedGeneration alone is not settled)."""
    items = cluster.kubectl_json("get", "llmd", "-n", ns)["items"]
    return len([o for o in items if settled(o)]) >= total


def settled(obj: Mapping[str, Any]) -> bool:
    """Pure: the status is for the current generation, Ready, and its rollout Stable."""
    st = obj.get("status") or {}
    return (
        st.get("observedGeneration") == obj["metadata"].get("generation")
        and st.get("phase") == "Ready"
        and (st.get("rollout") or {}).get("phase") == "Stable"
    )


def quiet(samples: Sequence[Mapping[str, Any]], *, runs: int) -> bool:
    """Pure: the operator's own request count did not move over the last `runs` samples."""
    tail = [s["requests"] for s in samples[-runs:]]
    return len(tail) == runs and len(set(tail)) == 1


def wait_quiet(cluster: Cluster, op_ns: str, *, every: float = 5, runs: int = 3) -> float:
    """Waits until the operator sends nothing for (runs - 1) * every seconds: the fleet's
    follow-up ticks (Events, second status writes) are over. Returns the seconds waited."""
    start, samples = time.monotonic(), [metrics_sample(cluster, op_ns)]
    while not quiet(samples, runs=runs):
        if time.monotonic() - start > 900:
            raise TimeoutError(f"the operator never went quiet: {samples[-runs:]}")
        time.sleep(every)
        samples.append(metrics_sample(cluster, op_ns))
    return time.monotonic() - start


def _clients(cluster: Cluster) -> tuple[Any, Any]:
    api = K8S.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    return K8S.client.AppsV1Api(api), K8S.client.CustomObjectsApi(api)


def spec_to_deployment(cluster: Cluster, ns: str, name: str, marker: str) -> float | None:
    """Seconds from a stored spec change of `name` to the watch event of its new Deployment."""
    apps, custom = _clients(cluster)
    sel = f"{contract.LABEL_INSTANCE}={name}"
    listed = apps.list_namespaced_deployment(ns, label_selector=sel)
    before = {d.metadata.name for d in listed.items}
    seen: dict[str, float] = {}
    ready = threading.Event()

    def watch() -> None:
        w = K8S.watch.Watch()
        ready.set()
        for ev in w.stream(
            apps.list_namespaced_deployment, ns, label_selector=sel,
            resource_version=listed.metadata.resource_version, timeout_seconds=30,
        ):  # fmt: skip
            if ev["object"].metadata.name not in before:
                seen["at"] = time.monotonic()
                w.stop()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait()
    time.sleep(0.2)  # the watch request is on the wire
    env = [{"name": "SCALE_BENCH", "value": marker}]
    custom.patch_namespaced_custom_object(
        "llm-operator.io", "v1alpha1", ns, "llmdeployments", name,
        {"spec": {"runtime": {"env": env}}},
    )  # fmt: skip
    stored = time.monotonic()
    thread.join(35)
    if "at" not in seen:
        print(f"[scale-bench] {name}: no new Deployment within 30 s of the spec change")
        return None
    return seen["at"] - stored


def percentile(values: Sequence[float], q: float) -> float:
    """Pure: the q-quantile (nearest rank) of `values`."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]


def run_one(cluster: Cluster, n: int, *, window: float, changes: int, drift: float) -> Result:
    ns, op_ns = cp_testing.namespace_name("scale-bench"), cp_testing.namespace_name("scale-op")
    try:
        extra = kit.drift_values(drift)
        chat = rollback_bench.setup(cluster, ns, op_ns, release=RELEASE, extra=extra)
        time.sleep(10)
        base = metrics_sample(cluster, op_ns)
        started = time.monotonic()
        create_idle(cluster, ns, 0, n - 1)
        kit.wait_for(
            f"the operator's status on all {n} objects",
            lambda: statuses_written(cluster, ns, n), timeout=1800, interval=5,
        )  # fmt: skip
        written = time.monotonic() - started
        quieted = wait_quiet(cluster, op_ns)
        settle = time.monotonic() - started
        print(
            f"[scale-bench] N={n}: every status Ready {written:.0f} s after the apply, "
            f"the operator quiet {quieted:.0f} s later"
        )
        a, wall_a = metrics_sample(cluster, op_ns), datetime.now(UTC)
        time.sleep(window)
        b, wall_b = metrics_sample(cluster, op_ns), datetime.now(UTC)
        span = b["t"] - a["t"]
        time.sleep(2)  # the audit log's last lines are flushed
        seen = audited(op_ns, wall_a, wall_b)
        print(f"[scale-bench] N={n}: audit log, operator's account: {seen}")
        kinds = {
            k: round((v - a["kinds"].get(k, 0.0)) / span, 3)
            for k, v in b["kinds"].items()
            if v - a["kinds"].get(k, 0.0) > 0
        }
        timed = [
            spec_to_deployment(cluster, ns, f"{IDLE_PREFIX}{i * (n - 1) // changes:04d}", f"m{i}")
            for i in range(changes)
        ]
        lat = [x for x in timed if x is not None] or [float("inf")]
        print(f"[scale-bench] N={n}: spec -> Deployment {[x and round(x, 3) for x in timed]}")
        crash = rollback_bench.run_crash(chat)
        print(f"[scale-bench] N={n}: {crash}")
        return Result(
            n=n,
            requests_per_second=round((b["requests"] - a["requests"]) / span, 3),
            requests_by_kind=kinds,
            audit_requests_per_second=float(seen["requests_per_second"] or 0.0),
            audit_watches_opened=int(seen["watches_opened"]),
            audit_by_kind={str(k): int(v) for k, v in seen["by_kind"].items()},
            cpu_percent=round(100 * (b["cpu"] - a["cpu"]) / span, 2),
            ticks_per_second=round((b["ticks"] - a["ticks"]) / span, 2),
            skipped_per_second=round((b["skipped"] - a["skipped"]) / span, 2),
            drift_s=drift,
            rss_base_mb=round(base["rss"] / 2**20, 1),
            rss_mb=round(b["rss"] / 2**20, 1),
            rss_per_object_kb=round((b["rss"] - base["rss"]) / 1024 / max(1, n - 1), 1),
            spec_p50_s=round(statistics.median(lat), 3),
            spec_p99_s=round(percentile(lat, 0.99), 3),
            crash_to_rollback_s=crash.to_decision,
            settle_s=round(settle, 1),
        )
    finally:
        cluster.kubectl("delete", "llmd", "--all", "-n", ns, "--wait=false", check=False)
        kit.wait_for(
            "the LLMDeployments gone (the operator removes its finalizers)",
            lambda: not cluster.kubectl_json("get", "llmd", "-n", ns)["items"],
            timeout=900, interval=5,
        )  # fmt: skip
        kit.uninstall_operator(cluster, namespace=op_ns, release=RELEASE)
        for name in (ns, op_ns):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def table(results: Sequence[Result]) -> str:
    head = (
        f"{'N':>5} {'req/s':>6} {'audit':>6} {'CPU %':>6} {'ticks/s':>7} {'skip/s':>6} "
        f"{'RSS MB':>7} {'KB/obj':>7} {'spec p50':>8} {'spec p99':>8} {'crash->rb':>9} "
        f"{'settle':>7}"
    )
    rows = [head]
    for r in results:
        rb = f"{r.crash_to_rollback_s:.1f}s" if r.crash_to_rollback_s is not None else "-"
        rows.append(
            f"{r.n:>5} {r.requests_per_second:>6.2f} {r.audit_requests_per_second:>6.2f} "
            f"{r.cpu_percent:>6.2f} {r.ticks_per_second:>7.2f} {r.skipped_per_second:>6.2f} "
            f"{r.rss_mb:>7.1f} "
            f"{r.rss_per_object_kb:>7.1f} {r.spec_p50_s:>7.3f}s {r.spec_p99_s:>7.3f}s "
            f"{rb:>9} {r.settle_s:>6.0f}s"
        )
    for r in results:
        rows += r.verdicts()
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="200,1000", help="comma-separated object counts")
    parser.add_argument("--window", type=float, default=60, help="idle measurement, seconds")
    parser.add_argument("--changes", type=int, default=20, help="spec changes timed per N")
    parser.add_argument(
        "--drift",
        type=float,
        help="the operator's idle re-check interval, seconds (default: the window, so every "
        "idle object is re-checked inside it; the operator's own default is 300)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    cluster = rollback_bench.cluster_handle()
    audit.require_log(audit.default_log())
    results = []
    for n in [int(x) for x in args.n.split(",") if x]:
        drift = args.drift if args.drift is not None else args.window
        results.append(run_one(cluster, n, window=args.window, changes=args.changes, drift=drift))
        print(table(results), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dataclasses.asdict(r) for r in results], f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
