"""The front door against scripted backends (raw-bytes gRPC servers, no model): status codes,
details and metadata pass through unchanged, the retry rules hold (before the first message
only, canary only, backend failures only), health and reflection answer, and a drain lets an
in-flight stream finish. The same process is also started as `python -m llm_runtime.frontdoor`
and stopped with SIGTERM, and its imports stay free of torch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from llm_runtime.api import client as api
from llm_runtime.api.v1 import runtime_pb2
from llm_runtime.frontdoor import metrics, proxy, routing
from llm_runtime.frontdoor import server as frontdoor
from loopback import free_port
from prometheus_client import parser

pytestmark = pytest.mark.unit

ROOT = next(d for d in Path(__file__).parents if (d / "pyproject.toml").is_file())
GENERATE = f"/{api.RUNTIME_SERVICE}/Generate"
STREAM = f"/{api.RUNTIME_SERVICE}/GenerateStream"
INFO = f"/{api.RUNTIME_SERVICE}/ModelInfo"
Context = aio.ServicerContext[bytes, bytes]
Behaviour = Callable[[bytes, Context], Awaitable[Any]]

if TYPE_CHECKING:  # generic in grpc-stubs only
    _Handler = grpc.GenericRpcHandler[bytes, bytes]
else:
    _Handler = grpc.GenericRpcHandler


def _as_dict(metadata: object) -> dict[str, Any]:
    return dict(cast(Any, metadata))


def _stream_message(text: str) -> bytes:
    msg: bytes = runtime_pb2.GenerateStreamResponse(text=text).SerializeToString()
    return msg


class _Scripted(_Handler):
    """Answers each path with a coroutine; unary unless the path is GenerateStream."""

    def __init__(self, behaviours: dict[str, Behaviour]) -> None:
        self.behaviours = behaviours
        self.calls: list[str] = []

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        path: str = details.method
        behaviour = self.behaviours.get(path)
        if behaviour is None:
            return None

        async def handle(request: bytes, context: Context) -> Any:
            self.calls.append(path)
            return await behaviour(request, context)

        if path == STREAM:
            return grpc.unary_stream_rpc_method_handler(handle)
        return grpc.unary_unary_rpc_method_handler(handle)


@contextlib.asynccontextmanager
async def _backend(behaviours: dict[str, Behaviour]) -> AsyncIterator[tuple[str, _Scripted]]:
    server = aio.server()
    handler = _Scripted(behaviours)
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", handler
    finally:
        await server.stop(0)


async def _echo(request: bytes, context: Context) -> bytes:
    """The stable: echoes the request, reports the metadata it got in its trailers."""
    seen = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
    await context.send_initial_metadata((("x-initial", "from-stable"),))
    context.set_trailing_metadata(
        (("x-served-by", "stable"), ("x-seen", json.dumps(seen, sort_keys=True)))
    )
    return request


async def _three_chunks(request: bytes, context: Context) -> None:
    for text in ("a", "b", "c"):
        await context.write(_stream_message(text))


async def _queue_full(request: bytes, context: Context) -> None:
    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", (("retry-after", "1"),))


async def _bad_argument(request: bytes, context: Context) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "max_new_tokens: too large")


async def _fails_after_one(request: bytes, context: Context) -> None:
    await context.write(_stream_message("partial"))
    await context.abort(grpc.StatusCode.INTERNAL, "broke after one", (("x-why", "test"),))


async def _fails_before_first(request: bytes, context: Context) -> None:
    await context.abort(grpc.StatusCode.UNAVAILABLE, "draining")


async def _precondition(request: bytes, context: Context) -> None:
    await context.abort(
        grpc.StatusCode.FAILED_PRECONDITION, "not today", (("x-detail-bin", b"\x00\xff"),)
    )


def _config_file(tmp_path: Path, config: routing.RoutingConfig) -> Path:
    path = tmp_path / "routing.json"
    path.write_text(routing.to_json(config))
    return path


@contextlib.asynccontextmanager
async def _door(
    tmp_path: Path, stable: str, canary: str | None, weight: int, **kw: Any
) -> AsyncIterator[tuple[frontdoor.FrontDoor, aio.Channel]]:
    config = routing.RoutingConfig(
        stable=routing.Backend(stable, "r-stable"),
        canary=routing.Backend(canary, "r-canary") if canary else None,
        weight=weight,
    )
    settings = frontdoor.Settings(
        config=_config_file(tmp_path, config),
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        grace_seconds=kw.pop("grace_seconds", 1.0),
        poll_seconds=0.05,
    )
    async with frontdoor.serving(settings) as door:
        channel = aio.insecure_channel(f"127.0.0.1:{door.port}")
        try:
            yield door, channel
        finally:
            await channel.close(None)


def _metric(door: frontdoor.FrontDoor, name: str, **labels: str) -> float:
    url = f"http://127.0.0.1:{door.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


async def test_unary_status_metadata_and_trailers_pass_through_unchanged(tmp_path: Path) -> None:
    async with (
        _backend({GENERATE: _echo, INFO: _precondition}) as (stable, _),
        _door(tmp_path, stable, None, 0) as (door, channel),
    ):
        call = channel.unary_unary(GENERATE, None, None)(
            b"raw-bytes\x00\x01",
            metadata=(
                ("authorization", "Bearer s3cret"),
                ("x-custom", "42"),
                ("x-trace-bin", b"\x01\x02"),
            ),
            timeout=10,
        )
        assert await call == b"raw-bytes\x00\x01"  # nothing parsed, nothing changed
        initial = _as_dict(await call.initial_metadata())
        assert initial["x-initial"] == "from-stable"
        trailing = _as_dict(await call.trailing_metadata())
        assert trailing["x-served-by"] == "stable"
        seen = json.loads(trailing["x-seen"])
        assert seen["authorization"] == "Bearer s3cret" and seen["x-custom"] == "42"
        assert "llm-frontdoor" in seen["user-agent"]  # the hop's own, not the caller's
        with pytest.raises(aio.AioRpcError) as info:
            await channel.unary_unary(INFO, None, None)(b"", timeout=10)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert info.value.details() == "not today"
        assert _as_dict(info.value.trailing_metadata())["x-detail-bin"] == b"\x00\xff"
        assert _metric(door, metrics.METRIC_REQUESTS, backend="stable", code="OK") == 1
        assert (
            _metric(door, metrics.METRIC_REQUESTS, method="ModelInfo", code="FAILED_PRECONDITION")
            == 1
        )


async def test_a_canary_refusal_before_any_answer_is_retried_on_stable(tmp_path: Path) -> None:
    async with (
        _backend({GENERATE: _echo, STREAM: _three_chunks}) as (stable, on_stable),
        _backend({GENERATE: _queue_full, STREAM: _fails_before_first}) as (canary, on_canary),
        _door(tmp_path, stable, canary, 100) as (door, channel),
    ):
        assert await channel.unary_unary(GENERATE, None, None)(b"x", timeout=10) == b"x"
        chunks = [c async for c in channel.unary_stream(STREAM, None, None)(b"x", timeout=10)]
        assert len(chunks) == 3
        assert on_canary.calls == [GENERATE, STREAM] and on_stable.calls == [GENERATE, STREAM]
        assert _metric(door, metrics.METRIC_RETRIES, from_revision="r-canary") == 2
        assert _metric(door, metrics.METRIC_RETRIES, reason="RESOURCE_EXHAUSTED") == 1
        assert _metric(door, metrics.METRIC_RETRIES, reason="UNAVAILABLE") == 1
        assert _metric(door, metrics.METRIC_REQUESTS, backend="canary", code="OK") == 0
        assert _metric(door, metrics.METRIC_REQUESTS, backend="stable", code="OK") == 2


async def test_request_errors_and_errors_after_the_first_message_pass_through(
    tmp_path: Path,
) -> None:
    async with (
        _backend({GENERATE: _echo, STREAM: _three_chunks}) as (stable, on_stable),
        _backend({GENERATE: _bad_argument, STREAM: _fails_after_one}) as (canary, _),
        _door(tmp_path, stable, canary, 100) as (door, channel),
    ):
        with pytest.raises(aio.AioRpcError) as info:
            await channel.unary_unary(GENERATE, None, None)(b"x", timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "max_new_tokens: too large"
        call = channel.unary_stream(STREAM, None, None)(b"x", timeout=10)
        first = await call.read()
        assert isinstance(first, bytes)
        assert runtime_pb2.GenerateStreamResponse.FromString(first).text == "partial"
        with pytest.raises(aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert info.value.details() == "broke after one"
        assert _as_dict(info.value.trailing_metadata())["x-why"] == "test"
        assert on_stable.calls == []  # neither was retried
        assert _metric(door, metrics.METRIC_RETRIES) == 0
        assert _metric(door, metrics.METRIC_REQUESTS, backend="canary", code="INTERNAL") == 1


async def test_stable_failures_are_not_sent_to_the_canary(tmp_path: Path) -> None:
    async with (
        _backend({GENERATE: _queue_full}) as (stable, _),
        _backend({GENERATE: _echo}) as (canary, on_canary),
        _door(tmp_path, stable, canary, 0) as (_, channel),
    ):
        with pytest.raises(aio.AioRpcError) as info:
            await channel.unary_unary(GENERATE, None, None)(b"x", timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _as_dict(info.value.trailing_metadata())["retry-after"] == "1"
        assert on_canary.calls == []


async def test_health_reflection_and_what_is_not_proxied(tmp_path: Path) -> None:
    async with (
        _backend({GENERATE: _echo}) as (stable, _),
        _door(tmp_path, stable, None, 0) as (_, channel),
    ):
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", api.RUNTIME_SERVICE):
            resp = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert api.health_status_name(resp) == "SERVING"
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in stub.ServerReflectionInfo(iter([req]), timeout=5):
            names = {s.name for s in answer.list_services_response.service}
            assert api.RUNTIME_SERVICE in names
            break
        with pytest.raises(aio.AioRpcError) as info:
            await channel.unary_unary("/other.Service/Method", None, None)(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_without_a_valid_config_it_is_not_serving_until_one_arrives(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"  # not there yet: the ConfigMap is not mounted
    settings = frontdoor.Settings(
        config=path, host="127.0.0.1", port=0, metrics_port=0, grace_seconds=1, poll_seconds=0.05
    )
    async with (
        _backend({GENERATE: _echo}) as (stable, _),
        frontdoor.serving(settings) as door,
        aio.insecure_channel(f"127.0.0.1:{door.port}") as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        resp = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert api.health_status_name(resp) == "NOT_SERVING"
        with pytest.raises(aio.AioRpcError) as info:
            await channel.unary_unary(GENERATE, None, None)(b"x", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert _metric(door, metrics.METRIC_REQUESTS, backend="none", code="UNAVAILABLE") == 1
        path.write_text("{not json")
        await _until(lambda: _metric(door, metrics.METRIC_CONFIG_RELOADS, result="invalid") == 1)
        path.write_text(routing.to_json(routing.RoutingConfig(routing.Backend(stable, "r1"))))
        await _until(lambda: _metric(door, metrics.METRIC_CONFIG_RELOADS, result="ok") == 1)
        resp = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert api.health_status_name(resp) == "SERVING"
        assert await channel.unary_unary(GENERATE, None, None)(b"x", timeout=5) == b"x"
        assert _metric(door, metrics.METRIC_WEIGHT, backend="stable") == 100


async def _until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def test_a_drain_lets_an_in_flight_stream_finish(tmp_path: Path) -> None:
    async def slow(request: bytes, context: Context) -> None:
        for i in range(5):
            await context.write(_stream_message(str(i)))
            await asyncio.sleep(0.1)

    async with (
        _backend({STREAM: slow}) as (stable, _),
        _door(tmp_path, stable, None, 0, grace_seconds=5) as (door, channel),
    ):
        call = channel.unary_stream(STREAM, None, None)(b"x", timeout=10)
        assert isinstance(await call.read(), bytes)
        draining = asyncio.create_task(door.drain())
        rest = []
        while isinstance(message := await call.read(), bytes):
            rest.append(message)
        assert len(rest) == 4 and await call.code() == grpc.StatusCode.OK
        await draining
        with pytest.raises(aio.AioRpcError) as info:
            await channel.unary_unary(GENERATE, None, None)(b"x", timeout=2)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_retry_rules() -> None:
    assert proxy.should_retry(grpc.StatusCode.UNAVAILABLE, time_remaining=None)
    assert proxy.should_retry(grpc.StatusCode.DEADLINE_EXCEEDED, time_remaining=3.0)
    assert not proxy.should_retry(grpc.StatusCode.DEADLINE_EXCEEDED, time_remaining=0.0)
    assert not proxy.should_retry(grpc.StatusCode.UNAVAILABLE, time_remaining=0.01)
    for code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.OK,
    ):
        assert not proxy.should_retry(code, time_remaining=None)


def test_metadata_filter_drops_hop_headers_only() -> None:
    md = (
        (":authority", "x"),
        ("user-agent", "u"),
        ("grpc-timeout", "1S"),
        ("te", "trailers"),
        ("authorization", "Bearer t"),
        ("x-b3-traceid", "abc"),
        ("x-bin", b"\x00"),
    )
    assert proxy.forwarded_metadata(md) == (
        ("authorization", "Bearer t"),
        ("x-b3-traceid", "abc"),
        ("x-bin", b"\x00"),
    )


def test_method_shapes_come_from_the_descriptors() -> None:
    assert proxy.method_shape(GENERATE) is proxy.Shape.UNARY
    assert proxy.method_shape(STREAM) is proxy.Shape.SERVER_STREAM
    assert proxy.method_shape(INFO) is proxy.Shape.UNARY
    assert proxy.method_shape(f"/{api.RUNTIME_SERVICE}/Nope") is None
    assert proxy.method_shape("/grpc.health.v1.Health/Check") is None


def test_the_module_imports_no_torch_nor_other_runtime_modules() -> None:
    code = (
        "import sys, llm_runtime.frontdoor.main\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'transformers', 'llm_operator'} or (m.startswith('llm_runtime.') and not "
        "m.startswith(('llm_runtime.api', 'llm_runtime.frontdoor'))))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_the_process_serves_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    async with _backend({GENERATE: _echo}) as (stable, _):
        config = _config_file(tmp_path, routing.RoutingConfig(routing.Backend(stable, "r1")))
        port = free_port()
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'runtime'}"}
        cmd = [sys.executable, "-m", "llm_runtime.frontdoor", "--config", str(config)]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0"]
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, stderr=subprocess.PIPE)
        try:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(GENERATE, None, None)
                assert await call(b"hi", timeout=30, wait_for_ready=True) == b"hi"
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), timeout=20) == 0
            assert proc.stderr is not None
            log = (await proc.stderr.read()).decode()
            assert "drained" in log
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
