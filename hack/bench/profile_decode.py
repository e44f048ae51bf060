"""Profile the engine's decode step (torch.profiler, record_shapes off) at a few batch sizes.

    PYTHONPATH=hack .venv/bin/python hack/bench/profile_decode.py                 # N = 1, 32
    PYTHONPATH=hack .venv/bin/python hack/bench/profile_decode.py --batch 1,32,64 --steps 20
    PYTHONPATH=hack .venv/bin/python hack/bench/profile_decode.py --hf   # + HF forward, same N

For each N: N chat prompts (the runtime benchmark's) are prefilled into a `LlamaRunner` with 64
slots, a few warm-up decode steps run, then `--steps` decode steps under the profiler. Printed:
the wall time per step, the top ops by self CPU time, and the step split into matmuls (the
projections and the LM head), attention (scores, softmax, weighted values), KV writes, other ops
(norms, RoPE, activations, casts, copies, views), and the time outside any op: Python and
dispatch (wall minus the ops' self time, on the calling thread). `--hf` does the same for the HF
model's own forward with a DynamicCache over the left-padded batch (what static `generate()` runs
each step), for comparison.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("matmul (projections, LM head)", ("mkldnn::_linear_pointwise", "aten::mm", "aten::addmm")),
    (
        "attention (scores, softmax, values)",
        ("aten::bmm", "aten::_softmax", "aten::_scaled_dot_product_flash_attention_for_cpu"),
    ),
    ("KV cache writes", ("aten::_index_put_impl_", "aten::index_copy_")),
)


def split(events: list[tuple[str, float]], wall_us: float) -> list[tuple[str, float]]:
    """(group, microseconds) from (op name, self CPU us), plus 'outside any op' (wall - ops)."""
    totals = {name: 0.0 for name, _ in GROUPS}
    other = 0.0
    for op, us in events:
        group = next((name for name, ops in GROUPS if op in ops), None)
        if group is None:
            other += us
        else:
            totals[group] += us
    ops = sum(totals.values()) + other
    return [
        *totals.items(),
        ("other ops (norms, RoPE, casts, copies, views)", other),
        ("outside any op (Python, dispatch)", max(0.0, wall_us - ops)),
    ]


def profile(step: Callable[[int], Any], *, steps: int, top: int) -> list[str]:
    """Run `step(k)` `steps` times under the profiler; lines to print."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        started = time.perf_counter()
        for k in range(steps):
            step(k)
        wall_us = (time.perf_counter() - started) * 1e6
    averages = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    averages.sort(key=lambda e: -e[1])
    lines = [f"  wall per step {wall_us / steps / 1000:.1f} ms (under the profiler)"]
    lines.append(f"  {'share':>6} {'ms/step':>8}  group")
    for name, us in split(averages, wall_us):
        lines.append(f"  {us / wall_us:>6.1%} {us / steps / 1000:>8.2f}  {name}")
    lines.append(f"  {'share':>6} {'ms/step':>8}  top ops by self CPU")
    for name, us in averages[:top]:
        lines.append(f"  {us / wall_us:>6.1%} {us / steps / 1000:>8.2f}  {name}")
    return lines


def prompt_ids(tokenizer: Any, n: int) -> list[list[int]]:
    from bench import baselines

    topics = ("a lighthouse keeper", "volcanoes", "a talking cat", "the moon landing")
    texts = [
        baselines.render(tokenizer, [("user", f"Write a long story about {topics[i % 4]} {i}.")])
        for i in range(n)
    ]
    return [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]


def engine_steps(loaded: Any, n: int, *, warm: int) -> Callable[[int], Any]:
    import torch
    from llm_runtime.engine import llama

    runner = llama.LlamaRunner(loaded.model, slots=64, max_len=2048)
    prompts = prompt_ids(loaded.tokenizer, n)
    with torch.inference_mode():
        runner.prefill([llama.Chunk(slot=i, start=0, ids=p) for i, p in enumerate(prompts)])
    lengths = [len(p) for p in prompts]

    @torch.inference_mode()
    def step(k: int) -> Any:
        return runner.decode([100 + k % 7] * n, [length + warm + k for length in lengths])

    for k in range(-warm, 0):
        step(k)
    return lambda k: step(k)


def hf_steps(loaded: Any, n: int, *, warm: int) -> Callable[[int], Any]:
    import torch
    from transformers import DynamicCache

    model, tokenizer = loaded.model, loaded.tokenizer
    texts = [tokenizer.decode(p) for p in prompt_ids(tokenizer, n)]
    batch = tokenizer(texts, padding=True, padding_side="left", return_tensors="pt")
    cache = DynamicCache(config=model.config)
    mask = batch["attention_mask"]
    with torch.inference_mode():
        model(**batch, past_key_values=cache, use_cache=True)
    state = {"mask": mask}

    @torch.inference_mode()
    def step(k: int) -> Any:
        state["mask"] = torch.cat([state["mask"], torch.ones(n, 1, dtype=mask.dtype)], dim=1)
        ids = torch.full((n, 1), 100 + k % 7)
        return model(input_ids=ids, attention_mask=state["mask"], past_key_values=cache).logits

    for k in range(-warm, 0):
        step(k)
    return step


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", default="1,32", help="comma-separated N (default 1,32)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--hf", action="store_true", help="also profile the HF forward")
    args = parser.parse_args(argv)

    import torch
    from llm_runtime import models
    from llm_runtime.models import loading

    loaded = loading.load_model(str(models.default_model_path()), dtype="auto", device="auto")
    print(
        f"{loaded.name} {loaded.dtype}, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    for n in [int(x) for x in args.batch.split(",") if x]:
        kinds = [("engine LlamaRunner.decode", engine_steps)]
        if args.hf:
            kinds.append(("HF forward, DynamicCache (static generate's step)", hf_steps))
        for label, build in kinds:
            print(f"\nN={n}: {label}")
            step = build(loaded, n, warm=args.warm)
            print("\n".join(profile(step, steps=args.steps, top=args.top)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
