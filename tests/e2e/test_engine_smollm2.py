"""The batching engine on the real default model (SmolLM2-135M-Instruct), no server in between."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from llm_runtime import models, types
from llm_runtime.engine import BatchingEngine, EngineLimits, core
from llm_runtime.models import loading

pytestmark = pytest.mark.e2e

FRANCE = [("user", "What is the capital of France?")]
OTHERS = [
    [("user", "Write a poem about the sea.")],
    [("user", "List three prime numbers.")],
    [("user", "Explain what a Kubernetes operator does.")],
]


@pytest.fixture(scope="module")
def loaded() -> loading.LoadedModel:
    return loading.load_model(models.default_model_path(), dtype="auto", device="auto")


@pytest.fixture
async def engine(loaded: loading.LoadedModel) -> AsyncIterator[BatchingEngine]:
    eng = BatchingEngine(loaded, EngineLimits(max_batch_size=8))
    await eng.start()
    yield eng
    await eng.stop()


async def _answer(engine: BatchingEngine, chat: list[tuple[str, str]], new: int = 48) -> str:
    request = core.chat_request(
        chat, request_id="e2e", params=types.SamplingParams(max_new_tokens=new)
    )
    events = [event async for event in engine.generate(request)]
    final = events[-1]
    assert isinstance(final, types.FinalEvent)
    return final.text


async def test_smollm2_answers_paris(engine: BatchingEngine) -> None:
    assert "Paris" in await _answer(engine, FRANCE)


async def test_paris_survives_a_busy_batch(engine: BatchingEngine) -> None:
    chats = [FRANCE, *OTHERS, FRANCE, *OTHERS, FRANCE]
    answers = await asyncio.gather(*(_answer(engine, chat) for chat in chats))
    france = [a for a, chat in zip(answers, chats, strict=True) if chat is FRANCE]
    assert all("Paris" in a for a in france), france
    assert all(a.strip() for a in answers)


async def test_info_reports_the_serving_dtype(engine: BatchingEngine) -> None:
    assert engine.info.dtype in {"bfloat16", "float32", "float16"}
    assert engine.info.context_length >= 2048


async def test_greedy_outputs_stay_the_recorded_ones(loaded: loading.LoadedModel) -> None:
    """Issue 14's speed work keeps SmolLM2's greedy tokens (tests/unit/runtime/engine/
    greedy_golden.py). Alone they must match exactly; run together, bf16 kernels see other row
    counts when prompts are packed, so each must match its recording alone or together."""
    from tests.unit.runtime.engine import greedy_golden

    golden = greedy_golden.read("smollm2")
    got = await greedy_golden.run(loaded, greedy_golden.SMOLLM2_LIMITS)
    assert got["alone"] == golden["alone"]
    for index, ids in enumerate(got["together"]):
        assert ids in (golden["alone"][index], golden["together"][index]), index
