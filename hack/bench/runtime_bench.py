"""Runtime benchmark: the continuous-batching engine against the naive design, same run.

    .venv/bin/python hack/bench/runtime_bench.py            # or: make bench

For each concurrency level (default 1, 8, 32) N chat requests (varied prompts, greedy, 128 new
tokens) arrive together, first at the engine, then at the naive design: one `model.generate()` per
request under a lock, same model object and dtype. The engine is driven through the real gRPC
server (in-process, loopback, streaming) unless `--mode inprocess` or the server cannot start.
It prints aggregate generated tokens/s, TTFT p50/p99, TPOT p50, the ratios, and the targets:
at N=32 >= 15x naive tok/s with p50 TTFT <= 1.5 s; at N=1 no slower than naive. Then, on the
same server, 32 streams over gRPC and 32 over the OpenAI-compatible HTTP API back to back
(`--http-streams`, httpbench.py): what HTTP adds to TTFT p50 and its tok/s ratio to gRPC.

The CPU is shared, so absolute numbers move with other load; the ratios are measured back to
back and are what the targets are about. This is a tool, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import json
import os
import sys
import threading
import time
from collections.abc import Callable
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


class _FirstTokenStreamer:
    """A transformers streamer that only timestamps tokens (the first put() is the prompt)."""

    def __init__(self, timing: Timing) -> None:
        self._timing = timing
        self._seen_prompt = False

    def put(self, value: Any) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        self._timing.token(int(value.numel()))

    def end(self) -> None:
        pass


class NaiveServer:
    """The baseline: every request runs `model.generate()` alone, one at a time under a lock."""

    def __init__(self, loaded: Any, *, new_tokens: int) -> None:
        self._model = loaded.model
        self._tokenizer = loaded.tokenizer
        self._new_tokens = new_tokens
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=64)

    def _generate(self, index: int, timing: Timing) -> None:
        import torch

        chat = [{"role": r, "content": c} for r, c in messages_for(index)]
        text = self._tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = self._tokenizer(text, add_special_tokens=False, return_tensors="pt")
        with self._lock, torch.inference_mode():
            self._model.generate(
                **ids.to(self._model.device),
                max_new_tokens=self._new_tokens,
                do_sample=False,
                streamer=_FirstTokenStreamer(timing),
                pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
            )

    async def run(self, index: int, timing: Timing) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._generate, index, timing)


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


async def burst(design: str, runner: Runner, concurrency: int) -> Result:
    """N requests at once; wait for all; summarize."""
    started = time.perf_counter()
    timings = [Timing(submitted=started) for _ in range(concurrency)]
    await asyncio.gather(*(runner(i, t) for i, t in enumerate(timings)))
    return summarize(design, timings, started)


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
    print(f"{'design':<8} {'N':>3} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p99':>9} {'TPOT p50':>9}")
    for r in results:
        print(
            f"{r.design:<8} {r.concurrency:>3} {r.tok_s:>8.1f} {r.ttft_p50:>8.2f}s "
            f"{r.ttft_p99:>8.2f}s {r.tpot_p50 * 1000:>7.0f}ms"
        )


def verdict(results: list[Result]) -> list[str]:
    """Ratios per level and the targets; lines to print."""
    by = {(r.design, r.concurrency): r for r in results}
    lines = []
    for n in sorted({r.concurrency for r in results}):
        eng, naive = by.get(("engine", n)), by.get(("naive", n))
        if eng and naive:
            ratio = eng.tok_s / naive.tok_s
            lines.append(f"N={n:<3} engine/naive tok/s = {ratio:5.2f}x")
            if n == 1:
                lines.append(
                    f"  target N=1 no slower than naive: {'PASS' if ratio >= 1 else 'FAIL'}"
                )
            if n == 32:
                ok = ratio >= 15
                lines.append(f"  target N=32 >= 15x naive: {'PASS' if ok else 'FAIL'}")
        if eng and n == 32:
            ok = eng.ttft_p50 <= 1.5
            lines.append(f"  target N=32 p50 TTFT <= 1.5 s: {'PASS' if ok else 'FAIL'}")
    return lines


async def main_async(args: argparse.Namespace) -> int:
    import torch
    from llm_runtime import engine as engine_mod
    from llm_runtime import models
    from llm_runtime.models import loading

    path = args.model or str(models.default_model_path())
    loaded = await asyncio.to_thread(loading.load_model, path, dtype=args.dtype, device="auto")
    print(
        f"model {loaded.name} ({loaded.dtype} on {loaded.device}), loaded in "
        f"{loaded.load_seconds:.1f}s; torch threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
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

    naive = NaiveServer(loaded, new_tokens=args.new_tokens)
    await naive.run(0, Timing(submitted=time.perf_counter()))  # warm-up, like the engine's
    results: list[Result] = []
    for n in args.concurrency:
        results.append(await burst("engine", engine_runner, n))
        print_table(results[-1:])
        if not args.skip_naive:
            results.append(await burst("naive", naive.run, n))
            print_table(results[-1:])
    if srv is not None and args.http_streams > 0:
        results += await http_vs_grpc(srv, engine_runner, args.http_streams, args.new_tokens)
        print_table(results[-2:])
    print()
    print_table(results)
    lines = verdict(results) + http_lines(results)
    print("\n".join(lines))
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


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="", help="model path (default: packaged SmolLM2)")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float32 ...")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 8, 32],
        help="comma-separated request counts arriving together (default 1,8,32)",
    )
    parser.add_argument("--new-tokens", type=int, default=128, help="max new tokens per request")
    parser.add_argument(
        "--mode",
        choices=("auto", "grpc", "inprocess"),
        default="auto",
        help="how to drive the engine",
    )
    parser.add_argument("--skip-naive", action="store_true", help="engine only (quick checks)")
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
