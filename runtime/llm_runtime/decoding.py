"""Requests whose bytes do not parse get INVALID_ARGUMENT naming the problem, not gRPC's UNKNOWN.

grpcio turns an exception in a request deserializer into UNKNOWN ("Exception deserializing
request"), which tells a client nothing and counts as a server error. Here the deserializer never
raises: it hands the method an `Undecodable`, and the guarded method refuses it with the parse
error, before any work. The handlers are otherwise the generated ones
(`runtime_pb2_grpc.add_RuntimeServicer_to_server`): same method names, same serializers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from llm_runtime.api.v1 import runtime_pb2 as pb

SERVICE = "llm.runtime.v1.Runtime"
_M = TypeVar("_M")


@dataclasses.dataclass(frozen=True)
class Undecodable:
    """What a request that did not parse becomes, with the parser's reason."""

    error: str


def tolerant(parse: Callable[[bytes], _M]) -> Callable[[bytes], _M | Undecodable]:
    """Pure: `parse`, returning Undecodable instead of raising."""

    def run(data: bytes) -> _M | Undecodable:
        try:
            return parse(data)
        except (DecodeError, ValueError, RuntimeError) as e:  # protobuf's C and Python parsers
            return Undecodable(str(e) or type(e).__name__)

    return run


def guarded(
    method: Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]],
) -> Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]]:
    """`method`, refusing an Undecodable request with INVALID_ARGUMENT first."""

    async def call(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {SERVICE} message: {request.error}",
            )
        return await method(request, context)

    return call


def add_runtime_servicer(servicer: Any, server: aio.Server) -> None:
    """Registers the Runtime service's three methods with tolerant deserializers."""
    handlers = {
        "Generate": grpc.unary_unary_rpc_method_handler(
            guarded(servicer.Generate),
            request_deserializer=tolerant(pb.GenerateRequest.FromString),
            response_serializer=pb.GenerateResponse.SerializeToString,
        ),
        "GenerateStream": grpc.unary_stream_rpc_method_handler(
            guarded(servicer.GenerateStream),
            request_deserializer=tolerant(pb.GenerateRequest.FromString),
            response_serializer=pb.GenerateStreamResponse.SerializeToString,
        ),
        "ModelInfo": grpc.unary_unary_rpc_method_handler(
            guarded(servicer.ModelInfo),
            request_deserializer=tolerant(pb.ModelInfoRequest.FromString),
            response_serializer=pb.ModelInfoResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)  # type: ignore[attr-defined]  # stubs lag
