"""Errors in OpenAI's JSON shape, and the one mapping from the runtime's domain errors to them.

An OpenAI client reads the HTTP status (its SDK raises `BadRequestError` for 400,
`AuthenticationError` for 401, ...) and the body `{"error": {"message", "type", "param", "code"}}`.
Each `ApiError` also carries the gRPC status name the same failure gets on the gRPC port, so the
request metrics (and the canary analysis that reads them) classify both protocols alike.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import pydantic

from llm_runtime import servicer, types


@dataclasses.dataclass(frozen=True)
class ApiError(Exception):
    """One refused or failed request, as the client will see it."""

    status: int
    message: str
    type: str
    grpc_code: str  # the metrics' `code` label, as on the gRPC port
    param: str | None = None
    code: str | None = None

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid(message: str, *, param: str | None = None) -> ApiError:
    """400: the request itself is wrong; `param` names the field to fix."""
    return ApiError(400, message, "invalid_request_error", "INVALID_ARGUMENT", param=param)


def unauthorized() -> ApiError:
    return ApiError(
        401,
        "missing or wrong bearer token (Authorization: Bearer ...)",
        "authentication_error",
        "UNAUTHENTICATED",
        code="invalid_api_key",
    )


def model_not_found(model: str, *, served: str) -> ApiError:
    return ApiError(
        404,
        f"the model {model!r} does not exist; this server serves {served!r}",
        "invalid_request_error",
        "NOT_FOUND",
        param="model",
        code="model_not_found",
    )


def not_found(path: str) -> ApiError:
    return ApiError(404, f"no route {path}", "invalid_request_error", "NOT_FOUND")


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is larger than {limit} bytes",
        "invalid_request_error",
        "INVALID_ARGUMENT",
    )


def cancelled() -> ApiError:
    """The engine ended the request itself (the server stopped while it ran)."""
    return ApiError(
        503, "the request was cancelled: the server is shutting down", "server_error",
        "UNAVAILABLE", code="cancelled",
    )  # fmt: skip


def internal() -> ApiError:
    """500 with a generic message: an unexpected error's text may contain the prompt."""
    return ApiError(500, "internal error; see the server log", "server_error", "INTERNAL")


# The engine's messages start with the field they refuse (see `engine.limits`).
ENGINE_FIELDS = frozenset(
    {"max_new_tokens", "temperature", "top_p", "top_k", "seed", "stop", "prompt", "messages"}
)
_FIRST_WORD = re.compile(r"^([a-z_]+)\b")


def param_of(message: str, renames: Mapping[str, str]) -> tuple[str | None, str]:
    """The OpenAI parameter an engine message is about, and the message in OpenAI's names:
    `max_new_tokens must be ...` is about `max_tokens` when the client set `max_tokens`."""
    for old, new in renames.items():
        message = re.sub(rf"\b{re.escape(old)}\b", new, message)
    match = _FIRST_WORD.match(message)
    fields = ENGINE_FIELDS | set(renames.values())
    return (match.group(1) if match and match.group(1) in fields else None), message


def from_domain(exc: BaseException, *, renames: Mapping[str, str]) -> ApiError:
    """The HTTP error for an exception raised while serving a request (`servicer.status_for`'s
    HTTP twin): a domain error keeps its message, anything else becomes a generic 500."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, types.InvalidRequestError):
        param, message = param_of(str(exc), renames)
        return invalid(message, param=param)
    if isinstance(exc, types.QueueFullError):
        message = str(exc) or "the waiting queue is full"
        return ApiError(429, message, "rate_limit_error", "RESOURCE_EXHAUSTED", code="queue_full")
    if isinstance(exc, types.DrainingError):
        message = str(exc) or "the server is shutting down"
        return ApiError(503, message, "server_error", "UNAVAILABLE", code="draining")
    if isinstance(exc, servicer.NotReadyError):
        message = str(exc) or "the model is not loaded yet"
        return ApiError(503, message, "server_error", "UNAVAILABLE", code="not_ready")
    if isinstance(exc, types.NumericalError):
        return ApiError(500, str(exc), "server_error", "INTERNAL")
    return internal()


def _location(loc: tuple[int | str, ...]) -> str | None:
    """pydantic's ('messages', 0, 'content') -> 'messages[0].content'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or None


def from_validation(exc: pydantic.ValidationError) -> ApiError:
    """400 naming the first field pydantic refused (a body that is not JSON names none)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    if first["type"] == "json_invalid":
        return invalid("the request body is not valid JSON")
    loc = tuple(p for p in first["loc"] if not _is_union_tag(p))
    param = _location(loc)
    return invalid(f"{param or 'body'}: {first['msg']}", param=param)


def _is_union_tag(part: int | str) -> bool:
    """pydantic adds the union member it tried to a location ('stop', 'str'); drop it."""
    return isinstance(part, str) and (part in {"str", "int", "float", "bool"} or "[" in part)
