"""A small typed client for the runtime's gRPC API, sync and asyncio flavours.

Used by tests, the benchmark, and the operator (which has no torch: this module imports only grpc
and the generated stubs). gRPC errors are not wrapped: callers see `grpc.RpcError` with the status
code the server chose, which is the contract documented in the .proto. Every call takes
`deadline`: seconds, sent to the server as the gRPC deadline (it then answers DEADLINE_EXCEEDED and
frees the request's slot), unlike a local asyncio timeout.

Both clients' channels carry `CHANNEL_OPTIONS` (README: "Calling a model from an application"):
round_robin over every address the target resolves to, retries of UNAVAILABLE (a draining or
still-loading pod, a connection closed under a call that had no answer yet), and keepalive pings
the runtime accepts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncGenerator, Generator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llm_runtime.api.v1 import runtime_pb2, runtime_pb2_grpc

RUNTIME_SERVICE = "llm.runtime.v1.Runtime"

# The channels' service config. round_robin: a `dns:///NAME-headless...` target resolves to every
# ready pod and each request goes to the next one (over one address: that one). The runtime
# closes each connection after its max connection age (GOAWAY), and the channel then re-resolves,
# so new pods (a canary) are found without a new channel. UNAVAILABLE is what a draining pod
# answers, and a loading one: it was refused before any work, so it is retried, up to 4 attempts
# in all, each on the next pod, after random(0, 0.1 s), random(0, 0.2 s), random(0, 0.4 s); the
# deadline bounds them all. A stream is retried only until its first message. No retryThrottling:
# it would stop retries after a few failures, which is exactly what a pod draining for its grace
# period produces. Only the Runtime service: Health answers must stay what the pod says.
SERVICE_CONFIG: dict[str, object] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": RUNTIME_SERVICE}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.1s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}

# A ping every 20 s, idle or not, and a connection whose ping is unanswered for 10 s is dropped
# (its calls fail UNAVAILABLE, and are retried) instead of hanging on a vanished pod until the
# deadline. The runtime accepts pings down to one per 10 s (`llm_runtime.server.KEEPALIVE_OPTIONS`);
# a client pinging more often than its server allows gets GOAWAY too_many_pings.
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),  # keep pinging an idle connection
)

# What every channel of this module is built with; an application's own channel can take them too.
CHANNEL_OPTIONS: tuple[tuple[str, str | int], ...] = (
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    *KEEPALIVE_OPTIONS,
)

_FINISH_REASONS = {
    runtime_pb2.FINISH_REASON_LENGTH: "length",
    runtime_pb2.FINISH_REASON_STOP: "stop",
    runtime_pb2.FINISH_REASON_CANCELLED: "cancelled",
}


@dataclasses.dataclass(frozen=True)
class Completion:
    """The answer to one generation, streamed or not."""

    request_id: str
    text: str
    finish_reason: str  # "length", "stop" or "cancelled"
    prompt_tokens: int
    completion_tokens: int


@dataclasses.dataclass(frozen=True)
class Connection:
    """Where and how to reach a runtime. `ca_file` turns TLS on; `token` adds bearer auth."""

    target: str
    token: str | None = None
    ca_file: Path | None = None
    server_name: str | None = None  # TLS name to verify when it differs from the target host


def build_request(
    prompt: str | None = None,
    *,
    messages: Sequence[tuple[str, str]] = (),
    max_new_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    seed: int | None = None,
    stop: Sequence[str] = (),
    request_id: str = "",
) -> runtime_pb2.GenerateRequest:
    """A GenerateRequest from Python values; `messages` are (role, content) pairs."""
    req = runtime_pb2.GenerateRequest(
        prompt=prompt or "",
        messages=[runtime_pb2.ChatMessage(role=r, content=c) for r, c in messages],
        stop=list(stop),
        request_id=request_id,
    )
    if max_new_tokens is not None:
        req.max_new_tokens = max_new_tokens
    if temperature is not None:
        req.temperature = temperature
    if top_p is not None:
        req.top_p = top_p
    if top_k is not None:
        req.top_k = top_k
    if seed is not None:
        req.seed = seed
    return req


def completion_from_response(resp: runtime_pb2.GenerateResponse) -> Completion:
    return Completion(
        request_id=resp.request_id,
        text=resp.text,
        finish_reason=_FINISH_REASONS.get(resp.finish_reason, "unspecified"),
        prompt_tokens=resp.prompt_tokens,
        completion_tokens=resp.completion_tokens,
    )


def completion_from_stream(chunks: Sequence[runtime_pb2.GenerateStreamResponse]) -> Completion:
    """Join a finished stream's deltas; the last message carries the reason and counts."""
    if not chunks:
        raise ValueError("the stream ended without a final message")
    last = chunks[-1]
    return Completion(
        request_id=last.request_id,
        text="".join(c.text for c in chunks),
        finish_reason=_FINISH_REASONS.get(last.finish_reason, "unspecified"),
        prompt_tokens=last.prompt_tokens,
        completion_tokens=last.completion_tokens,
    )


def health_status_name(resp: health_pb2.HealthCheckResponse) -> str:
    """ "SERVING", "NOT_SERVING", ... as grpc_health_probe prints it."""
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    return name


def _credentials(conn: Connection) -> grpc.ChannelCredentials | None:
    if conn.ca_file is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates=conn.ca_file.read_bytes())


def _options(conn: Connection) -> list[tuple[str, str | int]]:
    options = list(CHANNEL_OPTIONS)
    if conn.server_name:
        options.append(("grpc.ssl_target_name_override", conn.server_name))
    return options


def _metadata(conn: Connection) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {conn.token}"),) if conn.token else ()


class RuntimeClient:
    """Blocking client; one channel, closed by `close()` or the `with` block."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        creds = _credentials(conn)
        self._channel = (
            grpc.secure_channel(conn.target, creds, options=_options(conn))
            if creds
            else grpc.insecure_channel(conn.target, options=_options(conn))
        )
        self._stub = runtime_pb2_grpc.RuntimeStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def generate(
        self, request: runtime_pb2.GenerateRequest, *, deadline: float | None = None
    ) -> Completion:
        resp = self._stub.Generate(request, timeout=deadline, metadata=_metadata(self._conn))
        return completion_from_response(resp)

    def generate_stream(
        self, request: runtime_pb2.GenerateRequest, *, deadline: float | None = None
    ) -> Generator[runtime_pb2.GenerateStreamResponse, None, None]:
        """The stream's messages; closing the generator early cancels the call (frees the slot)."""
        call = self._stub.GenerateStream(request, timeout=deadline, metadata=_metadata(self._conn))
        try:
            yield from call
        finally:
            call.cancel()  # type: ignore[no-untyped-call]  # no-op once the stream ended

    def model_info(self, *, deadline: float | None = None) -> runtime_pb2.ModelInfoResponse:
        return self._stub.ModelInfo(
            runtime_pb2.ModelInfoRequest(), timeout=deadline, metadata=_metadata(self._conn)
        )

    def health(self, service: str = "", *, deadline: float | None = None) -> str:
        req = health_pb2.HealthCheckRequest(service=service)
        return health_status_name(self._health.Check(req, timeout=deadline))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncRuntimeClient:
    """asyncio client (the operator, in-process tests, the benchmark's load generator)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        creds = _credentials(conn)
        self._channel = (
            aio.secure_channel(conn.target, creds, options=_options(conn))
            if creds
            else aio.insecure_channel(conn.target, options=_options(conn))
        )
        self._stub = runtime_pb2_grpc.RuntimeStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def generate(
        self, request: runtime_pb2.GenerateRequest, *, deadline: float | None = None
    ) -> Completion:
        resp = await self._stub.Generate(request, timeout=deadline, metadata=_metadata(self._conn))
        return completion_from_response(resp)

    async def generate_stream(
        self, request: runtime_pb2.GenerateRequest, *, deadline: float | None = None
    ) -> AsyncGenerator[runtime_pb2.GenerateStreamResponse, None]:
        call = self._stub.GenerateStream(request, timeout=deadline, metadata=_metadata(self._conn))
        try:
            async for chunk in call:
                yield chunk
        finally:
            call.cancel()  # a no-op when the stream already ended; frees the server slot if not

    async def model_info(self, *, deadline: float | None = None) -> runtime_pb2.ModelInfoResponse:
        return await self._stub.ModelInfo(
            runtime_pb2.ModelInfoRequest(), timeout=deadline, metadata=_metadata(self._conn)
        )

    async def health(self, service: str = "", *, deadline: float | None = None) -> str:
        req = health_pb2.HealthCheckRequest(service=service)
        return health_status_name(await self._health.Check(req, timeout=deadline))

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
