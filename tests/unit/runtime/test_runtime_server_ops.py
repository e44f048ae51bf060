"""Operating the runtime: readiness, drain, auth, TLS, reflection, /metrics, payload privacy.

Real server on loopback, real engine, tiny random model; clients are the ones users get.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from llm_runtime import config, server
from llm_runtime.api import client
from llm_runtime.models import tiny

pytestmark = pytest.mark.unit

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
        grace_seconds=10,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def _connect(srv: server.RuntimeServer, **conn: object) -> client.AsyncRuntimeClient:
    return client.AsyncRuntimeClient(
        client.Connection(f"127.0.0.1:{srv.grpc_port}", **conn)  # type: ignore[arg-type]
    )


async def _until(condition: Callable[[], bool], *, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition still false after {within}s")
        await asyncio.sleep(0.01)


async def test_health_is_serving_only_after_the_model_loaded_and_warmed_up(
    tiny_model: Path,
) -> None:
    release = asyncio.Event()

    async def slow_load(settings: config.Settings) -> server.BuiltEngine:
        await release.wait()  # the model "loads" until the test says so
        return await server.load_engine(settings)

    settings = _settings(tiny_model)
    loading = server.serving(settings, engine_factory=slow_load, wait_ready=False)
    async with loading as srv, _connect(srv) as c:
        assert await c.health() == "NOT_SERVING"
        assert await c.health(server.RUNTIME_SERVICE) == "NOT_SERVING"
        with pytest.raises(aio.AioRpcError) as info:
            await c.generate(client.build_request("hi"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(aio.AioRpcError) as info:
            await c.model_info()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        release.set()
        await srv.wait_ready()
        assert await c.health() == "SERVING"
        assert await c.health(server.RUNTIME_SERVICE) == "SERVING"
        assert (await c.generate(client.build_request("hi", max_new_tokens=1))).completion_tokens


async def test_drain_refuses_new_calls_reports_not_serving_and_finishes_in_flight(
    tiny_model: Path,
) -> None:
    srv = server.RuntimeServer(_settings(tiny_model, grace_seconds=120))  # a busy CPU is slow
    await srv.start()
    await srv.wait_ready()
    async with _connect(srv) as c:
        in_flight = asyncio.create_task(c.generate(client.build_request("a", max_new_tokens=LONG)))
        await _until(lambda: srv.state.in_flight == 1)
        drain = asyncio.create_task(srv.drain())
        await _until(lambda: srv.state.draining)
        assert await c.health() == "NOT_SERVING"
        with pytest.raises(aio.AioRpcError) as info:
            await c.generate(client.build_request("new", max_new_tokens=1))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        done = await in_flight
        assert (done.finish_reason, done.completion_tokens) == ("length", LONG)
        await drain


async def test_drain_cancels_calls_still_running_after_the_grace(tiny_model: Path) -> None:
    srv = server.RuntimeServer(_settings(tiny_model, grace_seconds=0.05))
    await srv.start()
    await srv.wait_ready()
    async with _connect(srv) as c:
        in_flight = asyncio.create_task(c.generate(client.build_request("a", max_new_tokens=LONG)))
        await _until(lambda: srv.state.in_flight == 1)
        await srv.drain()
        with pytest.raises(aio.AioRpcError) as info:
            await in_flight
        assert info.value.code() in {grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE}
    assert srv.state.in_flight == 0


async def test_auth_requires_the_bearer_token_except_for_probes(
    tiny_model: Path, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    settings = _settings(tiny_model, auth_token_file=token_file)
    request = client.build_request("hi", max_new_tokens=1)
    async with server.serving(settings) as srv:
        for token in (None, "wrong", "s3cre"):
            async with _connect(srv, token=token) as c:
                with pytest.raises(aio.AioRpcError) as info:
                    await c.generate(request)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(aio.AioRpcError) as info:
                    async for _ in c.generate_stream(request):
                        pass
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert await c.health() == "SERVING"  # kubelet probes carry no token
        async with _connect(srv, token="s3cret") as c:
            assert (await c.generate(request)).completion_tokens == 1
            assert (await c.model_info()).name
        text = _scrape(srv)
    assert 'code="UNAUTHENTICATED",method="Generate"' in text


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=runtime"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_serves_verified_clients_and_refuses_plaintext(
    tiny_model: Path, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    settings = _settings(tiny_model, tls_cert=cert, tls_key=key)
    async with server.serving(settings) as srv:
        async with _connect(srv, ca_file=cert) as c:
            assert await c.health() == "SERVING"
            done = await c.generate(client.build_request("hi", max_new_tokens=2))
            assert done.completion_tokens == 2
        async with _connect(srv, ca_file=cert, server_name="localhost") as by_name:
            assert await by_name.health() == "SERVING"  # a pod IP, verified as a DNS name
        async with _connect(srv, ca_file=cert, server_name="elsewhere") as wrong_name:
            with pytest.raises(aio.AioRpcError) as info:
                await wrong_name.health(deadline=2)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        async with _connect(srv) as plain:
            with pytest.raises(aio.AioRpcError) as info:
                await plain.health(deadline=2)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_reflection_lists_the_runtime_health_and_reflection_services(
    tiny_model: Path,
) -> None:
    def services(port: int) -> list[str]:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            return sorted(ProtoReflectionDescriptorDatabase(channel).get_services())

    async with server.serving(_settings(tiny_model)) as srv:
        names = await asyncio.to_thread(services, srv.grpc_port)
    assert names == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "llm.runtime.v1.Runtime",
    ]


def _scrape(srv: server.RuntimeServer) -> str:
    url = f"http://127.0.0.1:{srv.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
    return body.decode()


async def test_metrics_endpoint_counts_requests_and_passes_promtool(tiny_model: Path) -> None:
    settings = _settings(tiny_model, model_name="chat", model_revision="r7")
    async with server.serving(settings) as srv, _connect(srv) as c:
        await c.generate(client.build_request("hi", max_new_tokens=3))
        with pytest.raises(aio.AioRpcError):
            await c.generate(client.build_request(""))
        text = await asyncio.to_thread(_scrape, srv)
    labels = 'model="chat",revision="r7"'
    grpc = 'model="chat",protocol="grpc",revision="r7"'
    assert f'llm_runtime_requests_total{{code="OK",method="Generate",{grpc}}} 1.0' in text
    invalid = f'llm_runtime_requests_total{{code="INVALID_ARGUMENT",method="Generate",{grpc}}}'
    assert f"{invalid} 1.0" in text
    assert f"llm_runtime_generation_tokens_total{{{grpc}}} 3.0" in text
    assert f"llm_runtime_requests_running{{{labels}}} 0.0" in text
    assert f"llm_runtime_model_load_seconds{{{labels}}}" in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run `make setup`"
    check = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("log_payloads", [False, True])
async def test_prompts_and_outputs_are_logged_only_when_payload_logging_is_on(
    tiny_model: Path, caplog: pytest.LogCaptureFixture, log_payloads: bool
) -> None:
    secret = "my-card-number-4242"
    caplog.set_level(logging.DEBUG)
    settings = _settings(tiny_model, log_payloads=log_payloads)
    async with server.serving(settings) as srv, _connect(srv) as c:
        await c.generate(client.build_request(secret, max_new_tokens=2, request_id="req-1"))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "req-1" in logged
    assert (secret in logged) is log_payloads
