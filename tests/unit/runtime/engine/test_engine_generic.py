"""A non-Llama model (tiny random GPT-2) is served through the fallback runner, correctly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from llm_runtime import types
from llm_runtime.engine import BatchingEngine, EngineLimits, generic
from llm_runtime.models import loading, tiny

pytestmark = pytest.mark.unit

PROMPTS = ["The quick brown fox jumps over the lazy dog", "What is", "Numbers 0 1 2 3"]


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("gpt2")
    tokenizer = tiny.build_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=tiny.CONTEXT_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _hf_greedy(folder: Path, prompt: str, new: int) -> str:
    loaded = loading.load_model(folder, dtype="float32", device="cpu")
    ids = loaded.tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = loaded.model.generate(**ids, max_new_tokens=new, do_sample=False, min_new_tokens=new)
    text = loaded.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    # A character cut off by the token limit decodes to U+FFFD here; the engine never emits it.
    return str(text).rstrip("\ufffd")


async def _final(engine: BatchingEngine, prompt: str, new: int) -> types.FinalEvent:
    request = types.GenerationRequest(
        request_id="g",
        prompt=prompt,
        messages=(),
        sampling=types.SamplingParams(max_new_tokens=new),
    )
    events = [e async for e in engine.generate(request)]
    assert isinstance(events[-1], types.FinalEvent)
    return events[-1]


async def test_gpt2_runs_on_the_fallback_and_matches_hf_generate(gpt2_dir: Path) -> None:
    loaded = loading.load_model(gpt2_dir, dtype="float32", device="cpu")
    limits = EngineLimits(
        max_batch_size=2, max_input_tokens=64, max_new_tokens=64, prefill_token_budget=4
    )
    engine = BatchingEngine(loaded, limits)
    await engine.start()
    try:
        assert isinstance(engine._scheduler._runner, generic.GenericRunner)  # type: ignore[union-attr]
        finals = await asyncio.gather(*(_final(engine, p, 8) for p in PROMPTS))
        compared = 0
        for prompt, final in zip(PROMPTS, finals, strict=True):
            if final.finish_reason is types.FinishReason.LENGTH:  # HF stops at EOS differently
                assert final.text == _hf_greedy(gpt2_dir, prompt, 8)
                compared += 1
        assert compared >= 2
        assert engine.stats().running == 0
    finally:
        await engine.stop()
