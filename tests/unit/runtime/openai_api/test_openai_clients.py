"""The OpenAI-compatible API as its users meet it: the official `openai` package (sync, async,
streaming) and `curl -N`, against a real runtime on loopback with a tiny random model."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import httpx
import openai
import pytest

from tests.unit.runtime.openai_api.harness import Running, until

pytestmark = pytest.mark.unit

GREEDY: dict[str, Any] = {"temperature": 0}


def _sync(running: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.base_url, api_key="unused", max_retries=0)


def _async(running: Running) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=running.base_url, api_key="unused", max_retries=0)


async def test_sync_client_gets_a_chat_completion_with_usage(api: Running) -> None:
    def ask() -> Any:
        with _sync(api) as c:
            return c.chat.completions.create(
                model=api.model,
                messages=[{"role": "user", "content": "The capital of France?"}],
                max_tokens=6,
                **GREEDY,
            )

    done = await asyncio.to_thread(ask)  # the sync client blocks: keep the server's loop free
    assert done.object == "chat.completion"
    assert done.id.startswith("chatcmpl-")
    assert done.model == api.model
    (choice,) = done.choices
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "length"
    assert done.usage is not None
    assert done.usage.completion_tokens == 6
    assert done.usage.prompt_tokens > 0
    assert done.usage.total_tokens == done.usage.prompt_tokens + 6
    assert api.requests("ChatCompletions", "OK") == 1


async def test_async_client_gets_a_text_completion_and_the_model_list(api: Running) -> None:
    async with _async(api) as c:
        models = await c.models.list()
        done = await c.completions.create(model=api.model, prompt="Hello", max_tokens=5, **GREEDY)
    assert [m.id for m in models.data] == [api.model]
    assert done.object == "text_completion"
    (choice,) = done.choices
    assert choice.finish_reason == "length"
    assert done.usage is not None
    assert done.usage.completion_tokens == 5
    assert api.requests("Completions", "OK") == 1


async def test_a_stream_carries_the_same_text_as_the_whole_answer_and_usage_at_the_end(
    api: Running,
) -> None:
    messages: Any = [{"role": "user", "content": "Hello there"}]
    async with _async(api) as c:
        stream = await c.chat.completions.create(
            model=api.model,
            messages=messages,
            max_completion_tokens=10,
            stream=True,
            stream_options={"include_usage": True},
            **GREEDY,
        )
        chunks = [chunk async for chunk in stream]
        whole = await c.chat.completions.create(
            model=api.model, messages=messages, max_completion_tokens=10, **GREEDY
        )
    assert chunks[0].choices[0].delta.role == "assistant"
    *body, finish, last = chunks
    assert last.choices == []  # OpenAI's usage chunk
    assert last.usage is not None
    assert last.usage.completion_tokens == 10
    assert all(ch.usage is None for ch in chunks[:-1])
    assert finish.choices[0].finish_reason == "length"
    text = "".join(ch.choices[0].delta.content or "" for ch in body)
    assert text == whole.choices[0].message.content


async def test_a_stream_without_include_usage_has_no_usage_chunk(api: Running) -> None:
    async with _async(api) as c:
        stream = await c.completions.create(
            model=api.model, prompt="Hi", max_tokens=4, stream=True, **GREEDY
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(not hasattr(ch, "usage") or ch.usage is None for ch in chunks)


async def test_stop_sequences_end_the_answer_and_are_excluded(api: Running) -> None:
    async with _async(api) as c:
        free = await c.completions.create(model=api.model, prompt="Hello", max_tokens=20, **GREEDY)
        text = free.choices[0].text
        assert len(text) >= 4, text
        stop = text[2:4]
        for given in (stop, [stop, "never-produced"]):
            stopped = await c.completions.create(
                model=api.model, prompt="Hello", max_tokens=20, stop=given, **GREEDY
            )
            assert stopped.choices[0].finish_reason == "stop"
            assert stopped.choices[0].text == text[: text.index(stop)]


async def test_a_seed_makes_sampling_repeatable(api: Running) -> None:
    async def sample(seed: int) -> str:
        async with _async(api) as c:
            done = await c.completions.create(
                model=api.model, prompt="a", max_tokens=12, temperature=1.5, top_p=0.95, seed=seed
            )
        return done.choices[0].text

    first, again, other = await asyncio.gather(sample(7), sample(7), sample(8))
    assert first == again
    assert first != other


async def test_two_concurrent_streams_are_decoded_together(api: Running) -> None:
    tokens = 60
    seen_running: list[int] = []

    async def stream(prompt: str) -> str:
        async with _async(api) as c:
            s = await c.completions.create(
                model=api.model, prompt=prompt, max_tokens=tokens, stream=True, **GREEDY
            )
            parts = []
            async for chunk in s:
                seen_running.append(api.stats()[0])
                parts.append(chunk.choices[0].text)
            return "".join(parts)

    together = await asyncio.gather(stream("one"), stream("two"))
    assert 2 in seen_running  # both were in the running batch at once
    async with _async(api) as c:
        for prompt, text in zip(("one", "two"), together, strict=True):
            alone = await c.completions.create(
                model=api.model, prompt=prompt, max_tokens=tokens, **GREEDY
            )
            assert alone.choices[0].text == text


async def test_curl_sees_server_sent_events_as_they_come(api: Running) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is part of the dev environment"
    body = {"model": api.model, "prompt": "Hi", "max_tokens": 5, "stream": True, **GREEDY}
    proc = await asyncio.create_subprocess_exec(
        curl, "-sS", "-N", "-H", "content-type: application/json",
        "-d", json.dumps(body), f"{api.base_url}/completions",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    events = out.decode().split("\n\n")
    assert events[-1] == ""  # every event ends with a blank line
    assert events[-2] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert {c["object"] for c in chunks} == {"text_completion"}


async def test_chunks_leave_the_server_before_the_generation_ends(api: Running) -> None:
    body = {"model": api.model, "prompt": "a", "max_tokens": 300, "stream": True, **GREEDY}
    async with (
        httpx.AsyncClient(timeout=30) as c,
        c.stream("POST", f"{api.base_url}/completions", json=body) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        first = await anext(lines)
        assert first.startswith("data: ")
        assert api.stats()[0] == 1  # still generating: nothing was buffered whole
    # Leaving the stream early disconnects: the engine drops the request at once.
    await until(lambda: api.stats() == (0, 0))
    assert api.srv.state.serving is not None
    assert api.srv.state.serving.engine.stats().kv_cache_usage == 0.0
    await until(lambda: api.requests("Completions", "CANCELLED") == 1)
