"""Hardening over real gRPC on loopback: size bounds before work, a loop that keeps answering
while prompts are tokenized, and the plaintext health-only port beside a TLS main port.

Real server, real engine, tiny random model; the clients are the ones users get.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llm_runtime import config, server
from llm_runtime.api import client
from llm_runtime.engine import limits
from llm_runtime.models import tiny
from loopback import free_port

from tests.unit.runtime import loopback

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.make_tiny_model(tmp_path_factory.mktemp("tiny"))


def _settings(model: Path, **overrides: object) -> config.Settings:
    small = {"max_batch_size": 4, "max_waiting": 8, "grace_seconds": 5}
    return loopback.settings(model, **{**small, **overrides})


def _connect(srv: server.RuntimeServer, **conn: object) -> client.AsyncRuntimeClient:
    return client.AsyncRuntimeClient(
        client.Connection(f"127.0.0.1:{srv.grpc_port}", **conn)  # type: ignore[arg-type]
    )


@pytest.fixture
async def runtime(
    tiny_model: Path,
) -> AsyncIterator[tuple[server.RuntimeServer, client.AsyncRuntimeClient]]:
    async with server.serving(_settings(tiny_model)) as srv, _connect(srv) as c:
        yield srv, c


async def _error_of(call: Awaitable[object]) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as info:
        await call
    return info.value


async def test_a_prompt_over_max_prompt_bytes_is_refused_naming_the_limit(
    runtime: tuple[server.RuntimeServer, client.AsyncRuntimeClient],
) -> None:
    srv, c = runtime
    limit = config.prompt_bytes_limit(srv.settings)
    assert limit == config.PROMPT_BYTES_PER_TOKEN * srv.settings.max_input_tokens
    huge = client.build_request("é" * 2_000_000, max_new_tokens=1)  # 4 MB of UTF-8
    started = time.monotonic()
    error = await _error_of(c.generate(huge))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"max_prompt_bytes ({limit})" in (error.details() or "")
    assert time.monotonic() - started < 5  # refused before tokenizing (which takes ~7 s)
    chat = client.build_request(messages=[("user", "x" * (limit // 2 + 1))] * 2)
    error = await _error_of(c.generate(chat))  # messages count together
    assert "max_prompt_bytes" in (error.details() or "")


async def test_a_message_over_max_message_bytes_is_resource_exhausted_from_grpc(
    runtime: tuple[server.RuntimeServer, client.AsyncRuntimeClient],
) -> None:
    srv, c = runtime
    over = client.build_request("x" * (srv.settings.max_message_bytes + 1))
    assert (await _error_of(c.generate(over))).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await c.generate(client.build_request("ok", max_new_tokens=1))).completion_tokens == 1


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"messages": [("user", "hi")] * (limits.MAX_CHAT_MESSAGES + 1)}, "messages"),
        ({"prompt": "hi", "stop": ["a"] * (limits.MAX_STOP_SEQUENCES + 1)}, "stop"),
        ({"prompt": "hi", "stop": ["a", ""]}, "stop"),
    ],
    ids=["messages", "stop-count", "stop-empty"],
)
async def test_too_many_messages_or_stop_sequences_are_invalid_argument(
    runtime: tuple[server.RuntimeServer, client.AsyncRuntimeClient],
    fields: dict[str, object],
    names: str,
) -> None:
    _, c = runtime
    error = await _error_of(c.generate(client.build_request(**fields)))  # type: ignore[arg-type]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert names in (error.details() or "")


async def test_health_answers_promptly_while_big_prompts_are_being_tokenized(
    tiny_model: Path,
) -> None:
    """With the byte bound raised, three ~1 MB prompts are tokenized (about 2 s each, one after
    another on the tokenizer thread) and then refused for their token count; meanwhile Health
    keeps answering within a fraction of a second, because the event loop never tokenizes."""
    settings = _settings(tiny_model, max_prompt_bytes=8 * 1024 * 1024)
    async with server.serving(settings) as srv, _connect(srv) as c:
        big = client.build_request("The quick brown fox jumps. " * 40_000, max_new_tokens=1)
        rejections = [asyncio.ensure_future(c.generate(big)) for _ in range(3)]
        latencies = []
        while not all(r.done() for r in rejections):
            started = time.monotonic()
            assert await c.health(deadline=5) == "SERVING"
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.05)
        codes = [(await _error_of(r)).code() for r in rejections]
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 3  # max_input_tokens, after tokenizing
    assert len(latencies) >= 5, latencies  # the checks ran while the prompts were tokenized
    assert max(latencies) < 1.0, latencies


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=runtime"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def _plain_health(port: int, service: str = "") -> str:
    """What the kubelet's gRPC probe does: plaintext, no metadata, one Check."""
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return client.health_status_name(reply)


async def test_the_health_port_answers_plaintext_probes_when_the_main_port_has_tls(
    tiny_model: Path, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    loaded = asyncio.Event()

    async def slow_load(settings: config.Settings) -> server.BuiltEngine:
        await loaded.wait()
        return await server.load_engine(settings)

    settings = _settings(tiny_model, tls_cert=cert, tls_key=key, health_port=free_port())
    srv = server.RuntimeServer(settings, engine_factory=slow_load)
    await srv.start()
    try:
        assert srv.health_port == settings.health_port
        assert await _plain_health(srv.health_port) == "NOT_SERVING"  # still loading
        loaded.set()
        await srv.wait_ready()
        assert await _plain_health(srv.health_port) == "SERVING"
        assert await _plain_health(srv.health_port, server.RUNTIME_SERVICE) == "SERVING"
        async with _connect(srv) as plain_main:  # the main port still refuses plaintext
            error = await _error_of(plain_main.health(deadline=2))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
        async with client.AsyncRuntimeClient(
            client.Connection(f"127.0.0.1:{srv.health_port}")
        ) as on_health_port:  # it serves Health only: no prompt reaches the model through it
            error = await _error_of(on_health_port.generate(client.build_request("hi")))
            assert error.code() == grpc.StatusCode.UNIMPLEMENTED
        async with _connect(srv, ca_file=cert) as tls_main:
            stream = tls_main.generate_stream(client.build_request("a", max_new_tokens=450))
            assert (await anext(stream)).token_ids  # in flight: the drain waits for it
            draining = asyncio.ensure_future(srv.drain())
            await _until_health(srv.health_port, "NOT_SERVING")  # the same status as the main
            await stream.aclose()
            await draining
    finally:
        if not srv.state.draining:
            await srv.drain()


async def _until_health(port: int, wanted: str, *, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while (status := await _plain_health(port)) != wanted:
        assert time.monotonic() < deadline, f"health still {status}, not {wanted}"
        await asyncio.sleep(0.02)


async def test_a_health_port_of_zero_opens_no_port(
    runtime: tuple[server.RuntimeServer, client.AsyncRuntimeClient],
) -> None:
    srv, _ = runtime
    assert srv.settings.health_port == 0
    assert srv.health_port == 0
    assert (srv.settings.http_port, srv.http_port) == (0, 0)  # likewise the HTTP API
