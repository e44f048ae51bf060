"""The operator's KV-cache table (llm_operator.preflight.MODEL_SHAPES) matches the real models:
the operator may not import the runtime's model code, so its numbers are checked here."""

from __future__ import annotations

import gguf
import pytest
from llm_operator import preflight
from llm_runtime.models import builtin

pytestmark = pytest.mark.unit


def _field(reader: gguf.GGUFReader, key: str) -> int:
    f = reader.fields[key]
    return int(f.parts[f.data[0]][0])


def test_smollm2_shape_matches_its_gguf_metadata() -> None:
    reader = gguf.GGUFReader(builtin.builtin_path("smollm2-135m-instruct"))
    arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
    heads = _field(reader, f"{arch}.attention.head_count")
    shape = preflight.MODEL_SHAPES["builtin://smollm2-135m-instruct"]
    assert shape.layers == _field(reader, f"{arch}.block_count")
    assert shape.kv_heads == _field(reader, f"{arch}.attention.head_count_kv")
    assert shape.head_dim == _field(reader, f"{arch}.embedding_length") // heads
