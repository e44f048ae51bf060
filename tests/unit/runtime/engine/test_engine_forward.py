"""The direct Llama forward agrees with the HF model it borrows weights from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from llm_runtime.engine import llama
from llm_runtime.models import loading, tiny

pytestmark = pytest.mark.unit

PROMPTS = [[1, 5, 7, 9, 11, 13], [3, 4, 5], [8] * 11]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.make_tiny_model(tmp_path_factory.mktemp("tiny"), seed=3)


def _whole(prompts: list[list[int]]) -> list[llama.Chunk]:
    return [llama.Chunk(slot=i, start=0, ids=p) for i, p in enumerate(prompts)]


def _model(tiny_dir: Path) -> Any:
    return loading.load_model(tiny_dir, dtype="float32", device="cpu").model


def _reference(model: Any, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0, -1].float()  # type: ignore[no-any-return]


def test_prefill_and_decode_match_the_hf_forward(tiny_dir: Path) -> None:
    model = _model(tiny_dir)
    runner = llama.LlamaRunner(model, slots=4, max_len=128)
    with torch.inference_mode():
        logits = runner.prefill(_whole(PROMPTS))
        nxt = logits.argmax(-1).tolist()
        step = runner.decode(nxt, [len(p) for p in PROMPTS])
    for i, prompt in enumerate(PROMPTS):
        torch.testing.assert_close(logits[i], _reference(model, prompt), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(
            step[i], _reference(model, [*prompt, nxt[i]]), atol=1e-4, rtol=1e-4
        )


def test_moved_slot_keeps_its_sequence(tiny_dir: Path) -> None:
    model = _model(tiny_dir)
    runner = llama.LlamaRunner(model, slots=3, max_len=64)
    with torch.inference_mode():
        runner.prefill(_whole(PROMPTS))
        runner.cache.move(src=2, dst=0, length=len(PROMPTS[2]))
        step = runner.decode([42], [len(PROMPTS[2])])
    torch.testing.assert_close(step[0], _reference(model, [*PROMPTS[2], 42]), atol=1e-4, rtol=1e-4)


def test_cache_growth_keeps_contents(tiny_dir: Path) -> None:
    model = _model(tiny_dir)
    runner = llama.LlamaRunner(model, slots=1, max_len=256)
    ids = list(range(3, 70))  # longer than the first 64-token cache
    with torch.inference_mode():
        runner.prefill([llama.Chunk(slot=0, start=0, ids=ids[:10])])
        for pos in range(10, len(ids)):
            step = runner.decode([ids[pos]], [pos])
    assert runner.cache.capacity == 128
    torch.testing.assert_close(step[0], _reference(model, ids), atol=1e-4, rtol=1e-4)


def test_unsupported_architecture_is_refused_by_name() -> None:
    class Config:
        model_type = "gpt2"

    class Model:
        config = Config()

    with pytest.raises(llama.UnsupportedModelError, match="gpt2"):
        llama.check_supported(Model(), max_len=10)


def test_prompts_after_a_cached_prefix_match_the_hf_forward(tiny_dir: Path) -> None:
    model = _model(tiny_dir)
    runner = llama.LlamaRunner(model, slots=3, max_len=128)
    prefix = [7, 8, 9, 10]
    prompts = [[*prefix, 20, 21, 22], [5, 6, 7], [*prefix, 30]]
    with torch.inference_mode():
        runner.set_prefix(prefix)
        assert runner.cached_prefix(prefix) == 0  # the last prompt token is always computed
        skips = [runner.copy_prefix(slot, p) for slot, p in enumerate(prompts)]
        assert skips == [4, 0, 4]
        logits = runner.prefill(
            [
                llama.Chunk(slot=i, start=k, ids=p[k:])
                for i, (p, k) in enumerate(zip(prompts, skips, strict=True))
            ]
        )
        step = runner.decode([1, 2, 3], [len(p) for p in prompts])
    for i, prompt in enumerate(prompts):
        torch.testing.assert_close(logits[i], _reference(model, prompt), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(
            step[i], _reference(model, [*prompt, i + 1]), atol=1e-4, rtol=1e-4
        )


def test_a_prompt_prefilled_in_chunks_matches_the_hf_forward(tiny_dir: Path) -> None:
    model = _model(tiny_dir)
    runner = llama.LlamaRunner(model, slots=2, max_len=128)
    ids = list(range(5, 45))
    with torch.inference_mode():
        for start in range(0, 40, 15):  # 15 + 15 + 10, alongside an unrelated whole prompt
            chunk = llama.Chunk(slot=1, start=start, ids=ids[start : start + 15])
            logits = runner.prefill([chunk, llama.Chunk(slot=0, start=0, ids=[3, 4, 5])])
        step = runner.decode([0, 7], [3, 40])
    torch.testing.assert_close(logits[0], _reference(model, ids), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(step[1], _reference(model, [*ids, 7]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_rms_norm_is_llamas_bit_for_bit(dtype: torch.dtype) -> None:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    generator = torch.Generator().manual_seed(0)
    norm = LlamaRMSNorm(576, eps=1e-5).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(576, generator=generator) + 0.5)
    for scale in (1e-3, 0.1, 1.0, 30.0, 1e3):
        for rows in (1, 7, 64):
            x = (torch.randn(rows, 576, generator=generator) * scale).to(dtype)
            with torch.inference_mode():
                assert torch.equal(llama._rms_norm(x, norm.weight, 1e-5), norm(x)), (scale, rows)
