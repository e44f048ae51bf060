"""Arrival-trace benchmark: goodput of the engine against a static-batching server, same run.

    PYTHONPATH=hack .venv/bin/python hack/bench/traffic_bench.py
    PYTHONPATH=hack .venv/bin/python hack/bench/traffic_bench.py --rates 0.5,1 --requests 12

Traffic that looks like real use (`traffic.py`): Poisson arrivals at each `--rates` value,
prompts of mixed lengths (50 to 1,500 tokens, log-uniform, built from `--seed`), mixed
`max_new_tokens` (16/32/64/128), greedy. Each rate replays the same requests twice in one
process on one model object: at the engine (`BatchingEngine`, driven in-process) and at
`baselines.WindowServer`, a static-batching server (a batch closes `--window` seconds after its
first request or at `--max-batch` requests; one left-padded `generate()` serves it; it streams).

Per design and rate: goodput (requests/s that met TTFT <= 1 s and TPOT <= 100 ms on their own),
how many met it, TTFT and TPOT p50/p95, tok/s, whether the rate meets the SLO at p95; then the
engine/static goodput ratio per rate and issue 14's target (>= 3x at the highest rate where
either design meets the SLO). Requests still running `--drain` seconds after the last arrival are
aborted and count as missing the SLO. A tool, not a test; exit code 1 when the target fails.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp: see runtime_bench


def build_prompts(tokenizer: Any, trace: list[Any], *, seed: int) -> list[Any]:
    """Each trace request as a chat prompt whose rendered length is about its `prompt_tokens`."""
    from bench import baselines, traffic

    overhead = len(
        tokenizer(baselines.render(tokenizer, [("user", "Notes: . Write a story.")]))["input_ids"]
    )
    prompts = []
    for r in trace:
        words = traffic.prompt_words(r.index, seed=seed, count=r.prompt_tokens)
        ids = tokenizer(words, add_special_tokens=False)["input_ids"]
        notes = tokenizer.decode(ids[: max(1, r.prompt_tokens - overhead)])
        content = f"Notes: {notes.strip()}. Write a story."
        prompts.append(
            baselines.Prompt(messages=(("user", content),), max_new_tokens=r.max_new_tokens)
        )
    return prompts


def prompt_lengths(tokenizer: Any, prompts: list[Any]) -> list[int]:
    from bench import baselines

    return [
        len(
            tokenizer(baselines.render(tokenizer, p.messages), add_special_tokens=False)[
                "input_ids"
            ]
        )
        for p in prompts
    ]


async def _engine_one(engine: Any, index: int, prompt: Any, timing: Any) -> None:
    from llm_runtime import types
    from llm_runtime.engine import core

    await asyncio.sleep(max(0.0, timing.arrival - time.perf_counter()))
    request = core.chat_request(
        prompt.messages,
        request_id=f"trace-{index}",
        params=types.SamplingParams(max_new_tokens=prompt.max_new_tokens),
    )
    async for event in engine.generate(request):
        if isinstance(event, types.TokenEvent) and event.token_ids:
            timing.token(len(event.token_ids))


async def run_engine(engine: Any, prompts: list[Any], timings: list[Any], *, limit: float) -> None:
    tasks = [
        asyncio.ensure_future(_engine_one(engine, i, p, t))
        for i, (p, t) in enumerate(zip(prompts, timings, strict=True))
    ]
    _done, pending = await asyncio.wait(tasks, timeout=limit)
    for task, timing in zip(tasks, timings, strict=True):
        if task in pending:
            task.cancel()
            timing.ok = False
        elif task.exception() is not None:
            timing.ok = False
    await asyncio.gather(*pending, return_exceptions=True)


async def run_static(server: Any, prompts: list[Any], timings: list[Any], *, limit: float) -> None:
    futures = []
    for p, t in zip(prompts, timings, strict=True):
        await asyncio.sleep(max(0.0, t.arrival - time.perf_counter()))
        futures.append(asyncio.wrap_future(server.submit(p, t)))
    left = limit - (time.perf_counter() - timings[0].arrival)
    _done, pending = await asyncio.wait(futures, timeout=max(0.0, left))
    server.abort.set()  # ends the batch in flight at once; queued ones are cancelled by stop()
    await asyncio.to_thread(server.stop)
    for future, timing in zip(futures, timings, strict=True):
        if future in pending or future.cancelled() or future.exception() is not None:
            timing.ok = False
    await asyncio.gather(*futures, return_exceptions=True)


async def one_rate(
    args: argparse.Namespace, loaded: Any, engine: Any, trace: Any, prompts: Any, rate: float
) -> list[Any]:
    from bench import baselines, traffic

    slo = traffic.SLO(ttft=args.ttft, tpot=args.tpot)
    last_offset = trace[-1].offset / rate
    limit = last_offset + args.drain
    results = []
    for design in args.designs:
        start = time.perf_counter() + 0.05
        timings = [traffic.RequestTiming(arrival=start + r.offset / rate) for r in trace]
        if design == "engine":
            await run_engine(engine, prompts, timings, limit=limit + 0.05)
        else:
            server = baselines.WindowServer(loaded, window=args.window, max_batch=args.max_batch)
            await run_static(server, prompts, timings, limit=limit)
            print(f"  static batch sizes at {rate:g}/s: {server.batch_sizes}")
        results.append(traffic.summarize(design, rate, timings, slo=slo))
        print("\n".join(traffic.table(results[-1:])), flush=True)
    return results


async def main_async(args: argparse.Namespace) -> int:
    import torch
    from bench import baselines, traffic
    from llm_runtime import engine as engine_mod
    from llm_runtime import models
    from llm_runtime.models import loading

    path = args.model or str(models.default_model_path())
    loaded = await asyncio.to_thread(loading.load_model, path, dtype=args.dtype, device="auto")
    trace = traffic.make_trace(requests=args.requests, seed=args.seed, new_tokens=args.new_tokens)
    prompts = build_prompts(loaded.tokenizer, trace, seed=args.seed)
    lengths = prompt_lengths(loaded.tokenizer, prompts)
    print(
        f"model {loaded.name} ({loaded.dtype}), torch threads {torch.get_num_threads()}; "
        f"{len(trace)} requests per rate, seed {args.seed}; prompt tokens min {min(lengths)} "
        f"median {sorted(lengths)[len(lengths) // 2]} max {max(lengths)}; max_new_tokens "
        f"{sorted({p.max_new_tokens for p in prompts})}; SLO TTFT <= {args.ttft} s, TPOT <= "
        f"{args.tpot * 1000:.0f} ms; static window {args.window} s, max batch {args.max_batch}; "
        f"engine max batch {args.engine_batch}; load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}\n",
        flush=True,
    )
    limits = engine_mod.EngineLimits(max_batch_size=args.engine_batch, max_prompt_bytes=65536)
    engine = engine_mod.BatchingEngine(loaded, limits)
    await engine.start()
    await asyncio.to_thread(
        baselines.generate_batch, loaded, prompts[:1], [traffic.RequestTiming(0)]
    )
    results = []
    for rate in args.rates:
        results += await one_rate(args, loaded, engine, trace, prompts, rate)
    await engine.stop()
    print()
    print("\n".join(traffic.table(results)))
    lines = traffic.verdict(results)
    print("\n".join(lines))
    print(f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        report = {"lengths": lengths, "results": [dataclasses.asdict(r) for r in results]}
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(report, indent=1))
    return 1 if any("FAIL" in line for line in lines) else 0


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="", help="model path (default: packaged SmolLM2)")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--rates", type=_floats, default=[0.25, 0.5, 1.0, 2.0], help="requests/s")
    p.add_argument("--requests", type=int, default=24, help="requests per rate (same trace)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--new-tokens", type=_ints, default=[16, 32, 64, 128], help="max_new_tokens mix")
    p.add_argument("--window", type=float, default=0.5, help="static server: batch window, s")
    p.add_argument("--max-batch", type=int, default=16, help="static server: batch size cap")
    p.add_argument("--engine-batch", type=int, default=32, help="engine: max_batch_size")
    p.add_argument("--drain", type=float, default=60.0, help="s after the last arrival, then abort")
    p.add_argument("--ttft", type=float, default=1.0, help="SLO: TTFT, s")
    p.add_argument("--tpot", type=float, default=0.1, help="SLO: TPOT, s")
    p.add_argument(
        "--designs",
        type=lambda s: [d for d in s.split(",") if d],
        default=["engine", "static"],
        help="which designs to run, comma-separated (engine, static)",
    )
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main_async(parse_args(sys.argv[1:]))))
