"""Every refusal of the OpenAI API has OpenAI's error JSON and its HTTP status, and the official
client raises the matching exception: 400 (naming the parameter), 404, 413, 429, 503, and the
generation slot of a request refused or abandoned is free again at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from llm_runtime import config, server

from tests.unit.runtime.openai_api import harness
from tests.unit.runtime.openai_api.harness import Running, Start, until

pytestmark = pytest.mark.unit

LONG = 400
CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
TEXT: dict[str, Any] = {"prompt": "hi", "max_tokens": 2}


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


async def _post(running: Running, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as c:
        return await c.post(f"{running.base_url}{path}", json=body, **kw)


@pytest.mark.parametrize(
    ("path", "fields", "param"),
    [
        ("/chat/completions", {"n": 2}, "n"),
        ("/chat/completions", {"temperature": "hot"}, "temperature"),
        ("/chat/completions", {"temperature": -1}, "temperature"),
        ("/chat/completions", {"top_p": 1.5}, "top_p"),
        ("/chat/completions", {"max_tokens": 0}, "max_tokens"),
        ("/chat/completions", {"max_completion_tokens": 100_000}, "max_completion_tokens"),
        ("/chat/completions", {"stop": [""]}, "stop"),
        ("/chat/completions", {"stop": 3}, "stop"),
        ("/chat/completions", {"messages": []}, "messages"),
        ("/chat/completions", {"messages": [{"role": "user"}]}, "messages[0].content"),
        ("/chat/completions", {"tools": [{"type": "function"}]}, "tools"),
        ("/chat/completions", {"logprobs": True}, "logprobs"),
        ("/chat/completions", {"stream": "yes"}, "stream"),
        ("/completions", {"prompt": ["a", "b"]}, "prompt"),
        ("/completions", {"prompt": "word " * 600}, "prompt"),  # longer than the context
        ("/completions", {"model": None}, "model"),
    ],
)
async def test_a_bad_parameter_is_a_400_that_names_it(
    api: Running, path: str, fields: dict[str, Any], param: str
) -> None:
    body = {"model": api.model, **(CHAT if path.startswith("/chat") else TEXT), **fields}
    for stream in (False, True):
        error = _error(await _post(api, path, body | {"stream": stream} | fields), 400)
        assert (error["type"], error["param"]) == ("invalid_request_error", param), error
    assert api.stats() == (0, 0)
    ok = await _post(api, path, {"model": api.model, **(CHAT if "chat" in path else TEXT)})
    assert ok.status_code == 200


async def test_a_body_that_is_not_json_is_a_400(api: Running) -> None:
    async with httpx.AsyncClient() as c:
        response = await c.post(f"{api.base_url}/completions", content=b"{not json")
    assert _error(response, 400)["param"] is None


async def test_the_official_client_raises_bad_request_with_the_param(api: Running) -> None:
    async with openai.AsyncOpenAI(base_url=api.base_url, api_key="x", max_retries=0) as c:
        with pytest.raises(openai.BadRequestError) as info:
            await c.completions.create(model=api.model, prompt="hi", max_tokens=1, n=3)
    assert info.value.param == "n"


async def test_an_unknown_model_is_a_404_naming_the_served_one(api: Running) -> None:
    async with openai.AsyncOpenAI(base_url=api.base_url, api_key="x", max_retries=0) as c:
        with pytest.raises(openai.NotFoundError) as info:
            await c.chat.completions.create(model="gpt-4o", **CHAT)
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"
    assert api.model in info.value.message
    async with httpx.AsyncClient() as c:
        route = await c.get(f"{api.base_url}/engines")
    assert _error(route, 404)["type"] == "invalid_request_error"


async def test_a_body_over_the_limit_is_a_413_before_it_is_parsed(api: Running) -> None:
    body = {"model": api.model, "prompt": "x" * (5 * 1024 * 1024), "max_tokens": 1}
    assert _error(await _post(api, "/completions", body), 413)["type"] == "invalid_request_error"


async def test_a_full_queue_is_a_429_and_abandoned_requests_free_their_slots(
    start: Start,
) -> None:
    async with start(max_batch_size=1, max_waiting=1) as api:
        long = {"model": api.model, "prompt": "a", "max_tokens": LONG, "temperature": 0}
        running = asyncio.create_task(_post(api, "/completions", long))
        await until(lambda: api.stats() == (1, 0))
        waiting = asyncio.create_task(_post(api, "/completions", long))
        await until(lambda: api.stats() == (1, 1))
        async with openai.AsyncOpenAI(base_url=api.base_url, api_key="x", max_retries=0) as c:
            with pytest.raises(openai.RateLimitError) as info:
                await c.completions.create(model=api.model, prompt="a", max_tokens=LONG)
        assert info.value.code == "queue_full"
        assert api.requests("Completions", "RESOURCE_EXHAUSTED") == 1
        # Clients that give up (non-streaming calls) disconnect: their slots come back at once.
        for task in (waiting, running):
            task.cancel()
        await until(lambda: api.stats() == (0, 0))
        await until(lambda: api.requests("Completions", "CANCELLED") == 2)
        assert api.srv.state.in_flight == 0


async def test_while_loading_and_while_draining_calls_are_503(
    tiny_model: Path, start: Start
) -> None:
    release = asyncio.Event()

    async def slow_load(settings: config.Settings) -> server.BuiltEngine:
        await release.wait()
        return await server.load_engine(settings)

    async with start(engine_factory=slow_load, wait_ready=False) as api:
        body = {"model": harness.MODEL, **TEXT}
        error = _error(await _post(api, "/completions", body), 503)
        assert error["code"] == "not_ready"
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"{api.base_url}/models")).status_code == 503
        release.set()
        await api.srv.wait_ready()
        assert (await _post(api, "/completions", body)).status_code == 200


async def test_drain_refuses_new_http_calls_and_lets_a_running_stream_finish(
    tiny_model: Path,
) -> None:
    settings = harness.settings_for(tiny_model, grace_seconds=120)
    srv = server.RuntimeServer(settings)
    await srv.start()
    await srv.wait_ready()
    api = Running(srv)
    body = {"model": api.model, "prompt": "a", "max_tokens": 40, "temperature": 0, "stream": True}
    async with (
        httpx.AsyncClient(timeout=60) as c,
        c.stream("POST", f"{api.base_url}/completions", json=body) as stream,
    ):
        lines = stream.aiter_lines()
        assert (await anext(lines)).startswith("data: ")
        drain = asyncio.create_task(srv.drain())
        await until(lambda: srv.state.draining)
        refused = await c.post(f"{api.base_url}/completions", json={**body, "stream": False})
        assert _error(refused, 503)["code"] == "draining"
        rest = [line async for line in lines if line]
    assert rest[-1] == "data: [DONE]"  # the drain waited for the stream in flight
    await drain
    async with httpx.AsyncClient() as c:  # the drain closed the HTTP port with gRPC's
        with pytest.raises(httpx.ConnectError):
            await c.get(f"{api.base_url}/models")
