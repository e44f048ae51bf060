"""OpenAI request bodies: parsed once into frozen pydantic models, converted to the engine's
`types.GenerationRequest` at the edge (pure, no I/O).

Only the types are checked here; the ranges (max_tokens, temperature, top_p, stop) are the
engine's, so HTTP, gRPC and direct callers meet one set of rules (`errors.param_of` renames the
engine's fields to OpenAI's in its messages). Fields this server does not know are ignored, as
OpenAI's clients send many optional ones; fields it knows but cannot honour are refused by name
when set to anything but their neutral value, rather than silently answered wrongly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import pydantic

from llm_runtime import types
from llm_runtime.openai_api import errors

# The default max_tokens: the gRPC API's default, within the server's max_new_tokens.
DEFAULT_MAX_TOKENS = 128
# OpenAI's defaults (the gRPC API's temperature default is 0, greedy; OpenAI's is 1).
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0

# Parameters with a meaning this server does not implement, and the values that ask for nothing.
UNSUPPORTED: Mapping[str, tuple[object, ...]] = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "echo": (None, False),
    "best_of": (None, 1),
    "suffix": (None, ""),
    "logit_bias": (None, {}),
    "frequency_penalty": (None, 0),
    "presence_penalty": (None, 0),
    "tools": (None, []),
    "functions": (None, []),
    "tool_choice": (None, "none", "auto"),
    "function_call": (None, "none", "auto"),
    "response_format": (None, {"type": "text"}),
}

_FROZEN = pydantic.ConfigDict(frozen=True, strict=True, extra="allow")


class StreamOptions(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, strict=True, extra="ignore")
    include_usage: bool = False


class TextPart(pydantic.BaseModel):
    """A content part; only text parts exist for a text-only model."""

    model_config = pydantic.ConfigDict(frozen=True, strict=True, extra="ignore")
    type: Literal["text"]
    text: str


class Message(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, strict=True, extra="ignore")
    role: str
    content: str | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _Common(pydantic.BaseModel):
    """What both endpoints accept."""

    model_config = _FROZEN
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # not OpenAI's, but vLLM's and TGI's clients send it
    seed: int | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @property
    def include_usage(self) -> bool:
        """OpenAI sends usage in a stream only when asked to (`stream_options.include_usage`)."""
        return self.stream_options is not None and self.stream_options.include_usage

    def max_tokens_param(self) -> tuple[str, int | None]:
        """Which parameter set the output bound, and its value."""
        return "max_tokens", self.max_tokens


class ChatCompletionRequest(_Common):
    messages: list[Message]
    max_completion_tokens: int | None = None

    def max_tokens_param(self) -> tuple[str, int | None]:
        if self.max_completion_tokens is not None:
            return "max_completion_tokens", self.max_completion_tokens
        return "max_tokens", self.max_tokens


class CompletionRequest(_Common):
    prompt: str | list[str]


AnyRequest = ChatCompletionRequest | CompletionRequest


def check_supported(request: AnyRequest) -> None:
    """Raise a 400 naming the first parameter this server cannot honour."""
    if request.n not in (None, 1):
        raise errors.invalid("only n=1 is supported", param="n")
    extra = request.model_extra or {}
    for name, neutral in UNSUPPORTED.items():
        if name in extra and extra[name] not in neutral:
            raise errors.invalid(f"{name} is not supported by this server", param=name)


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def sampling(request: AnyRequest, *, info: types.ModelInfo) -> types.SamplingParams:
    """The engine's sampling parameters, with OpenAI's defaults for unset fields."""
    _, max_tokens = request.max_tokens_param()
    return types.SamplingParams(
        max_new_tokens=(
            max_tokens if max_tokens is not None else min(DEFAULT_MAX_TOKENS, info.max_new_tokens)
        ),
        temperature=DEFAULT_TEMPERATURE if request.temperature is None else request.temperature,
        top_p=DEFAULT_TOP_P if request.top_p is None else request.top_p,
        top_k=request.top_k or 0,
        seed=request.seed,
        stop=_stops(request.stop),
    )


def _prompt(request: CompletionRequest) -> str:
    if isinstance(request.prompt, str):
        return request.prompt
    if len(request.prompt) != 1:
        raise errors.invalid("prompt: only one prompt per request is supported", param="prompt")
    return request.prompt[0]


def to_domain(
    request: AnyRequest, *, info: types.ModelInfo, request_id: str
) -> types.GenerationRequest:
    """The engine's request; raises a 400 for what only this edge can tell."""
    check_supported(request)
    if isinstance(request, ChatCompletionRequest):
        if not request.messages:
            raise errors.invalid("messages must not be empty", param="messages")
        messages = tuple(types.ChatMessage(role=m.role, content=m.text()) for m in request.messages)
        prompt = None
    else:
        messages, prompt = (), _prompt(request)
    return types.GenerationRequest(
        request_id=request_id,
        prompt=prompt,
        messages=messages,
        sampling=sampling(request, info=info),
    )


def renames(request: AnyRequest) -> dict[str, str]:
    """The engine's field names in this request's OpenAI names, for `errors.from_domain`."""
    names = {"max_new_tokens": request.max_tokens_param()[0]}
    if isinstance(request, ChatCompletionRequest):
        names["prompt"] = "messages"
    return names


def parse(model: type[AnyRequest], body: bytes) -> AnyRequest:
    """Parse a JSON body; a 400 naming the field when it does not fit."""
    try:
        return model.model_validate_json(body)
    except pydantic.ValidationError as exc:
        raise errors.from_validation(exc) from None
