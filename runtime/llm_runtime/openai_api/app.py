"""The OpenAI-compatible HTTP edge: a Starlette app over the same `ServingState` as gRPC.

JSON in, `types.GenerationRequest` to the engine, JSON or Server-Sent Events out; it mirrors
`servicer.RuntimeServicer`: the same serving state (so a drain refuses HTTP calls too and waits
for the ones in flight), the same bearer token, the same request metrics and log line (never the
prompt or the output unless `log_payloads`), and one loop (`_events`) that drives the engine and
closes its iterator whatever happens, so a client that goes away frees its batch slot at once.

A request is refused with a status code as long as the engine has not produced a first event
(the engine raises every admission error before that), so streaming responses start only once
the first token exists; what fails later is sent as an error event in the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TypeVar

from starlette import applications, exceptions, requests, responses, routing
from starlette import types as asgi

from llm_runtime import auth, config, metrics, servicer, types
from llm_runtime.api import contract
from llm_runtime.openai_api import errors, render, schema, sse

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# The largest body read: gRPC's default message bound (4 MiB) and room for the JSON around it.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024 + 64 * 1024
REQUEST_ID_HEADER = contract.HEADER_REQUEST_ID


@dataclasses.dataclass(frozen=True)
class Options:
    """What the app needs from the settings, read once (the token file at start)."""

    token: bytes | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    log_payloads: bool = False


def options_from(
    settings: config.Settings, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Options:
    token = (
        None if settings.auth_token_file is None else config.read_token(settings.auth_token_file)
    )
    return Options(token=token, max_body_bytes=max_body_bytes, log_payloads=settings.log_payloads)


@dataclasses.dataclass
class _Call:
    """One generation request's bookkeeping, recorded once when it ends."""

    clock: metrics.RequestClock
    request_id: str
    code: str = "OK"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    final: types.FinalEvent | None = None
    prompt: object = None  # only kept with log_payloads

    def account(self, event: types.GenerationEvent) -> None:
        if isinstance(event, types.TokenEvent):
            if event.token_ids:
                self.clock.token()
                self.completion_tokens += len(event.token_ids)
            return
        self.final = event
        self.prompt_tokens = event.prompt_tokens
        self.completion_tokens = event.completion_tokens


def request_id_of(request: requests.Request) -> str:
    """The client's `x-request-id` when it is a valid id (as on gRPC), else a new one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    valid = given and servicer.log_safe(given) == given  # printable, no spaces, not too long
    return given if valid else uuid.uuid4().hex


def error_response(err: errors.ApiError) -> responses.JSONResponse:
    headers = {"www-authenticate": "Bearer"} if err.status == 401 else None
    return responses.JSONResponse(err.body(), status_code=err.status, headers=headers)


class _Api:
    def __init__(self, state: servicer.ServingState, options: Options) -> None:
        self._state = state
        self._options = options
        self._created = int(time.time())  # /v1/models' `created`: when this server started

    async def models(self, request: requests.Request) -> responses.Response:
        try:
            self._authorize(request)
            serving = self._state.check()
        except Exception as exc:
            return error_response(errors.from_domain(exc, renames={}))
        return responses.JSONResponse(render.models(serving.info.name, created=self._created))

    async def chat(self, request: requests.Request) -> responses.Response:
        return await self._generate(request, schema.ChatCompletionRequest, render.CHAT)

    async def completions(self, request: requests.Request) -> responses.Response:
        return await self._generate(request, schema.CompletionRequest, render.TEXT)

    def _authorize(self, request: requests.Request) -> None:
        token = self._options.token
        header = request.headers.get("authorization")
        metadata = [] if header is None else [("authorization", header)]
        if token is not None and not auth.authorized(metadata, token=token):
            raise errors.unauthorized()

    async def _generate(
        self,
        request: requests.Request,
        model: type[schema.AnyRequest],
        flavor: render.Flavor,
    ) -> responses.Response:
        call = _Call(metrics.RequestClock(flavor.method), request_id_of(request))
        try:
            self._authorize(request)
            body = await read_body(request, limit=self._options.max_body_bytes)
            parsed = schema.parse(model, body)
        except errors.ApiError as err:
            call.code = err.grpc_code
            self._record(call)
            return error_response(err)
        events = self._events(call, parsed)
        try:
            first = await until_disconnect(request, anext(events))
        except errors.ApiError as err:
            return error_response(err)  # `_events` recorded it
        if first is None:
            return responses.Response(status_code=499)  # nobody reads it: the client left
        serving = self._state.serving
        assert serving is not None  # `_events` yielded, so the model is served
        reply = render.new_reply(flavor, model=serving.info.name)
        headers = {
            REQUEST_ID_HEADER: call.request_id,
            contract.METADATA_REVISION: serving.info.revision,
        }
        if parsed.stream:
            chunks = _sse(reply, first, events, with_usage=parsed.include_usage)
            return SSEResponse(chunks, headers=headers)
        return await _complete(request, reply, first, events, headers=headers)

    async def _events(
        self, call: _Call, parsed: schema.AnyRequest
    ) -> AsyncGenerator[types.GenerationEvent, None]:
        """Run one request through the engine, yielding its events; the only error mapping."""
        serving: servicer.Serving | None = None
        try:
            serving = self._state.acquire()
            if parsed.model != serving.info.name:
                raise errors.model_not_found(parsed.model, served=serving.info.name)
            domain = schema.to_domain(parsed, info=serving.info, request_id=call.request_id)
            if self._options.log_payloads:
                call.prompt = domain.prompt or [(m.role, m.content) for m in domain.messages]
            async with _closing(serving.engine.generate(domain)) as engine_events:
                async for event in engine_events:
                    call.account(event)
                    if isinstance(event, types.FinalEvent) and event.finish_reason not in (
                        render.FINISH_REASONS
                    ):
                        raise errors.cancelled()
                    yield event
            if call.final is None:
                raise types.RuntimeError_("the engine ended a request without a final event")
        except (asyncio.CancelledError, GeneratorExit):
            if call.final is None:  # closed after the final event: the answer was complete
                call.code = "CANCELLED"  # the client went away (or the server stopped the call)
            raise
        except Exception as exc:
            err = errors.from_domain(exc, renames=schema.renames(parsed))
            if err.status == 500 and not isinstance(exc, types.NumericalError):
                log.exception("request %s failed", servicer.log_safe(call.request_id))
            call.code = err.grpc_code
            raise err from None
        finally:
            if serving is not None:
                self._state.release()
            self._record(call)

    def _record(self, call: _Call) -> None:
        serving = self._state.serving
        if serving is not None:
            serving.metrics.finish(
                call.clock,
                code=call.code,
                prompt_tokens=call.prompt_tokens,
                completion_tokens=call.completion_tokens,
            )
        reason = call.final.finish_reason.value if call.final else "-"
        request_id = servicer.log_safe(call.request_id)
        log.info(
            "request %s %s code=%s finish=%s prompt_tokens=%d completion_tokens=%d (http)",
            request_id,
            call.clock.method,
            call.code,
            reason,
            call.prompt_tokens,
            call.completion_tokens,
        )
        if self._options.log_payloads:
            text = call.final.text if call.final else ""
            log.info("request %s payload prompt=%r text=%r", request_id, call.prompt, text)


async def read_body(request: requests.Request, *, limit: int) -> bytes:
    """The body, refused (413) as soon as it grows past `limit`, before it is parsed."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise errors.too_large(limit)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise errors.too_large(limit)
    return bytes(body)


async def _disconnected(receive: Callable[[], Awaitable[object]]) -> None:
    """Return once the client has gone away (the body is read, so only that message is left)."""
    while True:
        message = await receive()
        if isinstance(message, dict) and message.get("type") == "http.disconnect":
            return


async def until_disconnect(request: requests.Request, work: Awaitable[_T]) -> _T | None:
    """`work`'s result, or None when the client disconnects first (then `work` is cancelled, which
    closes the engine's iterator: a request nobody waits for gives its slot back)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return None if task.cancelled() else task.result()


async def _last(
    first: types.GenerationEvent, events: AsyncIterator[types.GenerationEvent]
) -> types.FinalEvent:
    event = first
    while not isinstance(event, types.FinalEvent):
        event = await anext(events)
    return event


async def _complete(
    request: requests.Request,
    reply: render.Reply,
    first: types.GenerationEvent,
    events: AsyncGenerator[types.GenerationEvent, None],
    *,
    headers: dict[str, str],
) -> responses.Response:
    """A whole, non-streamed response; the generation stops if the client leaves meanwhile."""
    async with contextlib.aclosing(events):
        try:
            final = await until_disconnect(request, _last(first, events))
        except errors.ApiError as err:
            return error_response(err)
    if final is None:
        return responses.Response(status_code=499)
    return responses.JSONResponse(render.completion(reply, final), headers=headers)


async def _sse(
    reply: render.Reply,
    first: types.GenerationEvent,
    events: AsyncGenerator[types.GenerationEvent, None],
    *,
    with_usage: bool,
) -> AsyncGenerator[bytes, None]:
    """The stream's events, each written as soon as the engine produced its text."""
    async with contextlib.aclosing(events):
        if reply.flavor.opening is not None:
            yield sse.event(render.chunk(reply, reply.flavor.opening, with_usage=with_usage))
        try:
            event = first
            while isinstance(event, types.TokenEvent):
                if event.text:
                    yield sse.event(render.text_chunk(reply, event.text, with_usage=with_usage))
                event = await anext(events)
        except errors.ApiError as err:
            yield sse.event(err.body())
            return
        yield sse.event(render.final_chunk(reply, event, with_usage=with_usage))
        if with_usage:
            yield sse.event(render.usage_chunk(reply, event))
        yield sse.DONE


class SSEResponse(responses.StreamingResponse):
    """A StreamingResponse that closes its generator when the stream ends for any reason (a
    disconnect cancels it mid-way), so the engine's iterator inside is closed at once."""

    def __init__(self, chunks: AsyncGenerator[bytes, None], *, headers: dict[str, str]) -> None:
        super().__init__(chunks, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS | headers)
        self._chunks = chunks

    async def stream_response(self, send: asgi.Send) -> None:
        async with contextlib.aclosing(self._chunks):
            await super().stream_response(send)


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[_T]) -> AsyncIterator[AsyncIterator[_T]]:
    """Close any async iterator on exit: the Engine protocol promises only `AsyncIterator`, and
    closing it is what frees the request's slot (as `servicer` does)."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def _http_error(request: requests.Request, exc: Exception) -> responses.Response:
    """Starlette's own refusals (no such route, wrong method) in OpenAI's shape."""
    status = exc.status_code if isinstance(exc, exceptions.HTTPException) else 500
    if status == 404:
        return error_response(errors.not_found(request.url.path))
    kind = "invalid_request_error" if status < 500 else "server_error"
    detail = exc.detail if isinstance(exc, exceptions.HTTPException) else "internal error"
    return error_response(errors.ApiError(status, str(detail), kind, "INTERNAL"))


def build_app(
    state: servicer.ServingState,
    settings: config.Settings,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> applications.Starlette:
    """The ASGI app serving `state` (the gRPC server's), with the settings' token."""
    return app_for(state, options_from(settings, max_body_bytes=max_body_bytes))


def app_for(state: servicer.ServingState, options: Options) -> applications.Starlette:
    api = _Api(state, options)
    routes = [
        routing.Route("/v1/chat/completions", api.chat, methods=["POST"]),
        routing.Route("/v1/completions", api.completions, methods=["POST"]),
        routing.Route("/v1/models", api.models, methods=["GET"]),
    ]
    handlers = {exceptions.HTTPException: _http_error, Exception: _http_error}
    return applications.Starlette(routes=routes, exception_handlers=handlers)
