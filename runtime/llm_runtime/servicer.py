"""The gRPC edge: protobuf in, `types.GenerationRequest` to the engine, protobuf out.

The servicer stays thin. `to_domain` validates and converts a request (pure), `status_for` is the
one place that maps domain errors to gRPC status codes, and `_events` is the one loop that drives
an engine iterator for both RPCs: it records metrics, writes the request's log line, and closes the
engine iterator whatever happens, so a cancelled call or an expired deadline frees its batch slot
and KV memory at once (the engine's contract, see `types.Engine`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

import grpc
from grpc import aio

from llm_runtime import metrics, types
from llm_runtime.api import contract
from llm_runtime.api.v1 import runtime_pb2, runtime_pb2_grpc

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_GenerateContext = aio.ServicerContext[runtime_pb2.GenerateRequest, runtime_pb2.GenerateResponse]
_StreamContext = aio.ServicerContext[
    runtime_pb2.GenerateRequest, runtime_pb2.GenerateStreamResponse
]
_InfoContext = aio.ServicerContext[runtime_pb2.ModelInfoRequest, runtime_pb2.ModelInfoResponse]
_AnyContext = _GenerateContext | _StreamContext

DEFAULT_MAX_NEW_TOKENS = 128
# Request ids end up in logs: bounded, printable, no spaces, so a client cannot forge log lines.
MAX_REQUEST_ID_LENGTH = 128
_REQUEST_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID_LENGTH}}}")

_FINISH = {
    types.FinishReason.LENGTH: runtime_pb2.FINISH_REASON_LENGTH,
    types.FinishReason.STOP: runtime_pb2.FINISH_REASON_STOP,
    types.FinishReason.CANCELLED: runtime_pb2.FINISH_REASON_CANCELLED,
}


class NotReadyError(types.RuntimeError_):
    """-> UNAVAILABLE: the model is still loading or warming up."""


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-visible message for an error raised while serving a request.

    Unknown errors become INTERNAL with a generic message: their text may contain the prompt.
    """
    if isinstance(exc, types.InvalidRequestError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, types.QueueFullError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc) or "the waiting queue is full"
    if isinstance(exc, types.DrainingError):
        return grpc.StatusCode.UNAVAILABLE, str(exc) or "the server is shutting down"
    if isinstance(exc, types.NumericalError):
        return grpc.StatusCode.INTERNAL, str(exc)
    if isinstance(exc, NotReadyError):
        return grpc.StatusCode.UNAVAILABLE, str(exc) or "the model is not loaded yet"
    return grpc.StatusCode.INTERNAL, "internal error; see the server log"


def cancel_code(time_remaining: float | None) -> grpc.StatusCode:
    """Why a call was cancelled under us: its deadline passed, or the client went away."""
    if time_remaining is not None and time_remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


def _sampling(msg: runtime_pb2.GenerateRequest, info: types.ModelInfo) -> types.SamplingParams:
    """Sampling parameters with defaults for unset fields (the engine checks their ranges)."""
    return types.SamplingParams(
        max_new_tokens=(
            msg.max_new_tokens
            if msg.HasField("max_new_tokens")
            else min(DEFAULT_MAX_NEW_TOKENS, info.max_new_tokens)
        ),
        temperature=msg.temperature if msg.HasField("temperature") else 0.0,
        top_p=msg.top_p if msg.HasField("top_p") else 1.0,
        top_k=msg.top_k if msg.HasField("top_k") else 0,
        seed=msg.seed if msg.HasField("seed") else None,
        stop=tuple(msg.stop),
    )


def to_domain(
    msg: runtime_pb2.GenerateRequest, *, info: types.ModelInfo, request_id: str
) -> types.GenerationRequest:
    """Convert a request; defaults for unset fields. Range checks are the engine's, which raises
    InvalidRequestError naming the field (one set of rules for gRPC and direct callers); only the
    request id, which the engine never looks at, is checked here."""
    if not _REQUEST_ID.fullmatch(request_id):
        raise types.InvalidRequestError(
            f"request_id must be 1..{MAX_REQUEST_ID_LENGTH} printable ASCII characters, no spaces"
        )
    return types.GenerationRequest(
        request_id=request_id,
        prompt=msg.prompt or None,
        messages=tuple(types.ChatMessage(role=m.role, content=m.content) for m in msg.messages),
        sampling=_sampling(msg, info),
    )


def info_to_proto(info: types.ModelInfo) -> runtime_pb2.ModelInfoResponse:
    return runtime_pb2.ModelInfoResponse(
        name=info.name,
        revision=info.revision,
        dtype=info.dtype,
        device=info.device,
        context_length=info.context_length,
        limits=runtime_pb2.Limits(
            max_batch_size=info.max_batch_size,
            max_waiting=info.max_waiting,
            max_input_tokens=info.max_input_tokens,
            max_new_tokens=info.max_new_tokens,
        ),
    )


@dataclasses.dataclass(frozen=True)
class Serving:
    """What a ready server serves with: the started engine, its metrics, the advertised info."""

    engine: types.Engine
    metrics: metrics.ModelMetrics
    info: types.ModelInfo


class ServingState:
    """Loading -> serving -> draining, and the generation calls in flight (drain waits for them)."""

    def __init__(self) -> None:
        self.serving: Serving | None = None
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def check(self) -> Serving:
        """The serving objects, or the error that refuses a new call."""
        if self.draining:
            raise types.DrainingError("the server is shutting down; retry on another replica")
        if self.serving is None:
            raise NotReadyError("the model is still loading")
        return self.serving

    def acquire(self) -> Serving:
        """`check`, and count the call in flight until `release`."""
        serving = self.check()
        self.in_flight += 1
        self._idle.clear()
        return serving

    def release(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


@dataclasses.dataclass
class _Outcome:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    final: types.FinalEvent | None = None


class RuntimeServicer(runtime_pb2_grpc.RuntimeServicer):
    def __init__(self, state: ServingState, *, log_payloads: bool = False) -> None:
        self._state = state
        self._log_payloads = log_payloads

    async def Generate(  # noqa: N802  (gRPC method name)
        self, request: runtime_pb2.GenerateRequest, context: _GenerateContext
    ) -> runtime_pb2.GenerateResponse:
        request_id = request.request_id or uuid.uuid4().hex
        final: types.FinalEvent | None = None
        async with contextlib.aclosing(
            self._events("Generate", request, request_id, context)
        ) as ev:
            async for event in ev:
                if isinstance(event, types.FinalEvent):
                    final = event
        assert final is not None  # _events aborts the call when no final event came
        return runtime_pb2.GenerateResponse(
            request_id=request_id,
            text=final.text,
            finish_reason=_FINISH[final.finish_reason],
            prompt_tokens=final.prompt_tokens,
            completion_tokens=final.completion_tokens,
        )

    async def GenerateStream(  # type: ignore[override]  # noqa: N802  (writes via context)
        self, request: runtime_pb2.GenerateRequest, context: _StreamContext
    ) -> None:
        """Writes through `context.write` rather than yielding, so that a cancellation always
        lands inside this coroutine and `aclosing` closes the engine iterator at once."""
        request_id = request.request_id or uuid.uuid4().hex
        method = "GenerateStream"
        async with contextlib.aclosing(self._events(method, request, request_id, context)) as ev:
            async for event in ev:
                await context.write(_stream_message(event, request_id))

    async def ModelInfo(  # noqa: N802  (gRPC method name)
        self, request: runtime_pb2.ModelInfoRequest, context: _InfoContext
    ) -> runtime_pb2.ModelInfoResponse:
        try:
            serving = self._state.check()
        except types.RuntimeError_ as exc:
            await context.abort(*status_for(exc))
        return info_to_proto(serving.info)

    async def _events(
        self,
        method: str,
        request: runtime_pb2.GenerateRequest,
        request_id: str,
        context: _AnyContext,
    ) -> AsyncGenerator[types.GenerationEvent, None]:
        """Run one request through the engine, yielding its events; the only error mapping."""
        clock = metrics.RequestClock(method)
        outcome = _Outcome()
        serving: Serving | None = None
        code = grpc.StatusCode.OK
        try:
            serving = self._state.acquire()
            context.set_trailing_metadata(((contract.METADATA_REVISION, serving.info.revision),))
            domain = to_domain(request, info=serving.info, request_id=request_id)
            async with _closing(serving.engine.generate(domain)) as events:
                async for event in events:
                    _account(event, outcome, clock)
                    yield event
            if outcome.final is None:
                raise types.RuntimeError_("the engine ended a request without a final event")
        except (asyncio.CancelledError, GeneratorExit):
            # GeneratorExit: the stream's consumer was cancelled while we were suspended at `yield`.
            code = cancel_code(context.time_remaining())
            raise
        except Exception as exc:
            code, message = status_for(exc)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("request %s failed", log_safe(request_id))
            await context.abort(code, message)
        finally:
            if serving is not None:
                self._state.release()
            self._record(self._state.serving, clock, code, outcome, request_id, request)

    def _record(
        self,
        serving: Serving | None,
        clock: metrics.RequestClock,
        code: grpc.StatusCode,
        outcome: _Outcome,
        request_id: str,
        request: runtime_pb2.GenerateRequest,
    ) -> None:
        if serving is not None:
            serving.metrics.finish(
                clock,
                code=code.name,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
            )
        reason = outcome.final.finish_reason.value if outcome.final else "-"
        request_id = log_safe(request_id)
        log.info(
            "request %s %s code=%s finish=%s prompt_tokens=%d completion_tokens=%d",
            request_id,
            clock.method,
            code.name,
            reason,
            outcome.prompt_tokens,
            outcome.completion_tokens,
        )
        if self._log_payloads:
            text = outcome.final.text if outcome.final else ""
            log.info("request %s payload prompt=%r text=%r", request_id, _prompt_of(request), text)


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[_T]) -> AsyncIterator[AsyncIterator[_T]]:
    """Like `contextlib.aclosing` for any async iterator: the Engine protocol promises only
    `AsyncIterator`, and closing it is what frees the request's slot."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def log_safe(request_id: str) -> str:
    """A request id as it may appear in a log line, even when the client sent a bad one."""
    return re.sub(r"[^\x21-\x7e]", "?", request_id[:MAX_REQUEST_ID_LENGTH])


def _account(event: types.GenerationEvent, outcome: _Outcome, clock: metrics.RequestClock) -> None:
    """Fold one engine event into the request's counts and clock."""
    if isinstance(event, types.TokenEvent):
        if event.token_ids:
            clock.token()
            outcome.completion_tokens += len(event.token_ids)
        return
    outcome.final = event
    outcome.prompt_tokens = event.prompt_tokens
    outcome.completion_tokens = event.completion_tokens


def _stream_message(
    event: types.GenerationEvent, request_id: str
) -> runtime_pb2.GenerateStreamResponse:
    if isinstance(event, types.TokenEvent):
        return runtime_pb2.GenerateStreamResponse(
            request_id=request_id, text=event.text, token_ids=list(event.token_ids)
        )
    return runtime_pb2.GenerateStreamResponse(
        request_id=request_id,
        finish_reason=_FINISH[event.finish_reason],
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
    )


def _prompt_of(request: runtime_pb2.GenerateRequest) -> str | list[tuple[str, str]]:
    return request.prompt or [(m.role, m.content) for m in request.messages]
