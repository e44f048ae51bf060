"""The runner registry: a new entry is picked by the engine, unknown architectures get the default."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from llm_runtime import types
from llm_runtime.engine import BatchingEngine, EngineLimits, architectures, generic, llama, runners
from llm_runtime.models import loading, tiny

pytestmark = pytest.mark.unit

LIMITS = EngineLimits(max_batch_size=2, max_waiting=4, max_input_tokens=64, max_new_tokens=64)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.make_tiny_model(tmp_path_factory.mktemp("tiny"), seed=5)


def _model(tiny_dir: Path) -> Any:
    return loading.load_model(tiny_dir, dtype="float32", device="cpu")


class CountingRunner(llama.LlamaRunner):
    """A new registry entry: the Llama forward, counting the steps the scheduler asks for."""

    def __init__(self, model: Any, *, slots: int, max_len: int) -> None:
        super().__init__(model, slots=slots, max_len=max_len)
        self.prefills = 0
        self.decodes = 0

    def prefill(self, chunks: list[runners.Chunk]) -> torch.Tensor:
        self.prefills += 1
        return super().prefill(chunks)

    def decode(self, tokens: list[int], positions: list[int]) -> torch.Tensor:
        self.decodes += 1
        return super().decode(tokens, positions)


def _declines(model: Any, *, slots: int, max_len: int) -> runners.Runner:
    raise runners.UnsupportedModelError("this runner declines every model")


async def _greedy(engine: BatchingEngine, prompt: str) -> str:
    params = types.SamplingParams(max_new_tokens=10)
    request = types.GenerationRequest(request_id="r", prompt=prompt, messages=(), sampling=params)
    events = [event async for event in engine.generate(request)]
    final = events[-1]
    assert isinstance(final, types.FinalEvent)
    return final.text


def test_the_shipped_registry_maps_llama_shapes_to_the_llama_runner() -> None:
    for name in ("llama", "mistral", "qwen2"):
        assert architectures.REGISTRY.factory_for(name) is llama.LlamaRunner
    assert architectures.REGISTRY.factory_for("gpt2") is generic.GenericRunner
    assert architectures.REGISTRY.default is generic.GenericRunner


def test_a_copy_takes_new_entries_without_changing_the_original() -> None:
    extended = architectures.REGISTRY.copy()
    extended.register(["made-up"], CountingRunner)
    assert extended.factory_for("made-up") is CountingRunner
    assert extended.factory_for("llama") is llama.LlamaRunner
    assert "made-up" not in architectures.REGISTRY.model_types
    with pytest.raises(ValueError, match="llama"):
        extended.register(["llama"], CountingRunner)


async def test_a_registered_runner_is_picked_and_keeps_greedy_outputs(tiny_dir: Path) -> None:
    registry = runners.RunnerRegistry(default=generic.GenericRunner)
    registry.register(["llama"], CountingRunner)
    prompts = ["What is the capital of France?", "The quick brown fox"]
    shipped = BatchingEngine(_model(tiny_dir), LIMITS)
    custom = BatchingEngine(_model(tiny_dir), LIMITS, registry=registry)
    await shipped.start()
    await custom.start()
    try:
        runner = custom._scheduler._runner  # type: ignore[union-attr]
        assert isinstance(runner, CountingRunner)
        assert type(shipped._scheduler._runner) is llama.LlamaRunner  # type: ignore[union-attr]
        for prompt in prompts:
            assert await _greedy(custom, prompt) == await _greedy(shipped, prompt)
        assert runner.prefills > 0
        assert runner.decodes > 0
    finally:
        await custom.stop()
        await shipped.stop()


def test_an_unknown_architecture_gets_the_default_entry(
    tiny_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = runners.RunnerRegistry(default=generic.GenericRunner)
    registry.register(["made-up"], CountingRunner)
    caplog.set_level(logging.WARNING)
    runner = registry.runner_for(_model(tiny_dir).model, slots=2, max_len=64)
    assert isinstance(runner, generic.GenericRunner)
    assert "'llama' has no registered runner" in caplog.text


def test_a_factory_that_declines_falls_back_to_the_default(
    tiny_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = runners.RunnerRegistry(default=generic.GenericRunner)
    registry.register(["llama"], _declines)
    caplog.set_level(logging.WARNING)
    runner = architectures.runner_for(
        _model(tiny_dir).model, slots=2, max_len=64, registry=registry
    )
    assert isinstance(runner, generic.GenericRunner)
    assert "declines every model" in caplog.text
