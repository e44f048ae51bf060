"""The engine end to end on a tiny random Llama: batching, streaming, errors, cancellation, drain."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import torch
from llm_runtime import types
from llm_runtime.engine import BatchingEngine, EngineLimits
from llm_runtime.models import loading, tiny

pytestmark = pytest.mark.unit

LIMITS = EngineLimits(max_batch_size=4, max_waiting=4, max_input_tokens=64, max_new_tokens=400)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.make_tiny_model(tmp_path_factory.mktemp("tiny"), seed=1)


async def _engine(tiny_dir: Path, limits: EngineLimits = LIMITS) -> BatchingEngine:
    loaded = loading.load_model(tiny_dir, dtype="float32", device="cpu")
    engine = BatchingEngine(loaded, limits)
    await engine.start()
    return engine


@pytest.fixture
async def engine(tiny_dir: Path) -> AsyncIterator[BatchingEngine]:
    eng = await _engine(tiny_dir)
    yield eng
    await eng.stop()


def _req(
    prompt: str = "What is the capital of France?", **sampling: Any
) -> types.GenerationRequest:
    params = types.SamplingParams(**{"max_new_tokens": 12, **sampling})
    return types.GenerationRequest(request_id="t", prompt=prompt, messages=(), sampling=params)


async def _run(
    engine: BatchingEngine, request: types.GenerationRequest
) -> list[types.GenerationEvent]:
    return [event async for event in engine.generate(request)]


def _final(events: list[types.GenerationEvent]) -> types.FinalEvent:
    assert isinstance(events[-1], types.FinalEvent)
    return events[-1]


async def _wait_until(predicate: Any) -> None:
    """Poll state the scheduler thread changes (no event to await across threads)."""
    async with asyncio.timeout(30):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def _hf_greedy(tiny_dir: Path, prompt: str, new: int) -> str:
    loaded = loading.load_model(tiny_dir, dtype="float32", device="cpu")
    ids = loaded.tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = loaded.model.generate(**ids, max_new_tokens=new, do_sample=False, min_new_tokens=new)
    return str(
        loaded.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    )


async def test_stream_joins_to_final_text_and_counts_tokens(engine: BatchingEngine) -> None:
    events = await _run(engine, _req(max_new_tokens=10))
    final = _final(events)
    tokens = [e for e in events if isinstance(e, types.TokenEvent)]
    assert "".join(e.text for e in tokens) == final.text
    assert sum(len(e.token_ids) for e in tokens) == final.completion_tokens
    assert final.prompt_tokens == len(engine._tokenizer(_req().prompt)["input_ids"])
    assert final.finish_reason in {types.FinishReason.LENGTH, types.FinishReason.STOP}


async def test_concurrent_greedy_requests_match_hf_generate_alone(
    tiny_dir: Path, engine: BatchingEngine
) -> None:
    prompts = ["The quick brown fox", "Kubernetes operators deploy", "What is", "Numbers 0 1 2"]
    results = await asyncio.gather(*(_run(engine, _req(p, max_new_tokens=8)) for p in prompts))
    compared = 0
    for prompt, events in zip(prompts, results, strict=True):
        final = _final(events)
        if final.finish_reason is types.FinishReason.LENGTH:  # HF stops at EOS differently
            assert final.text == _hf_greedy(tiny_dir, prompt, 8)
            compared += 1
    assert compared >= 3


async def test_prompts_longer_than_the_prefill_budget_are_chunked_correctly(
    tiny_dir: Path,
) -> None:
    engine = await _engine(tiny_dir, dataclasses.replace(LIMITS, prefill_token_budget=5))
    try:
        prompts = ["The quick brown fox jumps over the lazy dog", "What is", "Numbers 0 1 2 3"]
        results = await asyncio.gather(*(_run(engine, _req(p, max_new_tokens=8)) for p in prompts))
        compared = 0
        for prompt, events in zip(prompts, results, strict=True):
            final = _final(events)
            if final.finish_reason is types.FinishReason.LENGTH:  # HF stops at EOS differently
                assert final.text == _hf_greedy(tiny_dir, prompt, 8)
                compared += 1
        assert compared >= 2
        assert engine.stats().running == 0
    finally:
        await engine.stop()


async def test_chat_messages_use_the_chat_template(engine: BatchingEngine) -> None:
    request = types.GenerationRequest(
        request_id="c",
        prompt=None,
        messages=(types.ChatMessage("user", "hi"),),
        sampling=types.SamplingParams(max_new_tokens=3),
    )
    rendered = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    expected = len(engine._tokenizer(rendered, add_special_tokens=False)["input_ids"])
    assert _final(await _run(engine, request)).prompt_tokens == expected


async def test_seeded_sampling_reproduces_under_different_batches(engine: BatchingEngine) -> None:
    seeded = _req(temperature=1.0, seed=1234, max_new_tokens=16)
    alone = _final(await _run(engine, seeded)).text
    noise = _req("The quick brown fox", temperature=1.0, max_new_tokens=30)
    together = await asyncio.gather(_run(engine, noise), _run(engine, seeded), _run(engine, noise))
    assert _final(together[1]).text == alone


async def test_stop_sequence_ends_generation_before_it(engine: BatchingEngine) -> None:
    full = _final(await _run(engine, _req(max_new_tokens=30))).text
    assert len(full) > 6, "the tiny model produced too little text to pick a stop sequence"
    stop = full[4:6]
    events = await _run(engine, _req(max_new_tokens=30, stop=(stop,)))
    final = _final(events)
    assert final.finish_reason is types.FinishReason.STOP
    assert final.text == full[: full.index(stop)]
    assert "".join(e.text for e in events if isinstance(e, types.TokenEvent)) == final.text


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (_req(""), "prompt"),
        (_req("word " * 200), "max_input_tokens"),
        (_req(temperature=-1.0), "temperature"),
        (_req(top_p=0.0), "top_p"),
        (_req(top_k=-2), "top_k"),
        (_req(max_new_tokens=0), "max_new_tokens"),
        (_req(max_new_tokens=401), "max_new_tokens"),
    ],
)
async def test_invalid_requests_raise_before_any_event(
    engine: BatchingEngine, request_: types.GenerationRequest, field: str
) -> None:
    with pytest.raises(types.InvalidRequestError, match=field):  # raised by the call or the
        await anext(engine.generate(request_))  # first __anext__ (after tokenizing), no event
    assert engine.stats().waiting == 0


async def test_the_cheap_checks_raise_from_the_call_before_tokenizing(
    engine: BatchingEngine,
) -> None:
    too_big = _req("x" * (LIMITS.max_prompt_bytes + 1))
    with pytest.raises(types.InvalidRequestError, match="max_prompt_bytes"):
        engine.generate(too_big)
    with pytest.raises(types.InvalidRequestError, match="top_p"):
        engine.generate(_req(top_p=0.0))


async def test_prompt_beyond_context_minus_new_tokens_is_invalid(tiny_dir: Path) -> None:
    limits = dataclasses.replace(LIMITS, max_input_tokens=600, max_new_tokens=500)
    engine = await _engine(tiny_dir, limits)
    try:
        with pytest.raises(types.InvalidRequestError, match="context length"):
            await anext(engine.generate(_req("word " * 100, max_new_tokens=500)))
    finally:
        await engine.stop()


async def test_full_waiting_queue_raises_queue_full(tiny_dir: Path) -> None:
    limits = dataclasses.replace(LIMITS, max_batch_size=1, max_waiting=1)
    engine = await _engine(tiny_dir, limits)
    try:
        first = engine.generate(_req(max_new_tokens=400))
        await _wait_until(lambda: engine.stats().running == 1)
        second = engine.generate(_req())
        await _wait_until(lambda: engine.stats().waiting == 1)  # tokenized and queued
        with pytest.raises(types.QueueFullError):  # before tokenizing: the call itself refuses
            engine.generate(_req())
        assert engine.stats().waiting == 1
        await first.aclose()  # type: ignore[attr-defined]
        assert _final([e async for e in second]).completion_tokens > 0
    finally:
        await engine.stop()


async def test_closing_the_stream_frees_the_slot_at_once(tiny_dir: Path) -> None:
    limits = dataclasses.replace(LIMITS, max_batch_size=1)
    engine = await _engine(tiny_dir, limits)
    try:
        stream = engine.generate(_req(max_new_tokens=400))
        await anext(stream)
        assert engine.stats().kv_cache_usage > 0
        await _wait_until(lambda: engine.stats().batch_size == 1)  # the gauge sees the batch
        await stream.aclose()  # type: ignore[attr-defined]
        await _wait_until(lambda: engine.stats().running == 0)
        assert engine.stats().kv_cache_usage == 0
        # The one slot serves the next request.
        assert _final(await _run(engine, _req(max_new_tokens=4))).completion_tokens > 0
    finally:
        await engine.stop()


async def test_cancelled_consumer_task_frees_the_slot(tiny_dir: Path) -> None:
    limits = dataclasses.replace(LIMITS, max_batch_size=1)
    engine = await _engine(tiny_dir, limits)
    try:

        async def consume() -> None:
            async for _ in engine.generate(_req(max_new_tokens=400)):
                await asyncio.sleep(0.01)

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(consume(), timeout=0.3)  # like an expired gRPC deadline
        await _wait_until(lambda: engine.stats().running == 0 and engine.stats().waiting == 0)
        assert _final(await _run(engine, _req(max_new_tokens=4))).completion_tokens > 0
    finally:
        await engine.stop()


async def test_waiting_request_cancelled_before_admission_never_runs(tiny_dir: Path) -> None:
    limits = dataclasses.replace(LIMITS, max_batch_size=1)
    engine = await _engine(tiny_dir, limits)
    try:
        first = engine.generate(_req(max_new_tokens=400))
        await _wait_until(lambda: engine.stats().running == 1)
        queued = engine.generate(_req())
        await queued.aclose()  # type: ignore[attr-defined]
        await first.aclose()  # type: ignore[attr-defined]
        await _wait_until(lambda: engine.stats().running == 0 and engine.stats().waiting == 0)
    finally:
        await engine.stop()


async def test_stop_ends_in_flight_requests_as_cancelled_and_refuses_new(tiny_dir: Path) -> None:
    engine = await _engine(tiny_dir)
    stream = engine.generate(_req(max_new_tokens=400))
    await anext(stream)
    await engine.stop()
    rest = [e async for e in stream]
    assert _final(rest).finish_reason is types.FinishReason.CANCELLED
    with pytest.raises(types.DrainingError):
        engine.generate(_req())


async def test_begin_drain_refuses_new_requests_but_finishes_running(
    engine: BatchingEngine,
) -> None:
    stream = engine.generate(_req(max_new_tokens=20))
    engine.begin_drain()
    with pytest.raises(types.DrainingError):
        engine.generate(_req())
    assert _final([e async for e in stream]).finish_reason is not types.FinishReason.CANCELLED


async def test_requests_before_start_are_refused(tiny_dir: Path) -> None:
    engine = BatchingEngine(loading.load_model(tiny_dir, dtype="float32", device="cpu"), LIMITS)
    with pytest.raises(types.DrainingError):
        engine.generate(_req())


async def test_info_and_stats_describe_the_engine(engine: BatchingEngine) -> None:
    info = engine.info
    assert (info.dtype, info.device, info.context_length) == ("float32", "cpu", tiny.CONTEXT_LENGTH)
    assert (info.max_batch_size, info.max_waiting, info.max_new_tokens) == (4, 4, 400)
    await _run(engine, _req(max_new_tokens=3))
    await _wait_until(lambda: engine.stats().batch_size == 0)  # idle again
    stats = engine.stats()
    assert (stats.running, stats.waiting, stats.kv_cache_usage) == (0, 0, 0.0)


async def test_requests_beyond_the_slots_queue_and_match_their_solo_runs(tiny_dir: Path) -> None:
    engine = await _engine(tiny_dir, dataclasses.replace(LIMITS, max_waiting=8))
    try:
        requests = [_req(f"n {i}", max_new_tokens=6) for i in range(8)]
        together = await asyncio.gather(*(_run(engine, r) for r in requests))
        alone = [await _run(engine, r) for r in requests]
        assert [_final(r).text for r in together] == [_final(r).text for r in alone]
        assert engine.stats().running == 0
    finally:
        await engine.stop()


async def test_the_event_loop_keeps_running_while_the_model_generates(
    engine: BatchingEngine,
) -> None:
    lags: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - before - 0.005)

    tick = asyncio.create_task(ticker())
    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(_run(engine, _req(f"n {i}", max_new_tokens=150)) for i in range(4)))
    elapsed = asyncio.get_running_loop().time() - started
    tick.cancel()
    assert len(lags) > elapsed / 0.05  # the loop ticked throughout, not once at the end
    assert max(lags) < 0.25


async def test_one_new_token_finishes_at_prefill(engine: BatchingEngine) -> None:
    final = _final(await _run(engine, _req(max_new_tokens=1)))
    assert final.completion_tokens <= 1
    assert engine.stats().running == 0


async def test_cancelling_a_chunk_prefilled_request_frees_its_slot(tiny_dir: Path) -> None:
    limits = dataclasses.replace(LIMITS, max_batch_size=2, prefill_token_budget=2)
    engine = await _engine(tiny_dir, limits)
    try:
        long_prompt = "The quick brown fox jumps over the lazy dog while the cat sleeps."
        stream = engine.generate(_req(long_prompt, max_new_tokens=400))
        await _wait_until(lambda: engine.stats().running == 1)  # chunk slot, then the batch
        await stream.aclose()  # type: ignore[attr-defined]
        await _wait_until(lambda: engine.stats().running == 0)
        assert engine.stats().kv_cache_usage == 0
        both = await asyncio.gather(*(_run(engine, _req(max_new_tokens=4)) for _ in range(2)))
        assert all(_final(r).completion_tokens > 0 for r in both)
    finally:
        await engine.stop()


async def test_a_dropped_stream_frees_its_slot(tiny_dir: Path) -> None:
    engine = await _engine(tiny_dir, dataclasses.replace(LIMITS, max_batch_size=1))
    try:
        stream = engine.generate(_req(max_new_tokens=400))
        await anext(stream)
        del stream  # the consumer vanished without closing it
        gc.collect()
        await _wait_until(lambda: engine.stats().running == 0)
        assert _final(await _run(engine, _req(max_new_tokens=4))).completion_tokens > 0
    finally:
        await engine.stop()


async def test_a_near_zero_temperature_never_harms_a_neighbour_in_its_batch(
    engine: BatchingEngine,
) -> None:
    """Measured on the demo cluster: temperature 1e-40 beside a normal request failed both."""
    normal, tiny = await asyncio.gather(
        _run(engine, _req(max_new_tokens=10)),
        _run(engine, _req("Kubernetes operators deploy", temperature=1e-40, max_new_tokens=10)),
    )
    assert _final(normal).completion_tokens > 0
    assert _final(tiny).completion_tokens > 0
