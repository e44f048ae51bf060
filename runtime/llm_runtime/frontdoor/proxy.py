"""The gRPC half of the front door: a generic handler that forwards raw bytes, per request.

Every call to a method of an `llm.runtime.*` service (Generate, GenerateStream, ModelInfo...) is
routed on its own by `split.Splitter`, whatever connection it came on, and forwarded through one
long-lived `grpc.aio` channel per backend target (round_robin over the target's addresses).
Messages pass as bytes: nothing is parsed, so nothing can be logged, and a stream is relayed
message by message as the backend sends it (each `write` waits for the client's flow control).
The method's shape (unary or server-streaming) comes from the descriptor the generated stubs
register; client-streaming methods and other services are answered UNIMPLEMENTED here.

What passes through unchanged: the caller's metadata (bearer token included, minus pseudo,
hop-by-hop and `grpc-*` headers), the deadline (as the remaining time), cancellation (a cancelled
caller cancels the backend call, which frees the runtime's slot), and the backend's initial
metadata, status code, details and trailing metadata.

Retries: a call the canary fails *before its first response message* is sent again, once, to the
stable revision, when the failure is the canary's rather than the request's (`should_retry`):
UNAVAILABLE (down, loading, draining, unreachable), RESOURCE_EXHAUSTED (its queue is full),
INTERNAL / UNKNOWN (a bug), UNIMPLEMENTED (an API it lacks), CANCELLED (it cut the call while the
caller is still there) and DEADLINE_EXCEEDED (its own timeout, not the caller's); and only while
the caller's deadline leaves at least `MIN_RETRY_SECONDS`. Request errors (INVALID_ARGUMENT,
UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, FAILED_PRECONDITION, OUT_OF_RANGE...) pass through:
the stable would say the same. Stable calls are never retried (the caller's own retry policy
decides), and once a stream's first message went out, an error passes through as it is.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import grpc
from google.protobuf import descriptor_pool
from grpc import aio

from llm_runtime.api.v1 import runtime_pb2  # noqa: F401  (registers llm.runtime.v1 descriptors)
from llm_runtime.frontdoor import metrics, routing, split

log = logging.getLogger(__name__)

PROXIED_PACKAGE_PREFIX = "llm.runtime."
MIN_RETRY_SECONDS = 0.05
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
# Connection-level headers that describe one hop, not the call.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "upgrade",
        "host",
        "content-type",
        "content-length",
        "user-agent",
    }
)
# Keepalive towards the backends, within what the runtime accepts (a ping every 20 s, idle or
# not; the runtime allows one per 10 s): a vanished pod fails its calls in ~30 s, not at the
# deadline. The front door's own server accepts the same from its clients (`SERVER_OPTIONS`).
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)
SERVER_KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
)
_MESSAGE_SIZE_OPTIONS = (
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
)
SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.so_reuseport", 0),
    *_MESSAGE_SIZE_OPTIONS,
    *SERVER_KEEPALIVE_OPTIONS,
)


def connection_age_options(age_seconds: float, grace_seconds: float) -> list[tuple[str, int]]:
    """Pure: server options that close each client connection `age_seconds` after it opened
    (GOAWAY), so long-lived client channels reconnect and spread over front door replicas added
    since; calls still running get `grace_seconds`. 0 keeps connections for ever."""
    if age_seconds <= 0:
        return []
    limit = 2**31 - 1  # gRPC channel arguments are C ints
    return [
        ("grpc.max_connection_age_ms", max(1, min(round(age_seconds * 1000), limit))),
        ("grpc.max_connection_age_grace_ms", min(round(grace_seconds * 1000), limit)),
    ]


def service_config(name: str) -> dict[str, Any]:
    """The backend channel's service config. round_robin spreads calls over every address the
    target resolves to (a headless Service: every ready pod). The stable channel retries
    UNAVAILABLE (a draining or loading pod refused the call before any work: the next pod takes
    it), up to 3 attempts within the deadline; the canary channel does not, since a refused
    canary call goes to the stable at once (`should_retry`)."""
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if name == routing.STABLE:
        config["methodConfig"] = [
            {
                "name": [{}],  # every method this channel carries
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    return config


# Reconnecting to a pod that went away backs off up to 120 s by default; capped at 2 s, a pod that
# comes back (or a new one behind the same name) gets traffic within ~2 s. The resolver's own
# backoff after a name that did not resolve is not set by these: `Channels` reopens such a
# channel instead.
BACKOFF_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.dns_min_time_between_resolutions_ms", 1_000),
)


REOPEN_SECONDS = 1.0


def channel_options(name: str) -> list[tuple[str, Any]]:
    return [
        *BACKOFF_OPTIONS,
        ("grpc.service_config", json.dumps(service_config(name))),
        ("grpc.enable_retries", 1),
        ("grpc.primary_user_agent", "llm-frontdoor"),
        *_MESSAGE_SIZE_OPTIONS,
        *KEEPALIVE_OPTIONS,
    ]


Metadata = tuple[tuple[str, str | bytes], ...]
_Context = aio.ServicerContext[bytes, bytes]
_T = TypeVar("_T")
_EOF: object = aio.EOF  # type: ignore[attr-defined]  # grpc-stubs lack it

if TYPE_CHECKING:  # generic in grpc-stubs only; the runtime class is not subscriptable
    _GenericHandler = grpc.GenericRpcHandler[bytes, bytes]
else:
    _GenericHandler = grpc.GenericRpcHandler


class Shape(enum.Enum):
    UNARY = "unary"
    SERVER_STREAM = "server_stream"


def method_shape(path: str) -> Shape | None:
    """'/llm.runtime.v1.Runtime/GenerateStream' -> SERVER_STREAM; None for what is not proxied
    (other services, unknown or client-streaming methods)."""
    service, _, method = path.lstrip("/").partition("/")
    if not service.startswith(PROXIED_PACKAGE_PREFIX):
        return None
    try:
        desc = descriptor_pool.Default().FindServiceByName(service)
    except KeyError:
        return None
    found = desc.methods_by_name.get(method)
    if found is None or found.client_streaming:
        return None
    return Shape.SERVER_STREAM if found.server_streaming else Shape.UNARY


def forwarded_metadata(metadata: Iterable[Any] | None) -> Metadata:
    """The entries that describe the call (auth, tracing, app headers), not the hop."""
    return tuple(
        (key, value)
        for key, value in metadata or ()
        if not key.startswith((":", "grpc-")) and key not in HOP_BY_HOP
    )


def should_retry(code: grpc.StatusCode, *, time_remaining: float | None) -> bool:
    """Whether a canary call that failed before its first message goes again to the stable."""
    if time_remaining is not None and time_remaining < MIN_RETRY_SECONDS:
        return False
    return code in RETRYABLE_CODES


def cancel_code(time_remaining: float | None) -> str:
    """Why our handler was cancelled: the caller's deadline passed, or the caller went away."""
    if time_remaining is not None and time_remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED.name
    return grpc.StatusCode.CANCELLED.name


def _remaining(context: _Context) -> float | None:
    remaining: float | None = context.time_remaining()
    # No deadline reads as a huge number in some grpc versions: treat it as none.
    if remaining is not None and remaining > 1e8:
        return None
    return remaining


class Channels:
    """One long-lived channel per backend (role, target): the stable's and the canary's differ in
    retry policy. Channels that left the config are closed after `grace_seconds` (their
    in-flight calls finish first)."""

    def __init__(self, *, grace_seconds: float = 30.0) -> None:
        self._channels: dict[tuple[str, str], aio.Channel] = {}
        self._opened: dict[tuple[str, str], float] = {}
        self._grace = grace_seconds
        self._closing: set[asyncio.Task[None]] = set()

    def get(self, name: str, target: str) -> aio.Channel:
        key = (name, target)
        channel = self._channels.get(key)
        if channel is not None and self._stuck(key, channel):
            self._close_later(key, self._channels.pop(key))
            channel = None
        if channel is None:
            channel = aio.insecure_channel(target, options=channel_options(name))
            self._channels[key] = channel
            self._opened[key] = time.monotonic()
        return channel

    def _stuck(self, key: tuple[str, str], channel: aio.Channel) -> bool:
        """A channel in TRANSIENT_FAILURE for over REOPEN_SECONDS is replaced: its resolver
        backs off up to minutes after a name that did not resolve yet (a revision whose pods
        were still loading), and a new channel resolves at once."""
        failing = channel.get_state() is grpc.ChannelConnectivity.TRANSIENT_FAILURE
        return failing and time.monotonic() - self._opened.get(key, 0.0) >= REOPEN_SECONDS

    def _close_later(self, key: tuple[str, str], channel: aio.Channel) -> None:
        task = asyncio.create_task(channel.close(self._grace), name=f"close {key}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def retain(self, config: routing.RoutingConfig) -> None:
        """Open (and start connecting) the config's channels; close every other one."""
        keep = {(name, b.target) for name in routing.BACKENDS if (b := config.backend(name))}
        for name, target in keep:
            self.get(name, target).get_state(try_to_connect=True)
        for key in set(self._channels) - keep:
            self._opened.pop(key, None)
            self._close_later(key, self._channels.pop(key))

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close(None) for c in channels), *self._closing)


class _RetryableError(Exception):
    """An attempt that failed before its first response message and may be retried."""

    def __init__(self, error: aio.AioRpcError) -> None:
        super().__init__(error.code().name)
        self.error = error


class Proxy(_GenericHandler):
    """Forwards each proxied call to the backend `splitter` picks, recording `metrics`."""

    def __init__(
        self,
        splitter: split.Splitter,
        channels: Channels,
        frontdoor_metrics: metrics.FrontdoorMetrics,
    ) -> None:
        self._splitter = splitter
        self._channels = channels
        self._metrics = frontdoor_metrics
        self._handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        path: str = handler_call_details.method
        handler = self._handlers.get(path)
        if handler is None:
            handler = self._handler(path)
            if handler is not None:  # only proxied methods: callers choose the other paths
                self._handlers[path] = handler
        return handler

    def _handler(self, path: str) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        shape = method_shape(path)
        if shape is None:
            return None
        method = path.rsplit("/", 1)[-1]
        if shape is Shape.UNARY:

            async def unary(request: bytes, context: _Context) -> bytes:
                return await self._forward(path, method, request, context, self._unary_attempt)

            return grpc.unary_unary_rpc_method_handler(unary)

        async def stream(request: bytes, context: _Context) -> None:
            await self._forward(path, method, request, context, self._stream_attempt)

        return grpc.unary_stream_rpc_method_handler(stream)

    async def _forward(
        self,
        path: str,
        method: str,
        request: bytes,
        context: _Context,
        attempt: Callable[..., Awaitable[_T]],
    ) -> _T:
        route = self._splitter.route()
        if route is None:
            self._metrics.finished(
                backend=metrics.NO_BACKEND,
                revision="",
                method=method,
                code=grpc.StatusCode.UNAVAILABLE.name,
            )
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the front door has no valid routing config yet"
            )
        metadata = forwarded_metadata(context.invocation_metadata())
        may_retry = route.fallback is not None
        try:
            return await attempt(
                route.name, route.backend, path, method, request, metadata, context, may_retry
            )
        except _RetryableError as failed:
            assert route.fallback is not None
            self._metrics.retried(from_revision=route.backend.revision, reason=str(failed))
            return await attempt(
                routing.STABLE, route.fallback, path, method, request, metadata, context, False
            )

    async def _unary_attempt(
        self,
        name: str,
        backend: routing.Backend,
        path: str,
        method: str,
        request: bytes,
        metadata: Metadata,
        context: _Context,
        may_retry: bool,
    ) -> bytes:
        self._metrics.started(name)
        code = grpc.StatusCode.UNKNOWN.name
        call = self._channels.get(name, backend.target).unary_unary(path, None, None)(
            request, timeout=_remaining(context), metadata=metadata
        )
        try:
            try:
                response = cast(bytes, await call)
            except aio.AioRpcError as err:
                code = err.code().name
                if may_retry and should_retry(err.code(), time_remaining=_remaining(context)):
                    raise _RetryableError(err) from None
                await _fail(context, err)
            code = grpc.StatusCode.OK.name
            await _relay_initial_metadata(context, call)
            context.set_trailing_metadata(forwarded_metadata(await call.trailing_metadata()))
            return response
        except asyncio.CancelledError:
            code = cancel_code(_remaining(context))
            call.cancel()
            raise
        finally:
            self._metrics.ended(name)
            self._metrics.finished(
                backend=name, revision=backend.revision, method=method, code=code
            )

    async def _stream_attempt(
        self,
        name: str,
        backend: routing.Backend,
        path: str,
        method: str,
        request: bytes,
        metadata: Metadata,
        context: _Context,
        may_retry: bool,
    ) -> None:
        self._metrics.started(name)
        code = grpc.StatusCode.UNKNOWN.name
        call = self._channels.get(name, backend.target).unary_stream(path, None, None)(
            request, timeout=_remaining(context), metadata=metadata
        )
        try:
            try:
                message: object = await call.read()
            except aio.AioRpcError as err:
                code = err.code().name
                if may_retry and should_retry(err.code(), time_remaining=_remaining(context)):
                    raise _RetryableError(err) from None
                await _fail(context, err)
            # Committed to this backend from here on: its errors are the caller's.
            await _relay_initial_metadata(context, call)
            while message is not _EOF:
                await context.write(cast(bytes, message))
                message = await call.read()
            code = grpc.StatusCode.OK.name
            context.set_trailing_metadata(forwarded_metadata(await call.trailing_metadata()))
        except aio.AioRpcError as err:  # the stream broke after it started
            code = err.code().name
            await _fail(context, err)
        except asyncio.CancelledError:
            code = cancel_code(_remaining(context))
            raise
        finally:
            call.cancel()  # a no-op once the call ended; frees the backend's slot if not
            self._metrics.ended(name)
            self._metrics.finished(
                backend=name, revision=backend.revision, method=method, code=code
            )


async def _relay_initial_metadata(context: _Context, call: aio.Call) -> None:
    initial = forwarded_metadata(await call.initial_metadata())
    if initial:
        await context.send_initial_metadata(initial)


async def _fail(context: _Context, err: aio.AioRpcError) -> NoReturn:
    """End the caller's call with the backend's status, details and trailing metadata."""
    trailing: Sequence[tuple[str, str | bytes]] = forwarded_metadata(err.trailing_metadata())
    await context.abort(err.code(), err.details() or "", trailing)
    raise AssertionError("unreachable: abort raises")
