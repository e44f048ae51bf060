"""Bearer-token checks (pure); the interceptor itself is exercised over gRPC elsewhere."""

from __future__ import annotations

import pytest
from llm_runtime import auth

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ([("authorization", "Bearer abc")], b"abc"),
        ([("authorization", "bearer abc ")], b"abc"),
        ([("x-other", "1"), ("authorization", b"Bearer abc")], b"abc"),
        ([("authorization", "Basic abc")], None),
        ([("authorization", "Bearer ")], None),
        ([], None),
        (None, None),
    ],
)
def test_bearer_token_parsing(metadata: list[tuple[str, str | bytes]] | None, token: bytes) -> None:
    assert auth.bearer_token(metadata) == token


def test_only_the_exact_token_is_authorized() -> None:
    assert auth.authorized([("authorization", "Bearer abc")], token=b"abc")
    assert not auth.authorized([("authorization", "Bearer abcd")], token=b"abc")
    assert not auth.authorized([("authorization", "Bearer ab")], token=b"abc")
    assert not auth.authorized([], token=b"abc")


def test_probes_and_reflection_stay_open_and_the_runtime_does_not() -> None:
    assert auth.is_open("/grpc.health.v1.Health/Check")
    assert auth.is_open("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert not auth.is_open("/llm.runtime.v1.Runtime/Generate")
    assert not auth.is_open("/llm.runtime.v1.Runtime/ModelInfo")
