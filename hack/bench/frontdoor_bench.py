"""Front door benchmark: what the per-request canary splitter adds to a stream's latency.

    .venv/bin/python hack/bench/frontdoor_bench.py                  # tiny random model
    .venv/bin/python hack/bench/frontdoor_bench.py --model default  # the packaged SmolLM2

One real runtime runs in this process (loopback, the real gRPC server and engine); the front door
runs as its own process (`python -m llm_runtime.frontdoor`, as in a pod), configured with that
runtime as its stable backend. Each round sends a burst of N concurrent GenerateStream calls
(default 32, greedy, `--new-tokens` each, one client channel) straight to the runtime and the
same burst through the front door, alternating which goes first, so both see the same machine
load. Reported per path and round: TTFT p50/p99 (submit to first token, queueing included) and
aggregate tok/s; then the medians over rounds and what the front door adds (median over rounds
of the per-round difference), in milliseconds. The CPU is shared, and on this 2-core machine the
front door process competes with the runtime for it: absolute numbers move with other load, the
difference between the two paths of one run is the point. A tool, not a test: exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from loopback import free_port

if TYPE_CHECKING:
    from llm_runtime.api import client as api
    from llm_runtime.api.v1 import runtime_pb2

# Before torch loads libgomp (see runtime_bench.py): idle OpenMP workers sleep, not spin.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[2]

PROMPTS = (
    "a lighthouse keeper", "the history of bread", "a robot learning to paint", "volcanoes",
    "a trip to Mars", "how bees make honey", "a detective in Paris", "the ocean at night",
)  # fmt: skip


@dataclasses.dataclass
class Timing:
    submitted: float
    first: float = 0.0
    last: float = 0.0
    tokens: int = 0


@dataclasses.dataclass(frozen=True)
class Result:
    path: str
    round: int
    ttft_p50: float
    ttft_p99: float
    tok_s: float
    tokens: int


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def _stream(
    client: api.AsyncRuntimeClient, index: int, timing: Timing, new_tokens: int
) -> None:
    from llm_runtime.api import client as api

    request = api.build_request(
        messages=[("user", f"Write a long story about {PROMPTS[index % len(PROMPTS)]}.")],
        max_new_tokens=new_tokens,
        temperature=0.0,
    )
    async for chunk in client.generate_stream(request, deadline=300):
        if chunk.token_ids:
            now = time.perf_counter()
            if timing.tokens == 0:
                timing.first = now
            timing.last = now
            timing.tokens += len(chunk.token_ids)


async def burst(
    path: str, rnd: int, client: api.AsyncRuntimeClient, n: int, new_tokens: int
) -> Result:
    started = time.perf_counter()
    timings = [Timing(submitted=started) for _ in range(n)]
    await asyncio.gather(*(_stream(client, i, t, new_tokens) for i, t in enumerate(timings)))
    ttfts = [t.first - t.submitted for t in timings]
    tokens = sum(t.tokens for t in timings)
    return Result(
        path=path,
        round=rnd,
        ttft_p50=percentile(ttfts, 50),
        ttft_p99=percentile(ttfts, 99),
        tok_s=tokens / (max(t.last for t in timings) - started),
        tokens=tokens,
    )


@contextlib.asynccontextmanager
async def frontdoor_process(stable_target: str, workdir: Path) -> AsyncIterator[str]:
    """`python -m llm_runtime.frontdoor` in front of `stable_target`; yields its target."""
    from llm_runtime.api import client as api
    from llm_runtime.frontdoor import routing

    config = workdir / "routing.json"
    config.write_text(routing.to_json(routing.RoutingConfig(routing.Backend(stable_target, "r1"))))
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'runtime'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    cmd = [sys.executable, "-m", "llm_runtime.frontdoor", "--config", str(config)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0"]
    cmd += ["--grace-seconds", "1", "--log-level", "WARNING"]
    proc = await asyncio.create_subprocess_exec(*cmd, env=env)
    target = f"127.0.0.1:{port}"
    try:
        async with api.AsyncRuntimeClient(api.Connection(target=target)) as probe:
            for _ in range(200):
                with contextlib.suppress(Exception):
                    if await probe.health(deadline=1) == "SERVING":
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the front door did not become SERVING")
        yield target
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def print_header() -> None:
    print(f"{'path':<10} {'round':>5} {'TTFT p50':>10} {'TTFT p99':>10} {'tok/s':>8}")


def print_row(r: Result) -> None:
    print(
        f"{r.path:<10} {r.round:>5} {r.ttft_p50 * 1000:>8.1f}ms {r.ttft_p99 * 1000:>8.1f}ms "
        f"{r.tok_s:>8.1f}"
    )


async def main_async(args: argparse.Namespace) -> int:
    from llm_runtime import config, server
    from llm_runtime.api import client as api

    with tempfile.TemporaryDirectory(prefix="frontdoor-bench-") as tmp:
        workdir = Path(tmp)
        if args.model == "tiny":
            from llm_runtime.models import tiny

            model = str(tiny.make_tiny_model(workdir / "tiny"))
        elif args.model == "default":
            model = ""  # the runtime's packaged default (SmolLM2)
        else:
            model = args.model
        settings = config.Settings(
            model=model,
            dtype=args.dtype,
            host="127.0.0.1",
            grpc_port=0,
            metrics_port=0,
            health_port=0,
            http_port=0,
            grace_seconds=1,
            max_batch_size=max(32, args.concurrency),
        )
        async with server.serving(settings) as srv:
            direct_target = f"127.0.0.1:{srv.grpc_port}"
            info = await _info(direct_target)
            print(
                f"model {info.name} ({info.dtype} on {info.device}); {args.concurrency} "
                f"concurrent streams x {args.new_tokens} tokens, {args.rounds} rounds; "
                f"front door: its own process"
            )
            async with (
                frontdoor_process(direct_target, workdir) as door_target,
                api.AsyncRuntimeClient(api.Connection(target=direct_target)) as direct,
                api.AsyncRuntimeClient(api.Connection(target=door_target)) as door,
            ):
                for client in (direct, door):  # warm both paths (connections, engine)
                    await burst("warm-up", 0, client, min(4, args.concurrency), 4)
                results: list[Result] = []
                print_header()
                for rnd in range(1, args.rounds + 1):
                    paths = [("direct", direct), ("frontdoor", door)]
                    for path, client in paths if rnd % 2 else paths[::-1]:  # alternate order
                        results.append(
                            await burst(path, rnd, client, args.concurrency, args.new_tokens)
                        )
                        print_row(results[-1])
    print()
    for path in ("direct", "frontdoor"):
        mine = [r for r in results if r.path == path]
        print(
            f"{path:<10} median over rounds: TTFT p50 "
            f"{statistics.median(r.ttft_p50 for r in mine) * 1000:.1f}ms, p99 "
            f"{statistics.median(r.ttft_p99 for r in mine) * 1000:.1f}ms, "
            f"{statistics.median(r.tok_s for r in mine):.1f} tok/s"
        )

    def added(attr: str) -> float:
        by_round = {
            (r.round, r.path): float(getattr(r, attr)) for r in results if r.path != "warm-up"
        }
        diffs = [
            by_round[(rnd, "frontdoor")] - by_round[(rnd, "direct")]
            for rnd in range(1, args.rounds + 1)
        ]
        return statistics.median(diffs)

    print(
        f"added by the front door: TTFT p50 {added('ttft_p50') * 1000:+.1f}ms, "
        f"p99 {added('ttft_p99') * 1000:+.1f}ms, tok/s {added('tok_s'):+.1f}"
    )
    return 0


async def _info(target: str) -> runtime_pb2.ModelInfoResponse:
    from llm_runtime.api import client as api

    async with api.AsyncRuntimeClient(api.Connection(target=target)) as c:
        return await c.model_info(deadline=10)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--model",
        default="tiny",
        help="'tiny' (a random model, default), 'default' (packaged SmolLM2) or a path",
    )
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float32 ...")
    parser.add_argument("--concurrency", type=int, default=32, help="streams at once (32)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens per stream (64)")
    parser.add_argument("--rounds", type=int, default=5, help="direct+frontdoor rounds (5)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main_async(parse_args(sys.argv[1:]))))
