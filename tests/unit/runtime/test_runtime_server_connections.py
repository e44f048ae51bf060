"""Connections that move: the runtime closes each client connection after its max age (a GOAWAY),
the client's channel reconnects without a failed call, a call longer than the age finishes within
the grace, and a draining pod's UNAVAILABLE is retried on another pod.

Real servers, real engine, tiny random model, on loopback. A test-only server interceptor records
each call's method and `context.peer()` (the client's ip:port as the server's socket sees it), so a
new port is a new TCP connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc import aio
from llm_runtime import config, server
from llm_runtime.api import client
from llm_runtime.api.v1 import runtime_pb2
from llm_runtime.models import tiny

pytestmark = pytest.mark.unit

# As long a generation as the tiny model's context allows: about 1 s on the shared 2-core machine,
# so it outlives a 0.3 s connection age by far.
LONG = 500

if TYPE_CHECKING:  # generic in grpc-stubs only
    _Interceptor = aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = aio.ServerInterceptor


class PeerLog(_Interceptor):
    """Records (method, client port) for every Runtime call that reaches the servicer."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def ports(self, method: str | None = None) -> list[int]:
        return [port for m, port in self.calls if method is None or m == method]

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        path: str = handler_call_details.method
        if handler is None or not path.startswith(f"/{server.RUNTIME_SERVICE}/"):
            return handler
        method = path.rsplit("/", 1)[-1]

        def noting(behavior: Any) -> Any:
            async def wrapped(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
                # "ipv4:127.0.0.1:PORT"
                self.calls.append((method, int(context.peer().rsplit(":", 1)[1])))
                return await behavior(request, context)  # the servicer's methods are coroutines

            return wrapped

        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(noting(handler.unary_unary), **codec)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(noting(handler.unary_stream), **codec)
        return handler


class RecordingServer(server.RuntimeServer):
    """The runtime with a `PeerLog` after its own interceptors."""

    def __init__(self, settings: config.Settings) -> None:
        super().__init__(settings)
        self.peers = PeerLog()

    def _interceptors(self) -> list[aio.ServerInterceptor[object, object]]:
        return [*super()._interceptors(), self.peers]


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
        grace_seconds=30,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _serving(settings: config.Settings) -> AsyncIterator[RecordingServer]:
    srv = RecordingServer(settings)
    await srv.start()
    try:
        await srv.wait_ready()
        yield srv
    finally:
        await srv.drain()


def _connect(*servers: server.RuntimeServer) -> client.AsyncRuntimeClient:
    # One address: the default resolver. Several: the ipv4 resolver's list, like a headless DNS
    # name resolving to every ready pod.
    if len(servers) == 1:
        return client.AsyncRuntimeClient(client.Connection(f"127.0.0.1:{servers[0].grpc_port}"))
    addresses = ",".join(f"127.0.0.1:{s.grpc_port}" for s in servers)
    return client.AsyncRuntimeClient(client.Connection(f"ipv4:{addresses}"))


def _runs(ports: list[int]) -> int:
    """How many times the port changes from one call to the next, plus one."""
    return sum(1 for i, port in enumerate(ports) if i == 0 or port != ports[i - 1])


def test_the_server_options_carry_the_age_in_milliseconds_and_0_turns_it_off() -> None:
    options = dict(server.grpc_options(config.Settings()))
    assert options["grpc.max_connection_age_ms"] == 30_000
    assert options["grpc.max_connection_age_grace_ms"] == 300_000
    assert options["grpc.so_reuseport"] == 0
    off = dict(server.grpc_options(config.Settings(max_connection_age_seconds=0)))
    assert not {"grpc.max_connection_age_ms", "grpc.max_connection_age_grace_ms"} & set(off)
    huge = config.Settings(max_connection_age_seconds=1e9, max_connection_age_grace_seconds=1e9)
    assert set(dict(server.grpc_options(huge)).values()) >= {2**31 - 1}  # a C int, not overflowed


def test_the_clients_keepalive_pings_are_ones_the_server_accepts() -> None:
    ours, theirs = dict(server.KEEPALIVE_OPTIONS), dict(client.KEEPALIVE_OPTIONS)
    # A client pinging more often than the server allows gets GOAWAY too_many_pings; idle pings
    # are refused outright unless the server permits pings without calls.
    assert (
        theirs["grpc.keepalive_time_ms"] >= 2 * ours["grpc.http2.min_ping_interval_without_data_ms"]
    )
    assert theirs["grpc.keepalive_permit_without_calls"] == 1
    assert ours["grpc.keepalive_permit_without_calls"] == 1
    assert set(client.KEEPALIVE_OPTIONS) <= set(client.CHANNEL_OPTIONS)


async def test_one_channel_follows_its_aged_out_connections_without_a_failed_call(
    tiny_model: Path,
) -> None:
    settings = _settings(
        tiny_model, max_connection_age_seconds=1.0, max_connection_age_grace_seconds=5.0
    )
    errors: list[str] = []
    sent = 0
    async with _serving(settings) as srv, _connect(srv) as c:
        loop = asyncio.get_running_loop()
        end = loop.time() + 4.0
        while loop.time() < end:
            try:
                await c.generate(client.build_request("hi", max_new_tokens=2), deadline=30)
            except grpc.RpcError as exc:
                errors.append(str(exc))
            sent += 1
            await asyncio.sleep(0.2)
    assert errors == []
    ports = srv.peers.ports("Generate")
    # Every call reached the servicer exactly once: no attempt failed and was retried.
    assert len(ports) == sent >= 10
    # 4 s of 1 s (+-10%) connections: each a new client port, and once left never used again.
    assert len(set(ports)) >= 3, ports
    assert _runs(ports) == len(set(ports)), ports


async def test_a_stream_longer_than_the_age_finishes_within_the_grace(tiny_model: Path) -> None:
    settings = _settings(
        tiny_model, max_connection_age_seconds=0.3, max_connection_age_grace_seconds=30.0
    )
    async with _serving(settings) as srv, _connect(srv) as c:
        request = client.build_request("a", max_new_tokens=LONG)
        chunks: list[runtime_pb2.GenerateStreamResponse] = []

        async def read() -> None:
            async for chunk in c.generate_stream(request):
                chunks.append(chunk)

        reading = asyncio.create_task(read())
        await _until(lambda: bool(chunks))
        (stream_port,) = srv.peers.ports("GenerateStream")
        # Probe with short calls until one lands on a new connection while the stream still runs:
        # the stream's connection was aged out (GOAWAY) under it.
        moved_while_streaming = False
        while not reading.done():
            await c.model_info(deadline=30)
            if srv.peers.ports("ModelInfo")[-1] != stream_port and not reading.done():
                moved_while_streaming = True
                break
            await asyncio.sleep(0.02)
        await reading
    assert moved_while_streaming, "the stream ended before its connection was aged out"
    done = client.completion_from_stream(chunks)
    assert (done.finish_reason, done.completion_tokens) == ("length", LONG)


async def test_without_a_grace_an_aged_connection_cuts_its_stream(tiny_model: Path) -> None:
    # The control of the test above: the age does hit a running stream, the grace is what saves it.
    settings = _settings(
        tiny_model, max_connection_age_seconds=0.3, max_connection_age_grace_seconds=0.0
    )
    async with _serving(settings) as srv, _connect(srv) as c:
        received = 0
        with pytest.raises(aio.AioRpcError) as info:
            async for _ in c.generate_stream(client.build_request("a", max_new_tokens=LONG)):
                received += 1
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert 0 < received < LONG + 1  # cut mid-stream, after messages: not retried
        await _until(lambda: srv.state.in_flight == 0)  # the cut freed the batch slot


async def test_a_draining_pods_unavailable_is_retried_on_another_pod(tiny_model: Path) -> None:
    draining = RecordingServer(_settings(tiny_model))
    await draining.start()
    drain: asyncio.Task[None] | None = None
    try:
        await draining.wait_ready()
        async with _serving(_settings(tiny_model)) as other, _connect(draining, other) as c:
            request = client.build_request("hi", max_new_tokens=1)
            # round_robin: calls alternate between both pods once both connections are up.
            for _ in range(50):
                await c.generate(request, deadline=30)
                if draining.peers.ports() and other.peers.ports():
                    break
            assert draining.peers.ports() and other.peers.ports()
            # A call in flight holds the draining pod in its grace: it answers UNAVAILABLE to new
            # calls meanwhile (then it stops, and its connection closes).
            async with _connect(draining) as direct:
                long = client.build_request("a", max_new_tokens=LONG)
                in_flight = asyncio.create_task(direct.generate(long, deadline=60))
                await _until(lambda: draining.state.in_flight == 1)
                drain = asyncio.create_task(draining.drain())
                await _until(lambda: draining.state.draining)
                refused_before = len(draining.peers.ports("Generate"))
                answered_before = len(other.peers.ports("Generate"))
                for _ in range(10):
                    assert (await c.generate(request, deadline=30)).completion_tokens == 1
                refused = len(draining.peers.ports("Generate")) - refused_before
                answered = len(other.peers.ports("Generate")) - answered_before
                assert (await in_flight).completion_tokens == LONG
    finally:
        await (drain if drain is not None else draining.drain())
    assert answered == 10  # every call answered by the other pod, none failed
    assert refused >= 1  # and some had been sent to the draining pod first, and were retried


async def _until(condition: Callable[[], bool], *, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition still false after {within}s")
        await asyncio.sleep(0.01)
