"""The engine's limits and the request checks made before a request is queued.

Everything here is pure: the checks run on the caller's (event-loop) thread, so a bad request is
rejected with `InvalidRequestError` naming the field before it costs a queue slot, and the
scheduler thread only ever sees requests that fit its memory.
"""

from __future__ import annotations

import dataclasses
import math

from llm_runtime import types

# More stop sequences than this is almost certainly a client bug and costs a scan per token.
MAX_STOP_SEQUENCES = 16
# Held-back text is scanned against every stop prefix per token; bound the cost.
MAX_STOP_CHARS = 256
# Chat messages per request: each renders to several tokens, so more than this cannot fit any
# max_input_tokens a CPU or single GPU serves, and templating them is work before that check.
MAX_CHAT_MESSAGES = 1024


@dataclasses.dataclass(frozen=True)
class EngineLimits:
    """Bounds that keep memory and latency predictable; every one is a server flag/env var."""

    max_batch_size: int = 32  # KV-cache slots, i.e. sequences decoded together in one step
    max_waiting: int = 256  # queued requests beyond the running batch; more -> QueueFullError
    max_input_tokens: int = 2048  # prompt tokens accepted per request
    max_new_tokens: int = 512  # upper bound for a request's max_new_tokens
    prefill_token_budget: int = 512  # prompt tokens prefilled per scheduler step (>=1 request)
    max_prompt_bytes: int = 16384  # prompt (or messages) in UTF-8 bytes, checked before tokenizing

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) < 1:
                raise ValueError(f"{field.name} must be >= 1")


def sequence_capacity(*, limits: EngineLimits, context_length: int) -> int:
    """Tokens one KV slot must hold: the longest prompt plus the most new tokens, within context."""
    return min(context_length, limits.max_input_tokens + limits.max_new_tokens)


def check_sampling(params: types.SamplingParams, *, limits: EngineLimits) -> None:
    """Raise InvalidRequestError naming the first sampling field that is out of range."""
    if not 1 <= params.max_new_tokens <= limits.max_new_tokens:
        raise types.InvalidRequestError(
            f"max_new_tokens must be in [1, {limits.max_new_tokens}], got {params.max_new_tokens}"
        )
    if not math.isfinite(params.temperature) or params.temperature < 0:
        raise types.InvalidRequestError(f"temperature must be >= 0, got {params.temperature}")
    if not (math.isfinite(params.top_p) and 0 < params.top_p <= 1):
        raise types.InvalidRequestError(f"top_p must be in (0, 1], got {params.top_p}")
    if params.top_k < 0:
        raise types.InvalidRequestError(f"top_k must be >= 0, got {params.top_k}")
    if len(params.stop) > MAX_STOP_SEQUENCES:
        raise types.InvalidRequestError(f"stop accepts at most {MAX_STOP_SEQUENCES} sequences")
    if any(not s for s in params.stop):
        raise types.InvalidRequestError("stop sequences must not be empty strings")
    if any(len(s) > MAX_STOP_CHARS for s in params.stop):
        raise types.InvalidRequestError(f"stop sequences must be at most {MAX_STOP_CHARS} chars")


def prompt_bytes(request: types.GenerationRequest) -> int:
    """The request's input size in UTF-8 bytes: the prompt, or every message's role and content."""
    if request.prompt:
        return _utf8_len(request.prompt)
    return sum(_utf8_len(m.role) + _utf8_len(m.content) for m in request.messages)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))  # direct callers may pass lone surrogates


def check_size(request: types.GenerationRequest, *, limits: EngineLimits) -> None:
    """Raise InvalidRequestError for an input too big to be worth tokenizing (cheap: no tokenizer)."""
    if len(request.messages) > MAX_CHAT_MESSAGES:
        raise types.InvalidRequestError(
            f"messages: {len(request.messages)} messages, more than {MAX_CHAT_MESSAGES}"
        )
    size = prompt_bytes(request)
    if size > limits.max_prompt_bytes:
        raise types.InvalidRequestError(
            f"prompt is {size} bytes, more than max_prompt_bytes ({limits.max_prompt_bytes})"
        )


def check_token_ids(prompt_ids: list[int], *, vocab_size: int) -> None:
    """Raise InvalidRequestError when the tokenizer made an id the model has no embedding for
    (a tokenizer with added tokens beyond the model's vocabulary): it would fail the whole
    prefill batch, not just this request."""
    bad = next((i for i in prompt_ids if not 0 <= i < vocab_size), None)
    if bad is not None:
        raise types.InvalidRequestError(
            f"prompt: token id {bad} is outside the model's vocabulary ({vocab_size})"
        )


def check_input(request: types.GenerationRequest) -> None:
    """Raise InvalidRequestError unless exactly one non-empty input (prompt or messages) is set."""
    has_prompt = request.prompt is not None and request.prompt != ""
    if has_prompt and request.messages:
        raise types.InvalidRequestError("set either prompt or messages, not both")
    if not has_prompt and not request.messages:
        raise types.InvalidRequestError("prompt is empty: set prompt or messages")
    if request.messages and all(not m.content.strip() for m in request.messages):
        raise types.InvalidRequestError("messages: every message content is empty")


def check_prompt_length(
    *, prompt_tokens: int, max_new_tokens: int, limits: EngineLimits, context_length: int
) -> None:
    """Raise InvalidRequestError when the tokenized prompt cannot fit its slot with its output."""
    if prompt_tokens == 0:
        raise types.InvalidRequestError("prompt is empty after tokenization")
    if prompt_tokens > limits.max_input_tokens:
        raise types.InvalidRequestError(
            f"prompt has {prompt_tokens} tokens, more than max_input_tokens "
            f"({limits.max_input_tokens})"
        )
    room = context_length - max_new_tokens
    if prompt_tokens > room:
        raise types.InvalidRequestError(
            f"prompt has {prompt_tokens} tokens; with max_new_tokens={max_new_tokens} it exceeds "
            f"the context length ({context_length})"
        )
