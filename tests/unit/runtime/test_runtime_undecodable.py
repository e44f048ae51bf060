"""Bytes that are not a request message get INVALID_ARGUMENT naming the problem (grpcio alone
answers UNKNOWN), and a neighbour's request on the same server is unharmed.

Real server on loopback, tiny random model; the bad call sends raw bytes on a raw method.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio
from llm_runtime import decoding, server
from llm_runtime.api import client
from llm_runtime.api.v1 import runtime_pb2 as pb
from llm_runtime.models import tiny

from tests.unit.runtime import loopback

pytestmark = pytest.mark.unit

# Field 1 (prompt, a string) declared 100 bytes long, with 3 present: a truncated message.
TRUNCATED = b"\x0a\x64abc"
# Field 1 as a string holding invalid UTF-8 (proto3 strings must be UTF-8).
BAD_UTF8 = b"\x0a\x02\xff\xfe"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
async def srv(tiny_model: Path) -> AsyncIterator[server.RuntimeServer]:
    async with server.serving(loopback.settings(tiny_model)) as s:
        await s.wait_ready()
        yield s


def test_the_tolerant_parser_returns_the_reason_instead_of_raising() -> None:
    parse = decoding.tolerant(pb.GenerateRequest.FromString)
    assert isinstance(parse(TRUNCATED), decoding.Undecodable)
    good = pb.GenerateRequest(prompt="hi").SerializeToString()
    assert parse(good) == pb.GenerateRequest(prompt="hi")


@pytest.mark.parametrize("raw", [TRUNCATED, BAD_UTF8], ids=["truncated", "bad-utf8"])
@pytest.mark.parametrize("method", ["Generate", "GenerateStream"])
async def test_bytes_that_do_not_parse_get_invalid_argument(
    srv: server.RuntimeServer, raw: bytes, method: str
) -> None:
    async with aio.insecure_channel(f"127.0.0.1:{srv.grpc_port}") as ch:
        path = f"/{decoding.SERVICE}/{method}"
        if method == "Generate":
            call = ch.unary_unary(path, None, None)(raw, timeout=10)
            with pytest.raises(aio.AioRpcError) as info:
                await call
        else:
            stream = ch.unary_stream(path, None, None)(raw, timeout=10)
            with pytest.raises(aio.AioRpcError) as info:
                async for _ in stream:
                    pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    assert "not a valid" in str(info.value.details())


async def test_a_neighbour_generating_meanwhile_is_unharmed(srv: server.RuntimeServer) -> None:
    target = f"127.0.0.1:{srv.grpc_port}"
    async with (
        client.AsyncRuntimeClient(client.Connection(target)) as c,
        aio.insecure_channel(target) as raw,
    ):
        request = client.build_request("hello", max_new_tokens=8, temperature=0.0)
        good = asyncio.create_task(c.generate(request, deadline=60))
        bad = raw.unary_unary(f"/{decoding.SERVICE}/Generate", None, None)(TRUNCATED, timeout=10)
        with pytest.raises(aio.AioRpcError):
            await bad
        done = await good
    assert done.completion_tokens > 0
