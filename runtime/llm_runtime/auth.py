"""Bearer-token auth for the Runtime service (`authorization: Bearer <token>` metadata).

The token comes from a file (a mounted Secret) and is compared with `hmac.compare_digest`, so the
time a wrong guess takes says nothing about the right one. Health and reflection stay open: the
kubelet's gRPC probes carry no metadata, and neither reveals anything a client could misuse
(reflection lists the service schema, which is public in the repository anyway).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

# RPC paths that never need a token: the probes and schema discovery.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

if TYPE_CHECKING:  # generic in grpc-stubs only; the runtime class is not subscriptable
    _Interceptor = aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = aio.ServerInterceptor


def is_open(method: str) -> bool:
    return method.startswith(OPEN_PREFIXES)


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> bytes | None:
    """The token of the first `authorization: Bearer ...` entry, or None."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        raw = value if isinstance(value, bytes) else value.encode()
        scheme, _, token = raw.partition(b" ")
        if scheme.lower() == b"bearer" and token.strip():
            return token.strip()
    return None


def authorized(metadata: Sequence[tuple[str, str | bytes]] | None, *, token: bytes) -> bool:
    presented = bearer_token(metadata)
    return presented is not None and hmac.compare_digest(presented, token)


def _method_name(path: str) -> str:
    """'/llm.runtime.v1.Runtime/Generate' -> 'Generate' (the metrics' method label)."""
    return path.rsplit("/", 1)[-1]


class BearerTokenInterceptor(_Interceptor):
    """Refuses calls without the right token with UNAUTHENTICATED before they reach a handler."""

    def __init__(self, token: bytes, *, on_denied: Callable[[str], None] | None = None) -> None:
        self._token = token
        self._on_denied = on_denied

        async def deny(request: object, context: aio.ServicerContext[object, object]) -> None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (authorization)"
            )

        # grpc's own auth example answers every refused method with one unary handler: the
        # client only sees the status, which a stream method's client reads the same way.
        self._deny: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method: str = handler_call_details.method
        if is_open(method) or authorized(
            handler_call_details.invocation_metadata, token=self._token
        ):
            return await continuation(handler_call_details)
        if self._on_denied is not None:
            self._on_denied(_method_name(method))
        return self._deny
