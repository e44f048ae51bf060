"""The edge's pure decisions: error -> status code, cancel -> code, protobuf -> domain request."""

from __future__ import annotations

import grpc
import pytest
from llm_runtime import servicer, types
from llm_runtime.api import client

pytestmark = pytest.mark.unit

INFO = types.ModelInfo(
    name="m",
    revision="r",
    dtype="bfloat16",
    device="cpu",
    context_length=512,
    max_batch_size=4,
    max_waiting=4,
    max_input_tokens=256,
    max_new_tokens=64,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (types.InvalidRequestError("top_p must be in (0, 1]"), grpc.StatusCode.INVALID_ARGUMENT),
        (types.QueueFullError("full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (types.DrainingError("bye"), grpc.StatusCode.UNAVAILABLE),
        (servicer.NotReadyError("loading"), grpc.StatusCode.UNAVAILABLE),
        (types.RuntimeError_("engine bug"), grpc.StatusCode.INTERNAL),
        (ValueError("prompt text in a message"), grpc.StatusCode.INTERNAL),
    ],
)
def test_each_domain_error_maps_to_one_status_code(error: Exception, code: grpc.StatusCode) -> None:
    assert servicer.status_for(error)[0] == code


def test_client_mistakes_keep_their_message_and_internal_errors_hide_theirs() -> None:
    assert servicer.status_for(types.InvalidRequestError("top_k must be >= 0"))[1] == (
        "top_k must be >= 0"
    )
    _, message = servicer.status_for(ValueError("secret prompt"))
    assert "secret" not in message


@pytest.mark.parametrize(
    ("remaining", "code"),
    [
        (None, grpc.StatusCode.CANCELLED),  # no deadline: the client went away
        (3.0, grpc.StatusCode.CANCELLED),
        (0.0, grpc.StatusCode.DEADLINE_EXCEEDED),
        (-0.2, grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_a_cancelled_call_is_attributed_to_its_deadline_or_its_client(
    remaining: float | None, code: grpc.StatusCode
) -> None:
    assert servicer.cancel_code(remaining) == code


def test_unset_sampling_fields_get_the_defaults_and_a_capped_length() -> None:
    request = servicer.to_domain(client.build_request("hi"), info=INFO, request_id="r1")
    assert request.prompt == "hi"
    assert request.messages == ()
    assert request.sampling == types.SamplingParams(max_new_tokens=64)  # min(128, limit)


def test_set_fields_pass_through_for_the_engine_to_check() -> None:
    msg = client.build_request(
        messages=[("user", "hi")], max_new_tokens=0, temperature=0.5, top_p=0.75, top_k=5,
        seed=7, stop=["\n"],
    )  # fmt: skip
    request = servicer.to_domain(msg, info=INFO, request_id="r1")
    assert request.prompt is None
    assert request.messages == (types.ChatMessage(role="user", content="hi"),)
    assert request.sampling == types.SamplingParams(
        max_new_tokens=0, temperature=0.5, top_p=0.75, top_k=5, seed=7, stop=("\n",)
    )


@pytest.mark.parametrize("request_id", ["", "a b", "x" * 129, "line\nbreak", "ünï"])
def test_request_ids_that_could_forge_log_lines_are_invalid(request_id: str) -> None:
    with pytest.raises(types.InvalidRequestError, match="request_id"):
        servicer.to_domain(client.build_request("hi"), info=INFO, request_id=request_id)
    assert "\n" not in servicer.log_safe(request_id)
    assert len(servicer.log_safe(request_id)) <= servicer.MAX_REQUEST_ID_LENGTH


def test_serving_state_counts_calls_and_refuses_while_loading_or_draining() -> None:
    state = servicer.ServingState()
    with pytest.raises(servicer.NotReadyError):
        state.acquire()
    assert state.in_flight == 0
    state.serving = servicer.Serving(engine=None, metrics=None, info=INFO)  # type: ignore[arg-type]
    state.acquire()
    assert state.in_flight == 1
    state.draining = True
    with pytest.raises(types.DrainingError):
        state.acquire()
    state.release()
    assert state.in_flight == 0
