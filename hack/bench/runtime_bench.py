"""Runtime benchmark: the continuous-batching engine against the naive and static designs, same run.

    PYTHONPATH=hack .venv/bin/python hack/bench/runtime_bench.py     # or: make bench

For each concurrency level (default 1, 8, 32, 64) N chat requests (varied prompts, greedy, 128
new tokens) arrive together, first at the engine, then at the baselines (`baselines.py`), same
model object and dtype: `static`, transformers' `model.generate()` on one left-padded batch of the
N prompts (the simplest thing a user could write), and `naive`, one `model.generate()` per request
under a lock (only up to `--naive-max`, default 8: it runs at ~15 tok/s whatever N is). The engine
is driven through the real gRPC server (in-process, loopback, streaming) unless `--mode
inprocess` or the server cannot start.

It prints aggregate generated tokens/s, TTFT p50/p99, TPOT p50, the burst's peak RSS, the ratios,
the KV cache's bytes per token (from the model config, and what the engine allocates), and the
targets: issue 14's (engine >= 2x static tok/s at N=1, 32 and 64, TTFT p50 <= 0.5 s at N=32) and
the earlier ones against naive (N=32 >= 15x, when measured; N=1 no slower). Then, on the same
server, 32 streams over gRPC and 32 over the OpenAI-compatible HTTP API back to back
(`--http-streams`, httpbench.py): what HTTP adds to TTFT p50 and its tok/s ratio to gRPC.

The CPU is shared, so absolute numbers move with other load; the ratios are measured back to
back and are what the targets are about. This is a tool, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# Before torch loads libgomp: idle OpenMP workers sleep instead of spinning. On this shared 2-core
# machine spinning workers fight other processes for the cores and were measured 5-7x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TOPICS = (
    "a lighthouse keeper", "the history of bread", "a robot learning to paint", "volcanoes",
    "a trip to Mars", "how bees make honey", "a detective in Paris", "the ocean at night",
    "why the sky is blue", "a dragon who is afraid of fire", "the first computer", "winter in Oslo",
    "a talking cat", "how rain forms", "a chess tournament", "the life of a tree",
    "a lost umbrella", "how trains work", "a festival of lights", "the moon landing",
    "a small village bakery", "a mountain expedition", "the invention of the bicycle", "dolphins",
    "a library that never closes", "a storm at sea", "the Roman empire", "a clockmaker",
    "a garden in spring", "the northern lights", "a jazz musician", "a friendly ghost",
)  # fmt: skip


def messages_for(index: int) -> list[tuple[str, str]]:
    """A varied chat prompt that asks for a long answer, so generations run their full length."""
    topic = TOPICS[index % len(TOPICS)]
    return [("user", f"Write a long, detailed story about {topic}.")]


def prompt_for(index: int, new_tokens: int) -> Any:  # baselines.Prompt
    from bench import baselines

    return baselines.Prompt(messages=tuple(messages_for(index)), max_new_tokens=new_tokens)


@dataclasses.dataclass
class Timing:
    """One request's clock: submitted, first token, last token, tokens generated."""

    submitted: float
    first: float = 0.0
    last: float = 0.0
    tokens: int = 0

    def token(self, count: int = 1) -> None:
        now = time.perf_counter()
        if self.tokens == 0:
            self.first = now
        self.last = now
        self.tokens += count


@dataclasses.dataclass(frozen=True)
class Result:
    design: str
    concurrency: int
    tok_s: float
    ttft_p50: float
    ttft_p99: float
    tpot_p50: float
    tokens: int
    seconds: float
    peak_rss_mib: float = 0.0  # the process's peak RSS during this burst (the model included)
    kv_peak_mib: float = 0.0  # the engine's KV cache allocation at its largest (engine rows)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarize(design: str, timings: list[Timing], started: float) -> Result:
    """Aggregate tok/s over the wall time of the whole burst, latency percentiles per request."""
    done = max(t.last for t in timings)
    tokens = sum(t.tokens for t in timings)
    ttfts = [t.first - t.submitted for t in timings]
    tpots = [(t.last - t.first) / (t.tokens - 1) for t in timings if t.tokens > 1]
    return Result(
        design=design,
        concurrency=len(timings),
        tok_s=tokens / (done - started),
        ttft_p50=percentile(ttfts, 50),
        ttft_p99=percentile(ttfts, 99),
        tpot_p50=percentile(tpots, 50) if tpots else 0.0,
        tokens=tokens,
        seconds=done - started,
    )


async def run_engine_inprocess(engine: Any, index: int, timing: Timing, new_tokens: int) -> None:
    from llm_runtime import types
    from llm_runtime.engine import core

    request = core.chat_request(
        messages_for(index),
        request_id=f"bench-{index}",
        params=types.SamplingParams(max_new_tokens=new_tokens),
    )
    async for event in engine.generate(request):
        if isinstance(event, types.TokenEvent) and event.token_ids:
            timing.token(len(event.token_ids))


async def run_engine_grpc(client: Any, index: int, timing: Timing, new_tokens: int) -> None:
    from llm_runtime.api import client as api

    request = api.build_request(
        messages=messages_for(index), max_new_tokens=new_tokens, temperature=0.0
    )
    async for chunk in client.generate_stream(request, deadline=600):
        if chunk.token_ids:
            timing.token(len(chunk.token_ids))


Runner = Callable[[int, Timing], Any]


async def measure(
    design: str,
    concurrency: int,
    work: Callable[[list[Timing]], Awaitable[Any]],
    *,
    kv: Callable[[], int] | None = None,
) -> Result:
    """Run `work` on N fresh clocks started now; summarize, with the burst's peak RSS and, when
    `kv` is given, the largest value it returned while polled (KV cache bytes)."""
    from bench import memory

    started = time.perf_counter()
    timings = [Timing(submitted=started) for _ in range(concurrency)]
    with memory.PeakRSS(sample=kv) as peak:
        await work(timings)
    result = summarize(design, timings, started)
    return dataclasses.replace(
        result, peak_rss_mib=peak.peak_mib, kv_peak_mib=peak.peak_sample / 2**20
    )


async def burst(
    design: str, runner: Runner, concurrency: int, *, kv: Callable[[], int] | None = None
) -> Result:
    """N requests at once through `runner`; wait for all; summarize."""

    async def work(timings: list[Timing]) -> None:
        await asyncio.gather(*(runner(i, t) for i, t in enumerate(timings)))

    return await measure(design, concurrency, work, kv=kv)


async def static_burst(loaded: Any, concurrency: int, new_tokens: int) -> Result:
    """The N prompts as one left-padded greedy `model.generate()` call (`baselines.py`)."""
    from bench import baselines

    prompts = [prompt_for(i, new_tokens) for i in range(concurrency)]

    async def work(timings: list[Timing]) -> None:
        await asyncio.to_thread(baselines.generate_batch, loaded, prompts, timings)

    return await measure("static", concurrency, work)


async def run_naive(naive: Any, index: int, timing: Timing, new_tokens: int) -> None:
    await asyncio.wrap_future(naive.submit(prompt_for(index, new_tokens), timing))


def free_port() -> int:
    """A loopback port free now (`http_port` 0 turns the HTTP API off rather than picking one)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_grpc(engine: Any, load_seconds: float, *, http: bool = False) -> tuple[Any, Any]:
    """The real server in this process on free loopback ports, serving our engine (and the
    OpenAI-compatible HTTP API beside gRPC when `http`)."""
    from llm_runtime import config, server
    from llm_runtime.api import client as api

    async def factory(_settings: Any) -> Any:
        return server.BuiltEngine(engine=engine, load_seconds=load_seconds)

    settings = config.Settings(
        host="127.0.0.1",
        grpc_port=0,
        metrics_port=0,
        health_port=0,
        http_port=free_port() if http else 0,
        grace_seconds=1.0,
    )
    srv = server.RuntimeServer(settings, engine_factory=factory)
    await srv.start()
    await srv.wait_ready()
    return srv, api.AsyncRuntimeClient(api.Connection(target=f"127.0.0.1:{srv.grpc_port}"))


async def http_vs_grpc(
    srv: Any, grpc_runner: Runner, streams: int, new_tokens: int
) -> list[Result]:
    """N streams over gRPC, then the same N over the OpenAI HTTP API of the same server."""
    import httpx
    from bench import httpbench

    url = f"http://127.0.0.1:{srv.http_port}/v1/chat/completions"
    model = srv.state.serving.info.name
    limits = httpx.Limits(max_connections=streams)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        def http_runner(i: int, t: Timing) -> Any:
            body = httpbench.chat_body(messages_for(i), model=model, new_tokens=new_tokens)
            return httpbench.run_http(client, url, body, t)

        await burst("http", http_runner, 1)  # warm: connection set-up is not what is measured
        return [
            await burst("grpc", grpc_runner, streams),
            await burst("http", http_runner, streams),
        ]


def http_lines(results: list[Result]) -> list[str]:
    """The cost line of each HTTP burst against the gRPC burst of the same size just before it."""
    from bench import httpbench

    by = {(r.design, r.concurrency): r for r in results}
    lines = []
    for (design, n), http in by.items():
        grpc = by.get(("grpc", n))
        if design == "http" and grpc is not None:
            pair = ((grpc.ttft_p50, grpc.tok_s), (http.ttft_p50, http.tok_s))
            c = httpbench.cost(streams=n, grpc=pair[0], http=pair[1])
            lines.append(httpbench.describe(c))
    return lines


def print_table(results: list[Result]) -> None:
    from bench import verdicts

    print("\n".join(verdicts.table(results)))


def memory_report(loaded: Any, engine: Any, results: list[Result]) -> list[str]:
    """KV bytes per token, from the config and from the engine, and each engine burst's peak."""
    from bench import memory, verdicts

    dtype_bytes = next(loaded.model.parameters()).element_size()
    config_bytes = memory.kv_bytes_per_token(loaded.model.config, dtype_bytes=dtype_bytes)
    peaks = [
        (r.concurrency, r.kv_peak_mib, r.peak_rss_mib) for r in results if r.design == "engine"
    ]
    return verdicts.memory_lines(
        config_bytes=config_bytes, engine_bytes=engine.kv_cache_bytes()[0], peaks=peaks
    )


async def run_levels(
    args: argparse.Namespace, loaded: Any, engine: Any, runner: Runner
) -> list[Result]:
    """Every N: the engine's burst, then the baselines' (static, naive) on the same prompts."""
    from bench import baselines

    naive = baselines.NaiveServer(loaded)
    if not args.skip_naive:  # warm-up, like the engine's
        await run_naive(naive, 0, Timing(submitted=time.perf_counter()), 2)
    results: list[Result] = []
    for n in args.concurrency:
        results.append(await burst("engine", runner, n, kv=lambda: engine.kv_cache_bytes()[1]))
        print_table(results[-1:])
        if not args.skip_static:
            results.append(await static_burst(loaded, n, args.new_tokens))
            print_table(results[-1:])
        if not args.skip_naive and n <= args.naive_max:

            def naive_runner(i: int, t: Timing) -> Any:
                return run_naive(naive, i, t, args.new_tokens)

            results.append(await burst("naive", naive_runner, n))
            print_table(results[-1:])
    return results


async def main_async(args: argparse.Namespace) -> int:
    import torch
    from bench import verdicts
    from llm_runtime import engine as engine_mod
    from llm_runtime import models
    from llm_runtime.models import loading

    path = args.model or str(models.default_model_path())
    loaded = await asyncio.to_thread(loading.load_model, path, dtype=args.dtype, device="auto")
    print(
        f"model {loaded.name} ({loaded.dtype} on {loaded.device}), loaded in "
        f"{loaded.load_seconds:.1f}s; torch threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    limits = engine_mod.EngineLimits(max_batch_size=max(args.concurrency))
    engine = engine_mod.BatchingEngine(loaded, limits)
    srv, client, mode = None, None, "in-process engine"
    if args.mode in {"auto", "grpc"}:
        try:
            srv, client = await start_grpc(engine, loaded.load_seconds, http=args.http_streams > 0)
            mode = "gRPC server (in-process, loopback, GenerateStream)"
        except Exception as exc:
            if args.mode == "grpc":
                raise
            print(f"gRPC server unavailable ({exc!r}); driving the engine in-process")
    if srv is None:
        await engine.start()
    print(f"engine driven through: {mode}; new tokens {args.new_tokens}, greedy\n")

    def engine_runner(i: int, t: Timing) -> Any:
        if client is not None:
            return run_engine_grpc(client, i, t, args.new_tokens)
        return run_engine_inprocess(engine, i, t, args.new_tokens)

    if not args.skip_static:  # warm-up: the first generate() call pays one-time set-up
        await static_burst(loaded, 1, 2)
    results = await run_levels(args, loaded, engine, engine_runner)
    if srv is not None and args.http_streams > 0:
        results += await http_vs_grpc(srv, engine_runner, args.http_streams, args.new_tokens)
        print_table(results[-2:])
    print()
    print_table(results)
    lines = verdicts.verdict(results) + http_lines(results)
    print("\n".join([*lines, *memory_report(loaded, engine, results)]))
    print(f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        report = {"mode": mode, "results": [dataclasses.asdict(r) for r in results]}
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(report, indent=1))
    if client is not None:
        await client.close()
    if srv is not None:
        await srv.drain()
    else:
        await engine.stop()
    return 1 if any("FAIL" in line for line in lines) else 0


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="", help="model path (default: packaged SmolLM2)")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float32 ...")
    parser.add_argument(
        "--concurrency",
        type=int_list,
        default=[1, 8, 32, 64],
        help="comma-separated request counts arriving together (default 1,8,32,64)",
    )
    parser.add_argument("--new-tokens", type=int, default=128, help="max new tokens per request")
    parser.add_argument(
        "--mode",
        choices=("auto", "grpc", "inprocess"),
        default="auto",
        help="how to drive the engine",
    )
    parser.add_argument("--skip-naive", action="store_true", help="no naive baseline")
    parser.add_argument(
        "--naive-max",
        type=int,
        default=8,
        help="run the naive baseline only up to this N (default 8; 32 checks the 15x target)",
    )
    parser.add_argument("--skip-static", action="store_true", help="no static generate() baseline")
    parser.add_argument(
        "--http-streams",
        type=int,
        default=32,
        help="streams of the HTTP-vs-gRPC comparison on the same server (0: skip it)",
    )
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main_async(parse_args(sys.argv[1:]))))
