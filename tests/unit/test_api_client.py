"""The client's pure helpers: building requests and folding responses."""

from __future__ import annotations

import pytest
from llm_runtime.api import client
from llm_runtime.api.v1 import runtime_pb2

pytestmark = pytest.mark.unit


def test_unset_sampling_fields_stay_unset_so_the_server_applies_its_defaults() -> None:
    req = client.build_request("hi")
    assert req.prompt == "hi"
    for field in ("max_new_tokens", "temperature", "top_p", "top_k", "seed"):
        assert not req.HasField(field), field


def test_zero_values_are_sent_as_set_fields() -> None:
    req = client.build_request(
        messages=[("user", "hi")], temperature=0.0, top_k=0, seed=0, stop=["\n"]
    )
    assert req.HasField("temperature") and req.temperature == 0.0
    assert req.HasField("seed") and req.seed == 0
    assert [(m.role, m.content) for m in req.messages] == [("user", "hi")]
    assert list(req.stop) == ["\n"]


def test_a_stream_folds_into_the_same_completion_as_the_unary_call() -> None:
    chunks = [
        runtime_pb2.GenerateStreamResponse(request_id="r", text="Par", token_ids=[1]),
        runtime_pb2.GenerateStreamResponse(request_id="r", text="is", token_ids=[2]),
        runtime_pb2.GenerateStreamResponse(
            request_id="r",
            finish_reason=runtime_pb2.FINISH_REASON_STOP,
            prompt_tokens=7,
            completion_tokens=2,
        ),
    ]
    unary = runtime_pb2.GenerateResponse(
        request_id="r",
        text="Paris",
        finish_reason=runtime_pb2.FINISH_REASON_STOP,
        prompt_tokens=7,
        completion_tokens=2,
    )
    expected = client.Completion("r", "Paris", "stop", 7, 2)
    assert client.completion_from_stream(chunks) == expected
    assert client.completion_from_response(unary) == expected


def test_an_empty_stream_is_an_error_not_an_empty_completion() -> None:
    with pytest.raises(ValueError, match="final message"):
        client.completion_from_stream([])
