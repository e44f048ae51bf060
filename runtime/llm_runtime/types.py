"""Protocol-neutral domain types shared by the gRPC edge (server) and the engine.

The servicer converts protobuf to these at the edge and maps the errors below to gRPC status codes
in one place, so the engine never knows about gRPC and tests can drive it directly.
This module must not import torch: it is the contract between the two halves of the runtime.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import AsyncIterator
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """Sampling settings. temperature == 0 means greedy."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class GenerationRequest:
    """One request as the engine sees it: exactly one of `prompt` or `messages` is set."""

    request_id: str
    prompt: str | None
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams


class FinishReason(enum.StrEnum):
    LENGTH = "length"  # max_new_tokens reached
    STOP = "stop"  # EOS token or a stop sequence
    CANCELLED = "cancelled"  # the client went away or the deadline passed


@dataclasses.dataclass(frozen=True)
class TokenEvent:
    """Text produced since the previous event (may be empty while a multi-byte char is pending)."""

    text: str
    token_ids: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class FinalEvent:
    """The last event of every successful generation."""

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    text: str  # the whole completion, stop sequence excluded


GenerationEvent = TokenEvent | FinalEvent


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    revision: str
    dtype: str
    device: str
    context_length: int
    max_batch_size: int
    max_waiting: int
    max_input_tokens: int
    max_new_tokens: int


@dataclasses.dataclass(frozen=True)
class EngineStats:
    """A snapshot for gauges: read by the metrics collector, never pushed by the engine."""

    running: int
    waiting: int
    batch_size: int  # rows in the last decode step
    kv_cache_usage: float  # 0..1 of the configured KV budget


class RuntimeError_(Exception):  # noqa: N801, N818  (the _ keeps the builtin unshadowed)
    """Base of the runtime's domain errors; the gRPC edge maps each subclass to one status code."""


class InvalidRequestError(RuntimeError_):
    """-> INVALID_ARGUMENT: empty prompt, prompt too long, bad sampling values."""


class QueueFullError(RuntimeError_):
    """-> RESOURCE_EXHAUSTED: the bounded waiting queue is full."""


class DrainingError(RuntimeError_):
    """-> UNAVAILABLE: the server is shutting down and accepts no new work."""


class NumericalError(RuntimeError_):
    """-> INTERNAL: this request's logits were not finite (NaN or Inf from the model). Only this
    request fails; the others in its batch go on."""


class Engine(Protocol):
    """What the server needs from an engine. `generate` validates synchronously-raised errors
    (InvalidRequestError, QueueFullError, DrainingError) before yielding the first event, and
    frees the request's slot and KV memory as soon as the iterator is closed or cancelled."""

    @property
    def info(self) -> ModelInfo: ...

    def stats(self) -> EngineStats: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]: ...

    async def start(self) -> None:
        """Load nothing (the model is passed in) but start the scheduler loop and run a warm-up."""

    async def stop(self) -> None: ...
