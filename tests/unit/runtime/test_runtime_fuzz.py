"""Property: no GenerateRequest, however odd, gets INTERNAL or breaks the request beside it.

Hypothesis draws every field of the request (prompt and chat messages with odd unicode, huge and
negative numbers, NaN and Inf, seed extremes, empty and long stop lists, request ids) and sends
it to a real server on loopback (tiny random model) while a neighbour request generates in the
same batch. Each request must end OK or with a client error, and the neighbour must get the
same greedy text as it gets alone.

The server runs on its own event loop in a thread for the whole module, so each example costs
one request pair, not a server start.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm_runtime import config, server
from llm_runtime.api import client
from llm_runtime.api.v1 import runtime_pb2
from llm_runtime.models import tiny

pytestmark = pytest.mark.unit

# Codes a client may get for a bad or unlucky request; INTERNAL and UNKNOWN mean a server bug.
CLIENT_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
NEIGHBOUR = client.build_request("The quick brown fox", max_new_tokens=12, request_id="neighbour")

_INT32 = st.integers(-(2**31), 2**31 - 1)
_FLOAT32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
_TEXT = st.text(st.characters(codec="utf-8"), max_size=64)  # odd unicode, no lone surrogates


def _small_or_extreme(values: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(-2, 20), values)


@st.composite
def requests(draw: st.DrawFn) -> runtime_pb2.GenerateRequest:
    """A GenerateRequest with every field drawn (optional fields set or not)."""
    request = runtime_pb2.GenerateRequest(
        prompt=draw(st.one_of(st.just(""), _TEXT, st.text(max_size=2000))),
        messages=[
            runtime_pb2.ChatMessage(role=role, content=content)
            for role, content in draw(
                st.lists(
                    st.tuples(st.sampled_from(["user", "system", "assistant", ""]) | _TEXT, _TEXT),
                    max_size=4,
                )
            )
        ],
        stop=draw(st.lists(_TEXT, max_size=20)),
        request_id=draw(st.one_of(st.just(""), _TEXT)),
    )
    optional = {
        "max_new_tokens": _small_or_extreme(_INT32),
        "temperature": st.one_of(st.floats(0, 2, width=32), _FLOAT32),
        "top_p": st.one_of(st.floats(0, 1, width=32), _FLOAT32),
        "top_k": _small_or_extreme(_INT32),
        "seed": st.integers(-(2**63), 2**63 - 1),
    }
    for field, values in optional.items():
        if draw(st.booleans()):
            setattr(request, field, draw(values))
    return request


class _Background:
    """A runtime serving on its own event loop in a daemon thread."""

    def __init__(self, settings: config.Settings) -> None:
        self._settings = settings
        self._ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            async with server.serving(self._settings) as srv:
                self._ready.set_result(srv.grpc_port)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def start(self) -> int:
        self._thread.start()
        return self._ready.result(timeout=120)

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[client.RuntimeClient]:
    model = tiny.make_tiny_model(tmp_path_factory.mktemp("tiny"))
    background = _Background(
        config.Settings(
            model=str(model),
            host="127.0.0.1",
            grpc_port=0,
            metrics_port=0,
            health_port=0,
            http_port=0,
            dtype="float32",  # the neighbour's greedy text must not depend on its batch
            max_batch_size=4,
            max_waiting=8,
            max_new_tokens=16,  # an unset max_new_tokens is 16: examples stay fast
            grace_seconds=1,
        )
    )
    port = background.start()
    try:
        with client.RuntimeClient(client.Connection(f"127.0.0.1:{port}")) as c:
            yield c
    finally:
        background.stop()


@pytest.fixture(scope="module")
def alone(conn: client.RuntimeClient) -> client.Completion:
    """The neighbour's completion with nothing else running."""
    return conn.generate(NEIGHBOUR, deadline=60)


def _outcome(c: client.RuntimeClient, request: runtime_pb2.GenerateRequest, stream: bool) -> str:
    """ "ok" or the status code's name; raises for nothing."""
    try:
        if stream:
            client.completion_from_stream(list(c.generate_stream(request, deadline=60)))
        else:
            c.generate(request, deadline=60)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return "ok"


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests(), stream=st.booleans())
def test_no_request_gets_internal_or_harms_its_neighbour(
    conn: client.RuntimeClient,
    alone: client.Completion,
    request: runtime_pb2.GenerateRequest,
    stream: bool,
) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        neighbour = pool.submit(conn.generate, NEIGHBOUR, deadline=60)
        outcome = _outcome(conn, request, stream)
        beside = neighbour.result()
    assert outcome == "ok" or grpc.StatusCode[outcome] in CLIENT_CODES, (outcome, request)
    assert (beside.text, beside.finish_reason) == (alone.text, alone.finish_reason)
    assert beside.completion_tokens == alone.completion_tokens
