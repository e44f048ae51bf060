"""A small, bounded gRPC load generator for canary tests and the rollback benchmark.

    .venv/bin/python hack/bench/loadgen.py CLUSTER_IP:PORT --concurrency 2 --duration 30

(CLUSTER_IP: the LLMDeployment's ClusterIP Service; PORT: its spec.service.port, by default
`llm_runtime.api.contract.RUNTIME_GRPC_PORT`.)

Each of `concurrency` workers sends one short chat request after another until stopped. By
default every request opens its own channel: a ClusterIP Service balances per *connection*, so a
fresh connection per request spreads requests over stable and canary pods in proportion to their
Ready pods. `long_lived` keeps one channel per worker for the whole run instead - what real gRPC
clients do, and what the front door must split per request. Every answer's trailing metadata
names the revision that served it (`contract.METADATA_REVISION`), so the report counts requests
per revision as the client saw them.

Nothing is retried: "zero failed requests" in the canary acceptance means every request sent got
an answer, so every gRPC error is counted, by status code, with a few messages kept for the report.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import threading
import time
from collections.abc import Sequence

import grpc
from grpc import aio
from llm_runtime.api import client, contract
from llm_runtime.api.v1 import runtime_pb2_grpc

PROMPTS = (
    "Say hello in one short sentence.",
    "Name one colour.",
    "What is two plus two?",
    "Give me a word that rhymes with cat.",
)
SAMPLE_ERRORS = 5  # error messages kept verbatim for the report


@dataclasses.dataclass(frozen=True)
class LoadConfig:
    """What one run sends: where, how many streams at once, how long each answer may get."""

    target: str
    concurrency: int = 2
    max_new_tokens: int = 8
    deadline_seconds: float = 60.0
    pause_seconds: float = 0.0  # between one worker's requests; 0 keeps the pods busy
    long_lived: bool = False  # one channel per worker for the whole run (else one per request)


@dataclasses.dataclass
class LoadReport:
    """Counts of finished requests; `failed` is every request that did not end with OK."""

    ok: int = 0
    failed: int = 0
    codes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    errors: list[str] = dataclasses.field(default_factory=list)
    latencies: list[float] = dataclasses.field(default_factory=list)
    # Answered requests by the revision that served them (trailing metadata; "" when absent).
    by_revision: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    started: float = dataclasses.field(default_factory=time.monotonic)
    ended: float = 0.0

    def record_ok(self, seconds: float) -> None:
        self.ok += 1
        self.codes["OK"] += 1
        self.latencies.append(seconds)

    def record_error(self, code: str, message: str) -> None:
        self.failed += 1
        self.codes[code] += 1
        if len(self.errors) < SAMPLE_ERRORS:
            self.errors.append(f"{code}: {message}")

    def summary(self) -> dict[str, object]:
        """A JSON-able summary: counts, codes, p50/p95 latency, request rate."""
        wall = (self.ended or time.monotonic()) - self.started
        return {
            "ok": self.ok,
            "failed": self.failed,
            "codes": dict(self.codes),
            "errors": list(self.errors),
            "p50_seconds": percentile(self.latencies, 0.50),
            "p95_seconds": percentile(self.latencies, 0.95),
            "requests_per_second": round((self.ok + self.failed) / wall, 2) if wall > 0 else 0.0,
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Pure: the nearest-rank percentile (None for no values), enough for a report line."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))
    return round(ordered[rank], 4)


def status_name(error: grpc.RpcError) -> str:
    """The gRPC status name of a failed call ("UNAVAILABLE"), or "UNKNOWN" without one."""
    code = error.code() if isinstance(error, aio.AioRpcError) else None
    return code.name if code is not None else "UNKNOWN"


# round_robin (a multi-address target spreads over every address) and no retries: a request that
# fails is counted, never hidden behind a transparent retry.
CHANNEL_OPTIONS: tuple[tuple[str, str | int], ...] = (
    ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
    ("grpc.enable_retries", 0),
)


def _channel(config: LoadConfig) -> aio.Channel:
    return aio.insecure_channel(config.target, options=CHANNEL_OPTIONS)


async def one_request(
    config: LoadConfig, index: int, report: LoadReport, channel: aio.Channel | None = None
) -> None:
    """One chat request, on `channel` or else on a fresh one (a fresh connection, so the Service
    re-balances); counts the answer under the revision that served it."""
    req = client.build_request(
        messages=[("user", PROMPTS[index % len(PROMPTS)])],
        max_new_tokens=config.max_new_tokens,
    )
    start = time.monotonic()
    own = channel is None
    ch = _channel(config) if channel is None else channel
    try:
        call = runtime_pb2_grpc.RuntimeStub(ch).Generate(req, timeout=config.deadline_seconds)
        await call
        trailing = await call.trailing_metadata()
    except grpc.RpcError as e:
        details = e.details() if isinstance(e, aio.AioRpcError) else str(e)
        report.record_error(status_name(e), str(details))
    else:
        report.record_ok(time.monotonic() - start)
        revision = dict(trailing or ()).get(contract.METADATA_REVISION, "")
        report.by_revision[str(revision)] += 1
    finally:
        if own:
            await ch.close(None)


async def run(
    config: LoadConfig,
    stop: asyncio.Event | threading.Event,
    report: LoadReport | None = None,
) -> LoadReport:
    """Workers send requests back to back until `stop` is set; then in-flight ones finish."""
    report = LoadReport() if report is None else report

    def stopped() -> bool:
        return stop.is_set()

    async def worker(offset: int) -> None:
        index = offset
        channel = _channel(config) if config.long_lived else None
        try:
            while not stopped():
                await one_request(config, index, report, channel)
                index += config.concurrency
                if config.pause_seconds:
                    await asyncio.sleep(config.pause_seconds)
        finally:
            if channel is not None:
                await channel.close(None)

    await asyncio.gather(*(worker(i) for i in range(config.concurrency)))
    report.ended = time.monotonic()
    return report


class BackgroundLoad:
    """Runs `run` on its own event loop in a thread, for synchronous tests and scripts.

    with BackgroundLoad(config) as load:
        ...                      # roll out while requests flow
    report = load.report         # after the block: every request has finished
    """

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.report: LoadReport | None = None  # set once every request has finished
        self._live = LoadReport()  # counts while the load runs (snapshot reads it)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="loadgen", daemon=True)
        self._error: BaseException | None = None

    def _main(self) -> None:
        try:
            self.report = asyncio.run(run(self.config, self._stop, self._live))
        except BaseException as e:  # surfaced by stop(); a thread cannot raise into the test
            self._error = e

    def start(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def snapshot(self) -> tuple[int, int]:
        """(ok, failed) so far, while the load runs."""
        return (self._live.ok, self._live.failed)

    def by_revision(self) -> dict[str, int]:
        """Requests answered so far, per revision (the runtime's `llm-revision` trailer)."""
        return dict(self._live.by_revision)

    def stop(self) -> LoadReport:
        """Stops new requests, waits for in-flight ones, returns the report."""
        self._stop.set()
        self._thread.join(timeout=self.config.deadline_seconds + 30)
        if self._error is not None:
            raise RuntimeError("the load generator crashed") from self._error
        if self.report is None:
            raise RuntimeError("the load generator did not finish in time")
        return self.report

    def __enter__(self) -> BackgroundLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="host:port of the Service (ClusterIP) or a pod")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args(argv)
    config = LoadConfig(
        target=args.target, concurrency=args.concurrency, max_new_tokens=args.max_new_tokens
    )
    with BackgroundLoad(config) as load:
        time.sleep(args.duration)
    assert load.report is not None
    print(json.dumps(load.report.summary(), indent=2))
    return 1 if load.report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
