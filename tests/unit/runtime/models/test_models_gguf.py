"""The GGUF path on a tiny GGUF written by the test itself: it loads as the same model as its HF
twin, converts (recording the file's sha256), and fetches idempotently from a file or a folder."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch
from llm_runtime.models import convert, fetch, loading, tiny

pytestmark = pytest.mark.unit
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.make_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-q.gguf", seed=3)


def _logits(loaded: loading.LoadedModel) -> torch.Tensor:
    ids = loaded.tokenizer.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out: Any = loaded.model(**ids)
    logits: torch.Tensor = out.logits
    return logits


def test_gguf_loads_as_the_same_model_as_its_hf_twin(gguf_file: Path, tmp_path: Path) -> None:
    twin = tiny.make_tiny_model(tmp_path / "twin", seed=3)
    from_gguf = loading.load_model(gguf_file, dtype="fp32", device="cpu")
    from_hf = loading.load_model(twin, dtype="fp32", device="cpu")
    assert from_gguf.format == "gguf"
    assert from_gguf.name == "tiny-q"
    assert from_gguf.context_length == tiny.CONTEXT_LENGTH
    assert from_gguf.tokenizer.chat_template == tiny.CHAT_TEMPLATE
    assert torch.equal(_logits(from_gguf), _logits(from_hf))


def test_gguf_loaded_model_is_plain_and_savable(gguf_file: Path, tmp_path: Path) -> None:
    loaded = loading.load_model(gguf_file, dtype="bf16", device="cpu")
    assert getattr(loaded.model.config, "quantization_config", None) is None
    loaded.model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").is_file()


def test_converted_gguf_keeps_its_logits_and_records_the_file_digest(
    gguf_file: Path, tmp_path: Path
) -> None:
    made = convert.convert(gguf_file, tmp_path / "conv", dtype="bf16")
    assert made.source.format == "gguf"
    assert made.source.sha256 == "sha256:" + hashlib.sha256(gguf_file.read_bytes()).hexdigest()
    assert made.name == "tiny-q"
    direct = loading.load_model(gguf_file, dtype="bf16", device="cpu")
    converted = loading.load_model(tmp_path / "conv", dtype="bf16", device="cpu")
    assert torch.equal(_logits(direct), _logits(converted))


def test_fetch_from_the_file_or_its_folder_is_the_same_source(
    gguf_file: Path, tmp_path: Path
) -> None:
    first = fetch.fetch(f"file://{gguf_file}", tmp_path / "dst")
    second = fetch.fetch(f"file://{gguf_file.parent}", tmp_path / "dst")
    assert first.outcome is fetch.Outcome.CONVERTED
    assert second.outcome is fetch.Outcome.UP_TO_DATE
