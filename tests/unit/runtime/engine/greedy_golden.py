"""Greedy outputs of the engine on fixed prompts, recorded once, so that speed work cannot change them.

The golden files hold the token ids the engine produced (commit 0c6f99d, before issue 14's
optimisations) for each prompt, run one request at a time, and run all together (more requests
than slots, so requests join mid-flight, a prompt longer than the prefill budget is chunked, and
slots are compacted as requests leave). `test_engine_greedy_golden.py` (tiny model, float32,
unit) compares against them token for token. SmolLM2 in bf16 has no recording: bf16 kernels
differ between CPUs (a recording made on an AMX Xeon failed on an AMD EPYC at the same commit),
so `tests/e2e/test_engine_smollm2.py` runs the same prompts and checks every pick against the
float32 model's logits over the same prefix instead.

Re-record only when a change is meant to alter outputs, and say why in the commit:

    .venv/bin/python -m tests.unit.runtime.engine.greedy_golden tiny
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from llm_runtime import types
from llm_runtime.engine import BatchingEngine, EngineLimits

HERE = Path(__file__).resolve().parent
TINY_SEED = 11
TINY_STD = 0.25
TINY_LIMITS = EngineLimits(
    max_batch_size=3, max_waiting=16, max_input_tokens=256, max_new_tokens=64,
    prefill_token_budget=24,
)  # fmt: skip
SMOLLM2_LIMITS = EngineLimits(max_batch_size=4, prefill_token_budget=64)
_WORDS = "the quick brown fox jumps over the lazy dog while the cat sleeps"

# (prompt or None, chat messages, max_new_tokens): plain prompts, chat (the shared-prefix path),
# short and long, a prompt longer than the prefill budget, different output lengths.
PROMPTS: tuple[tuple[str | None, tuple[tuple[str, str], ...], int], ...] = (
    ("What is the capital of France?", (), 24),
    (None, (("user", "Write a poem about the sea."),), 40),
    (None, (("user", "List three prime numbers."),), 16),
    ("Kubernetes operators deploy language models", (), 32),
    (None, (("system", "Answer briefly."), ("user", " ".join([_WORDS] * 6))), 20),
    ("Numbers 0 1 2 3 4 5 6 7 8 9", (), 48),
    (None, (("user", "Explain what a Kubernetes operator does."),), 36),
)


def request(index: int) -> types.GenerationRequest:
    prompt, messages, new = PROMPTS[index]
    return types.GenerationRequest(
        request_id=f"golden-{index}",
        prompt=prompt,
        messages=tuple(types.ChatMessage(role=r, content=c) for r, c in messages),
        sampling=types.SamplingParams(max_new_tokens=new),
    )


async def _tokens(engine: BatchingEngine, index: int) -> list[int]:
    ids: list[int] = []
    async for event in engine.generate(request(index)):
        if isinstance(event, types.TokenEvent):
            ids.extend(event.token_ids)
    return ids


async def run(loaded: Any, limits: EngineLimits) -> dict[str, list[list[int]]]:
    """{"alone": ids per prompt run one at a time, "together": all submitted at once}."""
    engine = BatchingEngine(loaded, limits)
    await engine.start()
    try:
        alone = [await _tokens(engine, i) for i in range(len(PROMPTS))]
        together = await asyncio.gather(*(_tokens(engine, i) for i in range(len(PROMPTS))))
    finally:
        await engine.stop()
    return {"alone": alone, "together": list(together)}


def load_tiny(folder: Path) -> Any:
    """The tiny random Llama with its matrices redrawn at std `TINY_STD`: at the default 0.02
    init its greedy output is one token repeated, whatever the context, which would hide an
    attention bug; sharper weights make every token depend on the whole sequence."""
    import torch
    from llm_runtime.models import loading, tiny

    loaded = loading.load_model(
        tiny.make_tiny_model(folder, seed=TINY_SEED), dtype="float32", device="cpu"
    )
    generator = torch.Generator().manual_seed(TINY_SEED)
    with torch.no_grad():
        for param in loaded.model.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=generator) * TINY_STD)
    return loaded


def golden_path(name: str) -> Path:
    return HERE / f"golden_{name}.json"


def read(name: str) -> dict[str, list[list[int]]]:
    data: dict[str, list[list[int]]] = json.loads(golden_path(name).read_text())
    return data


def main(argv: list[str]) -> int:
    (name,) = argv
    if name != "tiny":
        print("only the tiny model has a recording (see the module's docstring)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        outputs = asyncio.run(run(load_tiny(Path(tmp)), TINY_LIMITS))
    golden_path(name).write_text(json.dumps(outputs) + "\n")
    same = outputs["alone"] == outputs["together"]
    print(f"wrote {golden_path(name)}; alone == together: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
