"""An HTTP smoke prompt, the pure parts: the chat completion it sends (the gRPC smoke request's
twin) and how a reply becomes a text or an error, plus where the operator sends it."""

from __future__ import annotations

import json

import pytest
from llm_operator import podclient, spec, windows
from llm_runtime.api import contract

pytestmark = pytest.mark.unit

PARIS = spec.SmokePrompt(prompt="What is the capital of France?", expect="(?i)paris")
HTTP = PARIS.model_copy(update={"protocol": spec.SmokeProtocol.HTTP})


def _split(request: bytes) -> tuple[list[str], bytes]:
    head, _, body = request.partition(b"\r\n\r\n")
    return head.decode("latin-1").split("\r\n"), body


def test_a_smoke_prompt_goes_over_grpc_unless_it_says_http() -> None:
    assert PARIS.protocol is spec.SmokeProtocol.GRPC
    parsed = spec.SmokePrompt.model_validate({"prompt": "p", "expect": "x", "protocol": "http"})
    assert parsed.protocol is spec.SmokeProtocol.HTTP
    assert {p.value for p in spec.SmokeProtocol} == {contract.PROTOCOL_GRPC, contract.PROTOCOL_HTTP}
    with pytest.raises(ValueError, match="protocol"):
        spec.SmokePrompt.model_validate({"prompt": "p", "expect": "x", "protocol": "https"})


def test_the_chat_completion_asks_what_the_grpc_request_asks() -> None:
    body = podclient.chat_body(HTTP, model="chat-model")
    grpc = podclient.smoke_request(PARIS)
    assert body["model"] == "chat-model"
    assert body["messages"] == [{"role": m.role, "content": m.content} for m in grpc.messages]
    assert (body["temperature"], body["max_tokens"]) == (grpc.temperature, grpc.max_new_tokens)
    assert body["max_tokens"] == podclient.SMOKE_MAX_NEW_TOKENS and body["stream"] is False


def test_the_request_posts_json_to_the_chat_endpoint_with_its_id() -> None:
    access = podclient.Access(port=50051, model="m")
    lines, body = _split(podclient.chat_request(HTTP, pod_ip="10.0.0.7", access=access))
    assert lines[0] == "POST /v1/chat/completions HTTP/1.0"
    assert f"Host: 10.0.0.7:{contract.RUNTIME_HTTP_PORT}" in lines
    assert f"{contract.HEADER_REQUEST_ID}: {podclient.SMOKE_REQUEST_ID}" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert not any(line.startswith("Authorization") for line in lines)
    assert json.loads(body) == podclient.chat_body(HTTP, model="m")


def test_the_request_carries_the_token_and_brackets_an_ipv6_pod() -> None:
    access = podclient.Access(port=50051, token="s3cret", http_port=8443, model="m")
    lines, _ = _split(podclient.chat_request(HTTP, pod_ip="fd00::7", access=access))
    assert "Host: [fd00::7]:8443" in lines and "Authorization: Bearer s3cret" in lines


def _completion(content: object) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"content": content}}]}).encode()


def _error(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "x", "param": None}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "answer"),
    [
        (200, _completion("Paris."), ("Paris.", None)),
        (200, _completion(""), ("", None)),
        (
            404,
            _error("The model `m` does not exist"),
            (None, "HTTP 404: The model `m` does not exist"),
        ),
        (503, b"<html>upstream\n  down</html>", (None, "HTTP 503: <html>upstream down</html>")),
        (429, b'{"error": "busy"}', (None, 'HTTP 429: {"error": "busy"}')),
        (200, b"{}", (None, "HTTP 200 without choices[0].message.content: {}")),
        (
            200,
            _completion(None),
            (
                None,
                "HTTP 200 without choices[0].message.content: "
                '{"choices": [{"index": 0, "message": {"content": null}}]}',
            ),
        ),
        (200, b"\xff\xfe", (None, "HTTP 200 without choices[0].message.content: \ufffd\ufffd")),
    ],
    ids=[
        "text",
        "empty-text",
        "openai-error",
        "not-json",
        "error-not-an-object",
        "no-choices",
        "null-content",
        "not-utf8",
    ],
)
def test_a_reply_becomes_its_text_or_an_error_naming_status_and_message(
    status: int, body: bytes, answer: podclient.Answer
) -> None:
    assert podclient.chat_answer(status, body) == answer


def test_a_long_error_message_is_shortened() -> None:
    _, error = podclient.chat_answer(500, _error("x" * 5000))
    assert error is not None and error.startswith("HTTP 500: xxx") and len(error) < 250


def test_a_plain_reply_is_split_into_status_and_body() -> None:
    reply = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\r\n{}"
    assert podclient.split_reply(reply) == (404, b"{}")


def test_the_operator_asks_for_the_model_name_it_gives_the_runtime() -> None:
    d = spec.parse(
        {"metadata": {"name": "chat"}, "spec": {"model": {"name": "tiny-chat", "source": "/m"}}}
    )
    access = windows.access(d)
    assert (access.model, access.http_port) == ("tiny-chat", contract.RUNTIME_HTTP_PORT)
    assert access.port == d.spec.service.port


def test_a_token_that_cannot_be_a_header_is_an_error_reply_not_a_crash() -> None:
    access = podclient.Access(port=9, http_port=9, token="jeton-\u00e9\u20ac", model="m")
    (reply,) = podclient.smoke(pod="p", pod_ip="127.0.0.1", prompts=(HTTP,), access=access)
    assert reply.text is None and reply.error and reply.error.startswith("cannot build")
