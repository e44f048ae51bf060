"""The pure parts of the OpenAI API: parsing and defaults, the error mapping, the chunks."""

from __future__ import annotations

from typing import Any

import pytest
from llm_runtime import servicer, types
from llm_runtime.openai_api import errors, render, schema

pytestmark = pytest.mark.unit

INFO = types.ModelInfo(
    name="m", revision="r", dtype="float32", device="cpu", context_length=512,
    max_batch_size=4, max_waiting=4, max_input_tokens=256, max_new_tokens=64,
)  # fmt: skip


def _chat(**fields: Any) -> schema.AnyRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return schema.parse(schema.ChatCompletionRequest, _json(body))


def _json(body: dict[str, Any]) -> bytes:
    import json

    return json.dumps(body).encode()


def test_unset_fields_get_openai_defaults_within_the_server_limits() -> None:
    domain = schema.to_domain(_chat(), info=INFO, request_id="r1")
    assert domain.prompt is None
    assert domain.messages == (types.ChatMessage("user", "hi"),)
    assert domain.sampling == types.SamplingParams(
        max_new_tokens=64, temperature=1.0, top_p=1.0, top_k=0, seed=None, stop=()
    )


def test_parameters_reach_the_engine_and_max_completion_tokens_wins() -> None:
    request = _chat(
        max_tokens=9, max_completion_tokens=5, temperature=0, top_p=0.5, seed=3, stop="\n"
    )
    sampling = schema.to_domain(request, info=INFO, request_id="r").sampling
    assert (sampling.max_new_tokens, sampling.temperature, sampling.top_p) == (5, 0.0, 0.5)
    assert (sampling.seed, sampling.stop) == (3, ("\n",))
    assert schema.renames(request) == {
        "max_new_tokens": "max_completion_tokens",
        "prompt": "messages",
    }


def test_text_content_parts_are_joined() -> None:
    parts = [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}]
    request = _chat(messages=[{"role": "user", "content": parts}])
    domain = schema.to_domain(request, info=INFO, request_id="r")
    assert domain.messages[0].content == "Hello, world"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
    ],
)
def test_what_the_server_cannot_honour_is_refused_by_name(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(errors.ApiError) as info:
        schema.to_domain(_chat(**fields), info=INFO, request_id="r")
    assert (info.value.status, info.value.param) == (400, param)


def test_neutral_values_of_unsupported_fields_and_unknown_fields_are_accepted() -> None:
    request = _chat(n=1, logprobs=False, presence_penalty=0, tool_choice="auto", user="u-1")
    assert schema.to_domain(request, info=INFO, request_id="r").sampling.max_new_tokens == 64


def test_engine_messages_are_renamed_to_the_parameters_the_client_sent() -> None:
    renames = {"max_new_tokens": "max_tokens", "prompt": "messages"}
    exc = types.InvalidRequestError("max_new_tokens must be in [1, 64], got 0")
    err = errors.from_domain(exc, renames=renames)
    assert (err.status, err.param, err.message) == (
        400,
        "max_tokens",
        exc.args[0].replace("max_new_tokens", "max_tokens"),
    )
    size = errors.from_domain(
        types.InvalidRequestError("prompt is 9 bytes, more than max_prompt_bytes (8)"),
        renames=renames,
    )
    assert size.param == "messages"
    assert "max_prompt_bytes" in size.message  # a setting's name is left alone
    neither = errors.from_domain(
        types.InvalidRequestError("set either prompt or messages"), renames={}
    )
    assert neither.param is None


@pytest.mark.parametrize(
    ("exc", "status", "grpc_code"),
    [
        (types.QueueFullError(), 429, "RESOURCE_EXHAUSTED"),
        (types.DrainingError(), 503, "UNAVAILABLE"),
        (servicer.NotReadyError(), 503, "UNAVAILABLE"),
        (types.NumericalError("logits were not finite"), 500, "INTERNAL"),
    ],
)
def test_domain_errors_map_to_the_http_status_and_the_grpc_code(
    exc: Exception, status: int, grpc_code: str
) -> None:
    err = errors.from_domain(exc, renames={})
    assert (err.status, err.grpc_code) == (status, grpc_code)
    assert err.message


def test_an_unexpected_error_is_a_500_that_hides_its_text() -> None:
    err = errors.from_domain(ValueError("the prompt was: my secret"), renames={})
    assert err.status == 500
    assert "secret" not in str(err.body())


def test_a_stream_has_the_role_then_text_then_the_finish_then_usage() -> None:
    reply = render.Reply(render.CHAT, "chatcmpl-1", 1, "m")
    final = types.FinalEvent(
        types.FinishReason.STOP, prompt_tokens=3, completion_tokens=2, text="ab"
    )
    assert render.chunk(reply, render.CHAT.opening or {}, with_usage=True)["usage"] is None
    assert render.text_chunk(reply, "ab", with_usage=False)["choices"][0]["delta"] == {
        "content": "ab"
    }
    end = render.final_chunk(reply, final, with_usage=False)["choices"][0]
    assert (end["delta"], end["finish_reason"]) == ({}, "stop")
    last = render.usage_chunk(reply, final)
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    whole = render.completion(render.Reply(render.TEXT, "cmpl-1", 1, "m"), final)
    assert whole["choices"][0]["text"] == "ab"
    assert whole["object"] == "text_completion"
