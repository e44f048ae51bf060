"""The Runtime service over real gRPC on loopback: real server, real engine, tiny random model.

Every status code the API promises is provoked here the way a client would meet it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc import aio
from llm_runtime import config, metrics, server
from llm_runtime.api import client, contract
from llm_runtime.api.v1 import runtime_pb2
from llm_runtime.models import tiny

pytestmark = pytest.mark.unit

# Long enough to still be running while a test acts on it, within the tiny model's context.
LONG = 450


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.make_tiny_model(tmp_path_factory.mktemp("tiny"))


def _settings(model: Path, **overrides: object) -> config.Settings:
    base = config.Settings(
        model=str(model),
        host="127.0.0.1",
        grpc_port=0,
        metrics_port=0,
        health_port=0,
        http_port=0,
        max_batch_size=4,
        max_waiting=4,
        grace_seconds=5,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def runtime(
    tiny_model: Path,
) -> AsyncIterator[tuple[server.RuntimeServer, client.AsyncRuntimeClient]]:
    async with (
        server.serving(_settings(tiny_model)) as srv,
        _connect(srv) as c,
    ):
        yield srv, c


async def _code_of(call: Awaitable[object]) -> grpc.StatusCode:
    with pytest.raises(aio.AioRpcError) as info:
        await call
    return info.value.code()


async def test_generate_answers_text_finish_reason_and_token_counts(
    runtime: tuple[server.RuntimeServer, client.AsyncRuntimeClient],
) -> None:
    _, c = runtime
    done = await c.generate(client.build_request("The capital of France", max_new_tokens=8))
    assert done.finish_reason == "length"
    assert done.completion_tokens == 8
    assert done.prompt_tokens > 0
    assert done.request_id  # made up by the server when the client sends none
    named = await c.generate(client.build_request("Hi", max_new_tokens=2, request_id="abc"))
    assert named.request_id == "abc"


async def test_stream_sends_deltas_then_one_final_message_with_the_same_text(
    runtime: tuple[server.RuntimeServer, client.AsyncRuntimeClient],
) -> None:
    _, c = runtime
    request = client.build_request(messages=[("user", "Hello there")], max_new_tokens=12)
    chunks = [chunk async for chunk in c.generate_stream(request)]
    assert all(ch.finish_reason == runtime_pb2.FINISH_REASON_UNSPECIFIED for ch in chunks[:-1])
    assert sum(len(ch.token_ids) for ch in chunks[:-1]) == 12
    streamed = client.completion_from_stream(chunks)
    assert streamed.completion_tokens == 12
    unary = await c.generate(request)  # greedy: the same text both ways
    assert (streamed.text, streamed.finish_reason) == (unary.text, unary.finish_reason)


async def test_stop_sequence_ends_generation_and_is_excluded(
    runtime: tuple[server.RuntimeServer, client.AsyncRuntimeClient],
) -> None:
    _, c = runtime
    free = await c.generate(client.build_request("Hello", max_new_tokens=20))
    assert len(free.text) >= 4, free.text
    stop = free.text[2:4]
    stopped = await c.generate(client.build_request("Hello", max_new_tokens=20, stop=[stop]))
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.index(stop)]


async def test_model_info_reports_the_operator_name_and_the_limits(tiny_model: Path) -> None:
    settings = _settings(tiny_model, model_name="chat", model_revision="r7", max_new_tokens=64)
    async with (
        server.serving(settings) as srv,
        _connect(srv) as c,
    ):
        info = await c.model_info()
    assert (info.name, info.revision) == ("chat", "r7")
    assert info.context_length == tiny.CONTEXT_LENGTH
    assert info.dtype in {"bfloat16", "float32"}
    assert info.limits.max_new_tokens == 64
    assert info.limits.max_batch_size == 4


@pytest.mark.parametrize(
    "fields",
    [
        {},  # neither prompt nor messages
        {"prompt": "hi", "messages": [("user", "hi")]},
        {"prompt": "hi", "temperature": -1.0},
        {"prompt": "hi", "temperature": float("nan")},
        {"prompt": "hi", "top_p": 0.0},
        {"prompt": "hi", "top_p": 1.5},
        {"prompt": "hi", "top_k": -1},
        {"prompt": "hi", "max_new_tokens": 0},
        {"prompt": "hi", "max_new_tokens": 100_000},
        {"prompt": "hi", "stop": [""]},
        {"prompt": "word " * 600},  # longer than the context
        {"prompt": "hi", "request_id": "r" * 129},
        {"prompt": "hi", "request_id": "forged\nINFO log line"},
    ],
    ids=lambda f: ",".join(f) or "empty",
)
async def test_bad_requests_are_invalid_argument_for_both_methods(
    runtime: tuple[server.RuntimeServer, client.AsyncRuntimeClient], fields: dict[str, object]
) -> None:
    _, c = runtime
    request = client.build_request(**fields)  # type: ignore[arg-type]
    assert await _code_of(c.generate(request)) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(aio.AioRpcError) as info:
        async for _ in c.generate_stream(request):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ok = await c.generate(client.build_request("still fine", max_new_tokens=1))
    assert ok.completion_tokens == 1


async def test_a_full_waiting_queue_is_resource_exhausted(tiny_model: Path) -> None:
    settings = _settings(tiny_model, max_batch_size=1, max_waiting=1)
    async with (
        server.serving(settings) as srv,
        _connect(srv) as c,
    ):
        long = client.build_request("a", max_new_tokens=LONG)
        running = asyncio.create_task(c.generate(long))
        await _until(lambda: _stats(srv) == (1, 0))  # admitted: the queue is empty again
        waiting = asyncio.create_task(c.generate(long))
        await _until(lambda: _stats(srv) == (1, 1))
        assert await _code_of(c.generate(long)) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await running).completion_tokens == LONG
        assert (await waiting).completion_tokens == LONG


async def test_an_expired_deadline_is_deadline_exceeded_and_frees_the_slot(
    runtime: tuple[server.RuntimeServer, client.AsyncRuntimeClient],
) -> None:
    srv, c = runtime
    call = c.generate(client.build_request("a", max_new_tokens=LONG), deadline=0.05)
    assert await _code_of(call) == grpc.StatusCode.DEADLINE_EXCEEDED
    await _until(lambda: _stats(srv) == (0, 0))
    await _until(lambda: _requests(srv, "Generate", "DEADLINE_EXCEEDED") == 1)


async def test_a_cancelled_stream_leaves_the_batch_at_once(
    runtime: tuple[server.RuntimeServer, client.AsyncRuntimeClient],
) -> None:
    srv, c = runtime
    stream = c.generate_stream(client.build_request("a", max_new_tokens=LONG))
    first = await anext(stream)
    assert first.token_ids
    assert _stats(srv)[0] == 1
    await stream.aclose()  # cancels the call
    await _until(lambda: _stats(srv) == (0, 0))
    assert srv.state.serving is not None
    info = srv.state.serving.engine.stats()
    assert info.kv_cache_usage == 0.0
    await _until(lambda: _requests(srv, "GenerateStream", "CANCELLED") == 1)


async def test_closing_a_blocking_clients_stream_early_cancels_the_call(
    runtime: tuple[server.RuntimeServer, client.AsyncRuntimeClient],
) -> None:
    srv, _ = runtime

    def read_one_then_stop() -> runtime_pb2.GenerateStreamResponse:
        with client.RuntimeClient(client.Connection(f"127.0.0.1:{srv.grpc_port}")) as c:
            stream = c.generate_stream(client.build_request("a", max_new_tokens=LONG))
            first = next(stream)
            stream.close()
            return first

    first = await asyncio.to_thread(read_one_then_stop)
    assert first.token_ids
    await _until(lambda: _requests(srv, "GenerateStream", "CANCELLED") == 1)
    await _until(lambda: _stats(srv) == (0, 0))


def _requests(srv: server.RuntimeServer, method: str, code: str) -> float | None:
    """llm_runtime_requests_total for one method and code, as /metrics would show it."""
    assert srv.state.serving is not None
    info = srv.state.serving.info
    labels = {"method": method, "code": code, "model": info.name, "revision": info.revision}
    labels[contract.LABEL_PROTOCOL] = metrics.PROTOCOL_OF[method]
    return srv.metrics.registry.get_sample_value("llm_runtime_requests_total", labels)


def _stats(srv: server.RuntimeServer) -> tuple[int, int]:
    assert srv.state.serving is not None
    stats = srv.state.serving.engine.stats()
    return stats.running, stats.waiting


def _connect(srv: server.RuntimeServer) -> client.AsyncRuntimeClient:
    return client.AsyncRuntimeClient(client.Connection(f"127.0.0.1:{srv.grpc_port}"))


async def _until(condition: Callable[[], bool], *, within: float = 30.0) -> None:
    """Poll `condition` until true; fail the test after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition still false after {within}s")
        await asyncio.sleep(0.01)


HOSTILE = [
    {"prompt": "\x00\x01\x7f\ufffd\U0001f600 ünïcödé"},
    {"prompt": "\n" * 50},
    {"messages": [("", "no role")]},
    {"messages": [("bogus-role", "x"), ("user", "")]},
    {"messages": [("user", "hi")] * 40},
    {"prompt": "hi", "stop": ["x" * 10_000]},
    {"prompt": "hi", "seed": -1, "temperature": 1e30, "top_p": 1e-30, "top_k": 2**31 - 1},
    {"prompt": "hi", "request_id": "r" * 10_000},
]


@pytest.mark.parametrize("fields", HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_input_gets_an_answer_or_a_client_error_never_a_crash(
    runtime: tuple[server.RuntimeServer, client.AsyncRuntimeClient], fields: dict[str, object]
) -> None:
    srv, c = runtime
    request = client.build_request(max_new_tokens=4, **fields)  # type: ignore[arg-type]
    try:
        done = await c.generate(request)
        assert done.completion_tokens <= 4
    except aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
    assert await c.health() == "SERVING"
    await _until(lambda: _stats(srv) == (0, 0))


async def test_many_streams_cancelled_together_free_every_slot(tiny_model: Path) -> None:
    settings = _settings(tiny_model, max_batch_size=8, max_waiting=8)
    async with server.serving(settings) as srv, _connect(srv) as c:
        request = client.build_request("a", max_new_tokens=LONG)
        streams = [c.generate_stream(request) for _ in range(8)]
        firsts = await asyncio.gather(*(anext(s) for s in streams))
        assert all(f.token_ids for f in firsts)
        await asyncio.gather(*(s.aclose() for s in streams))
        await _until(lambda: _stats(srv) == (0, 0))
        assert srv.state.in_flight == 0
        assert srv.state.serving is not None
        assert srv.state.serving.engine.stats().kv_cache_usage == 0.0
        done = await c.generate(client.build_request("after", max_new_tokens=3))
        assert done.completion_tokens == 3
