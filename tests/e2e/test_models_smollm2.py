"""The packaged default model through the whole model path: fetch builtin:// (GGUF -> converted),
verify, load, and ask it the question the acceptance criteria ask. Also measures why the
converted format exists: it must load much faster than the GGUF."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from llm_runtime import models
from llm_runtime.models import fetch, loading

pytestmark = pytest.mark.e2e
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> fetch.FetchResult:
    dst = tmp_path_factory.mktemp("smollm2") / "model"
    return fetch.fetch(models.DEFAULT_MODEL_URI, dst, dtype="bf16")


def _chat_ids(loaded: loading.LoadedModel) -> Any:
    return loaded.tokenizer.apply_chat_template(
        QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )


def _greedy_answer(loaded: loading.LoadedModel) -> str:
    ids = _chat_ids(loaded)
    with torch.no_grad():
        out = loaded.model.generate(**ids, max_new_tokens=24, do_sample=False)
    answer: str = loaded.tokenizer.decode(
        out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True
    )
    return answer


def test_fetch_of_the_builtin_model_writes_a_converted_bf16_model(
    converted: fetch.FetchResult,
) -> None:
    assert converted.outcome is fetch.Outcome.CONVERTED
    assert converted.manifest.name == "SmolLM2-135M-Instruct"
    assert converted.manifest.source.uri == "builtin://smollm2-135m-instruct"
    assert converted.manifest.source.format == "gguf"
    assert converted.manifest.dtype == "bfloat16"
    again = fetch.fetch(models.DEFAULT_MODEL_URI, converted.dst, dtype="bf16")
    assert again.outcome is fetch.Outcome.UP_TO_DATE


def test_converted_smollm2_answers_paris(converted: fetch.FetchResult) -> None:
    loaded = loading.load_model(converted.dst, dtype="bf16", device="cpu")
    assert loaded.context_length == 8192
    assert loaded.revision == converted.manifest.digest
    answer = _greedy_answer(loaded)
    print(f"SmolLM2 (converted, bf16) answered: {answer!r}")
    assert "Paris" in answer


def test_converted_loads_much_faster_than_gguf_with_identical_logits(
    converted: fetch.FetchResult,
) -> None:
    fast = loading.load_model(converted.dst, dtype="bf16", device="cpu")
    slow = loading.load_model(models.default_model_path(), dtype="bf16", device="cpu")
    print(f"load seconds: converted {fast.load_seconds:.2f}, gguf {slow.load_seconds:.2f}")
    assert fast.load_seconds * 5 < slow.load_seconds
    assert slow.format == "gguf"
    assert slow.name == "SmolLM2-135M-Instruct.Q4_1"
    with torch.no_grad():
        a = fast.model(**_chat_ids(fast)).logits
        b = slow.model(**_chat_ids(slow)).logits
    assert torch.equal(a, b)
