"""OpenAI response bodies and stream chunks, built as dicts from engine events (pure).

Chat and text completions differ only in names and where the text goes (`message`/`delta` or
`text`), so each is one `Flavor` entry and every builder takes the flavor.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

from llm_runtime import types

FINISH_REASONS = {types.FinishReason.STOP: "stop", types.FinishReason.LENGTH: "length"}
OWNED_BY = "llm-operator"

Choice = dict[str, Any]


def _chat_choice(text: str, finish: str) -> Choice:
    message = {"role": "assistant", "content": text}
    return {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}


def _chat_delta(text: str | None, finish: str | None) -> Choice:
    delta = {} if text is None else {"content": text}
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def _text_choice(text: str, finish: str | None) -> Choice:
    return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}


def _text_delta(text: str | None, finish: str | None) -> Choice:
    return _text_choice(text or "", finish)


@dataclasses.dataclass(frozen=True)
class Flavor:
    """One endpoint's response shape."""

    method: str  # the metrics' `method` label
    id_prefix: str
    object: str
    chunk_object: str
    choice: Callable[[str, str], Choice]  # (text, finish_reason) of a whole response
    delta: Callable[[str | None, str | None], Choice]  # (text or None, finish_reason or None)
    opening: Choice | None  # the first chunk's choice, before any text (chat: the role)


CHAT = Flavor(
    method="ChatCompletions",
    id_prefix="chatcmpl-",
    object="chat.completion",
    chunk_object="chat.completion.chunk",
    choice=_chat_choice,
    delta=_chat_delta,
    opening={
        "index": 0,
        "delta": {"role": "assistant", "content": ""},
        "logprobs": None,
        "finish_reason": None,
    },
)
TEXT = Flavor(
    method="Completions",
    id_prefix="cmpl-",
    object="text_completion",
    chunk_object="text_completion",
    choice=_text_choice,
    delta=_text_delta,
    opening=None,
)


@dataclasses.dataclass(frozen=True)
class Reply:
    """What every part of one response shares."""

    flavor: Flavor
    id: str
    created: int
    model: str


def new_reply(flavor: Flavor, *, model: str) -> Reply:
    return Reply(flavor, f"{flavor.id_prefix}{uuid.uuid4().hex}", int(time.time()), model)


def finish_reason(final: types.FinalEvent) -> str:
    """`stop` or `length`; a cancelled request never gets here (it becomes an error)."""
    return FINISH_REASONS[final.finish_reason]


def usage(final: types.FinalEvent) -> dict[str, int]:
    return {
        "prompt_tokens": final.prompt_tokens,
        "completion_tokens": final.completion_tokens,
        "total_tokens": final.prompt_tokens + final.completion_tokens,
    }


def _envelope(reply: Reply, obj: str, choices: list[Choice]) -> dict[str, Any]:
    return {
        "id": reply.id,
        "object": obj,
        "created": reply.created,
        "model": reply.model,
        "choices": choices,
    }


def completion(reply: Reply, final: types.FinalEvent) -> dict[str, Any]:
    """The whole (non-streamed) response."""
    choice = reply.flavor.choice(final.text, finish_reason(final))
    return _envelope(reply, reply.flavor.object, [choice]) | {"usage": usage(final)}


def chunk(reply: Reply, choice: Choice, *, with_usage: bool) -> dict[str, Any]:
    """One stream chunk; with `include_usage`, every chunk but the last has `usage: null`."""
    body = _envelope(reply, reply.flavor.chunk_object, [choice])
    return body | {"usage": None} if with_usage else body


def text_chunk(reply: Reply, text: str, *, with_usage: bool) -> dict[str, Any]:
    return chunk(reply, reply.flavor.delta(text, None), with_usage=with_usage)


def final_chunk(reply: Reply, final: types.FinalEvent, *, with_usage: bool) -> dict[str, Any]:
    return chunk(reply, reply.flavor.delta(None, finish_reason(final)), with_usage=with_usage)


def usage_chunk(reply: Reply, final: types.FinalEvent) -> dict[str, Any]:
    """The extra last chunk OpenAI sends with `include_usage`: no choices, the usage."""
    return _envelope(reply, reply.flavor.chunk_object, []) | {"usage": usage(final)}


def models(name: str, *, created: int) -> dict[str, Any]:
    """`GET /v1/models`: the one model this server serves."""
    model = {"id": name, "object": "model", "created": created, "owned_by": OWNED_BY}
    return {"object": "list", "data": [model]}
