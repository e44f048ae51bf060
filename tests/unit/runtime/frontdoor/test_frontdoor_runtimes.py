"""The front door in front of two real runtimes on loopback (real gRPC servers, real engines, one
tiny random model served as two revisions, bearer auth on): every request is split by weight over
ONE client channel, measured by the front door's metrics and by each runtime's own; a dead canary
costs the caller nothing; the token, the deadline and a cancel reach the runtime; a config reload
changes the split and a bad file keeps the old one; streams are relayed chunk by chunk."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc import aio
from llm_runtime import config, server
from llm_runtime.api import client as api
from llm_runtime.api import contract
from llm_runtime.frontdoor import metrics, routing
from llm_runtime.frontdoor import server as frontdoor
from llm_runtime.models import tiny
from prometheus_client import parser

pytestmark = [pytest.mark.unit, pytest.mark.asyncio(loop_scope="module")]

TOKEN = "fd-s3cret"
STABLE_REV, CANARY_REV = "r-stable", "r-canary"


@dataclasses.dataclass(frozen=True)
class Runtimes:
    stable: server.RuntimeServer
    canary: server.RuntimeServer


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A long context: the deadline test asks for more tokens than its deadline can generate.
    return tiny.make_tiny_model(tmp_path_factory.mktemp("tiny"), context_length=LONG + 64)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runtimes(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Runtimes]:
    token_file = tmp_path_factory.mktemp("auth") / "token"
    token_file.write_text(TOKEN + "\n")

    def settings(revision: str) -> config.Settings:
        return config.Settings(
            model=str(tiny_model),
            model_revision=revision,
            host="127.0.0.1",
            grpc_port=0,
            metrics_port=0,
            health_port=0,
            http_port=0,
            grace_seconds=1,
            auth_token_file=token_file,
            max_new_tokens=LONG,
        )

    async with (
        server.serving(settings(STABLE_REV)) as stable,
        server.serving(settings(CANARY_REV)) as canary,
    ):
        yield Runtimes(stable=stable, canary=canary)


def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
    }


def _get(port: int, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in _scrape(port).items() if n == name and wanted <= ls)


async def _aget(port: int, name: str, **labels: str) -> float:
    return await asyncio.to_thread(_get, port, name, **labels)


async def _until(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


def _backend(srv: server.RuntimeServer, revision: str) -> routing.Backend:
    return routing.Backend(target=f"127.0.0.1:{srv.grpc_port}", revision=revision)


def _write(path: Path, rt: Runtimes, weight: int, canary: routing.Backend | None = None) -> None:
    canary = canary or _backend(rt.canary, CANARY_REV)
    cfg = routing.RoutingConfig(
        stable=_backend(rt.stable, STABLE_REV), canary=canary, weight=weight
    )
    path.write_text(routing.to_json(cfg))


@contextlib.asynccontextmanager
async def _door(path: Path) -> AsyncIterator[frontdoor.FrontDoor]:
    settings = frontdoor.Settings(
        config=path, host="127.0.0.1", port=0, metrics_port=0, grace_seconds=1, poll_seconds=0.05
    )
    async with frontdoor.serving(settings) as door:
        yield door


@contextlib.asynccontextmanager
async def _client(
    door: frontdoor.FrontDoor, token: str | None = TOKEN
) -> AsyncIterator[api.AsyncRuntimeClient]:
    async with api.AsyncRuntimeClient(
        api.Connection(target=f"127.0.0.1:{door.port}", token=token)
    ) as client:
        yield client


def _requests(port: int, **labels: str) -> float:
    return _get(port, contract.METRIC_REQUESTS, **labels)


async def _one(client: api.AsyncRuntimeClient, i: int) -> None:
    request = api.build_request(f"request {i}", max_new_tokens=2)
    if i % 2:
        chunks = [c async for c in client.generate_stream(request, deadline=30)]
        assert chunks and chunks[-1].completion_tokens >= 1
    else:
        assert (await client.generate(request, deadline=30)).completion_tokens >= 1


async def test_every_request_is_split_by_weight_over_one_channel(
    runtimes: Runtimes, tmp_path: Path
) -> None:
    path = tmp_path / "routing.json"
    _write(path, runtimes, weight=10)
    mport = {"stable": runtimes.stable.metrics_port, "canary": runtimes.canary.metrics_port}
    before = {k: await asyncio.to_thread(_requests, p, code="OK") for k, p in mport.items()}
    total = 300
    async with _door(path) as door, _client(door) as client:
        for start in range(0, total, 20):  # 20 at a time, all on the client's one channel
            await asyncio.gather(*(_one(client, i) for i in range(start, start + 20)))
        canary = await _aget(door.metrics_port, metrics.METRIC_REQUESTS, backend="canary")
        stable = await _aget(door.metrics_port, metrics.METRIC_REQUESTS, backend="stable")
        ok = await _aget(door.metrics_port, metrics.METRIC_REQUESTS, code="OK")
        assert await _aget(door.metrics_port, metrics.METRIC_WEIGHT, backend="canary") == 10
    after = {k: await asyncio.to_thread(_requests, p, code="OK") for k, p in mport.items()}
    got = {k: after[k] - before[k] for k in mport}
    assert canary + stable == ok == total
    assert abs(canary - total * 0.10) <= total * 0.03  # the chooser makes it exactly 30
    assert got == {"canary": canary, "stable": stable}  # what each runtime itself counted
    streamed = await asyncio.to_thread(
        _requests, mport["canary"], code="OK", method="GenerateStream", revision=CANARY_REV
    )
    assert streamed > 0  # both methods were split, not just one


async def test_model_info_tells_the_revisions_apart_and_a_reload_changes_the_split(
    runtimes: Runtimes, tmp_path: Path
) -> None:
    path = tmp_path / "routing.json"
    _write(path, runtimes, weight=0)
    async with _door(path) as door, _client(door) as client:
        revisions = [(await client.model_info(deadline=10)).revision for _ in range(5)]
        assert revisions == [STABLE_REV] * 5
        _write(path, runtimes, weight=100)

        def reloads(result: str) -> Callable[[], bool]:
            return lambda: (
                _get(door.metrics_port, metrics.METRIC_CONFIG_RELOADS, result=result) >= 1
                and _get(door.metrics_port, metrics.METRIC_CONFIG_RELOADS, result="ok")
                >= (2 if result == "ok" else 1)
            )

        await _until(reloads("ok"))
        revisions = [(await client.model_info(deadline=10)).revision for _ in range(5)]
        assert revisions == [CANARY_REV] * 5
        path.write_text('{"stable": {"target": "127.0.0.1:1"}, "weight": 100}')
        await _until(reloads("invalid"))
        revisions = [(await client.model_info(deadline=10)).revision for _ in range(5)]
        assert revisions == [CANARY_REV] * 5  # the bad file changed nothing
        _write(path, runtimes, weight=50)
        await _until(lambda: _get(door.metrics_port, metrics.METRIC_WEIGHT, backend="canary") == 50)
        revisions = [(await client.model_info(deadline=10)).revision for _ in range(20)]
        assert revisions.count(CANARY_REV) == 10


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


async def test_a_dead_canary_costs_the_caller_nothing(runtimes: Runtimes, tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    dead = routing.Backend(target=f"127.0.0.1:{_closed_port()}", revision="r-dead")
    _write(path, runtimes, weight=50, canary=dead)
    sport = runtimes.stable.metrics_port
    before = await asyncio.to_thread(_requests, sport, code="OK")
    async with _door(path) as door, _client(door) as client:
        await asyncio.gather(*(_one(client, i) for i in range(40)))  # none raises
        retried = await _aget(
            door.metrics_port, metrics.METRIC_RETRIES, from_revision="r-dead", reason="UNAVAILABLE"
        )
        failed = await _aget(
            door.metrics_port, metrics.METRIC_REQUESTS, backend="canary", code="UNAVAILABLE"
        )
    assert retried == failed == 20
    assert await asyncio.to_thread(_requests, sport, code="OK") - before == 40


async def test_the_token_passes_through_and_a_missing_one_is_refused_by_the_runtime(
    runtimes: Runtimes, tmp_path: Path
) -> None:
    path = tmp_path / "routing.json"
    _write(path, runtimes, weight=50)
    request = api.build_request("hi", max_new_tokens=1)
    async with _door(path) as door:
        async with _client(door, token=None) as anonymous:
            for _ in range(2):  # one lands on each revision; neither is retried
                with pytest.raises(aio.AioRpcError) as info:
                    await anonymous.generate(request, deadline=10)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "bearer token" in (info.value.details() or "")
        async with _client(door, token="wrong") as wrong:
            with pytest.raises(aio.AioRpcError) as info:
                await wrong.generate(request, deadline=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        async with _client(door) as client:
            for _ in range(2):
                assert (await client.generate(request, deadline=10)).completion_tokens == 1
        assert await _aget(door.metrics_port, metrics.METRIC_RETRIES) == 0
        assert await _aget(door.metrics_port, metrics.METRIC_REQUESTS, code="UNAUTHENTICATED") == 3


DEADLINE = 0.5  # seconds: time for the front door to forward the call on a loaded machine
LONG = 4000  # tokens: several seconds of the tiny model even at the engine's fastest step


async def test_the_deadline_reaches_the_runtime(runtimes: Runtimes, tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    _write(path, runtimes, weight=0)
    sport = runtimes.stable.metrics_port
    before = await asyncio.to_thread(_requests, sport, code="DEADLINE_EXCEEDED")
    long = api.build_request("a long one", max_new_tokens=LONG)
    async with _door(path) as door, _client(door) as client:
        # One short call first: the front door's channel to the runtime is connected, so the
        # deadline below is spent generating, not connecting.
        await client.generate(api.build_request("warm", max_new_tokens=1), deadline=30)
        with pytest.raises(aio.AioRpcError) as info:
            await client.generate(long, deadline=DEADLINE)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(aio.AioRpcError) as info:
            async for _ in client.generate_stream(long, deadline=DEADLINE):
                pass
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The runtime saw the deadline itself (a call merely cancelled by us reads CANCELLED).
        await _until(lambda: _requests(sport, code="DEADLINE_EXCEEDED") - before == 2)
        await _until(lambda: _get(sport, "llm_runtime_requests_running") == 0)


async def test_a_client_cancel_frees_the_runtime_slot(runtimes: Runtimes, tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    _write(path, runtimes, weight=0)
    sport = runtimes.stable.metrics_port
    before = await asyncio.to_thread(_requests, sport, code="CANCELLED", method="GenerateStream")
    long = api.build_request("a long one", max_new_tokens=LONG)
    async with _door(path) as door, _client(door) as client:
        stream = client.generate_stream(long, deadline=60)
        await anext(stream)
        await stream.aclose()  # cancels the call
        await _until(
            lambda: _requests(sport, code="CANCELLED", method="GenerateStream") - before == 1
        )
        await _until(lambda: _get(sport, "llm_runtime_requests_running") == 0)
        await _until(
            lambda: _get(door.metrics_port, metrics.METRIC_REQUESTS, code="CANCELLED") == 1
        )
        assert await _aget(door.metrics_port, metrics.METRIC_IN_FLIGHT) == 0


async def test_a_stream_is_relayed_chunk_by_chunk(runtimes: Runtimes, tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    _write(path, runtimes, weight=0)
    request = api.build_request("stream me", max_new_tokens=300)
    async with _door(path) as door, _client(door) as client:
        started = time.perf_counter()
        arrivals = [time.perf_counter() - started async for _ in client.generate_stream(request)]
    assert len(arrivals) > 100
    # A buffering proxy would deliver everything at the end; the first chunk comes long before.
    assert arrivals[0] < arrivals[-1] / 2, (arrivals[0], arrivals[-1])
