"""The model-runner extension point: the `Runner` protocol and the registry choosing one per model.

The scheduler batches requests; a runner computes their tokens. Each architecture needs its own
forward (the fast `llama` one only fits Llama-shaped layers), so which runner serves a model is
a table lookup on the config's `model_type` - the key transformers itself dispatches on - instead
of a branch in `core`. A runner factory may still decline a model it cannot serve after looking
closer (a sliding window, q/k norms) by raising `UnsupportedModelError`; the registry's default
entry (the unbatched `generic` runner) then serves it, as it serves every unregistered type.

This module holds only the contract, so runner modules import it without importing each other;
`architectures` holds the table of the runners this package ships.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any, Protocol

import torch

log = logging.getLogger(__name__)


class UnsupportedModelError(ValueError):
    """A runner factory declines the model: its architecture is not one that runner implements."""


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Prompt tokens to prefill into `slot` at positions `start`, `start + 1`, ..."""

    slot: int
    start: int
    ids: list[int]


class SlotCache(Protocol):
    """The slot-cache operations the scheduler performs (`kvcache.KVCache`, `generic.SlotCaches`)."""

    def ensure(self, needed: int) -> None:
        """Make room for `needed` tokens per slot (the longest live sequence plus one)."""
        ...

    def move(self, *, src: int, dst: int, length: int) -> None:
        """Copy slot `src`'s first `length` positions into slot `dst` (slot compaction)."""
        ...


class Runner(Protocol):
    """What the engine needs from a model runner: slot-addressed prefill and decode over its
    own KV cache. Running sequence i lives in slot i; logits come back as float32 rows."""

    @property
    def cache(self) -> SlotCache:
        """The runner's per-slot KV cache, resized and compacted by the scheduler."""
        ...

    def set_prefix(self, ids: list[int]) -> None:
        """Precompute a prompt prefix many requests share (called once, before any request);
        a runner without a prefix cache ignores it."""
        ...

    def cached_prefix(self, prompt: list[int]) -> int:
        """How many leading tokens of `prompt` `copy_prefix` would cover (0 when none)."""
        ...

    def copy_prefix(self, slot: int, prompt: list[int]) -> int:
        """Put the shared prefix's K/V in `slot` if `prompt` starts with it; tokens covered."""
        ...

    def prefill(self, chunks: list[Chunk]) -> torch.Tensor:
        """Compute each chunk into its slot; `[len(chunks), vocab]` logits of each last token."""
        ...

    def decode(self, tokens: list[int], positions: list[int]) -> torch.Tensor:
        """One step for slots 0..len(tokens)-1, token i at `positions[i]`; `[batch, vocab]`."""
        ...


class RunnerFactory(Protocol):
    """Builds a runner for `model` with `slots` sequences of up to `max_len` tokens each; a
    runner class whose `__init__` has this signature is a factory."""

    def __call__(self, model: Any, *, slots: int, max_len: int) -> Runner: ...


def model_type(model: Any) -> str:
    """The registry key of a transformers model: its config's `model_type` ("" when absent)."""
    return str(getattr(getattr(model, "config", None), "model_type", "") or "")


class RunnerRegistry:
    """Maps config `model_type`s to runner factories, with a default for every other model."""

    def __init__(self, *, default: RunnerFactory) -> None:
        self._default = default
        self._entries: dict[str, RunnerFactory] = {}

    @property
    def default(self) -> RunnerFactory:
        """The factory for unregistered model types and for models a factory declined."""
        return self._default

    @property
    def model_types(self) -> frozenset[str]:
        """Every registered model type (for messages and tests)."""
        return frozenset(self._entries)

    def register(self, model_types: Iterable[str], factory: RunnerFactory) -> None:
        """Serve `model_types` with `factory`. A type registered twice is an error: two
        runners claiming one architecture is a bug, not a preference to settle silently."""
        names = sorted(set(model_types))
        if not names:
            raise ValueError("register() needs at least one model type")
        taken = [n for n in names if n in self._entries]
        if taken:
            raise ValueError(f"model types already registered: {', '.join(taken)}")
        for name in names:
            self._entries[name] = factory

    def copy(self) -> RunnerRegistry:
        """An independent registry with the same entries, to extend without touching this one."""
        other = RunnerRegistry(default=self._default)
        other._entries = dict(self._entries)
        return other

    def factory_for(self, model_type: str) -> RunnerFactory:
        """The factory registered for `model_type`, else the default."""
        return self._entries.get(model_type, self._default)

    def runner_for(self, model: Any, *, slots: int, max_len: int) -> Runner:
        """Build the runner for `model`: its registered factory, falling back to the default
        (with a warning: it serves correctly but without batching) when the model type is
        unregistered or the factory raises UnsupportedModelError."""
        name = model_type(model)
        factory = self._entries.get(name)
        if factory is not None:
            try:
                return factory(model, slots=slots, max_len=max_len)
            except UnsupportedModelError as exc:
                log.warning("%s; serving through the default runner", exc)
        else:
            log.warning(
                "model type %r has no registered runner (registered: %s); serving through "
                "the default runner",
                name,
                ", ".join(sorted(self._entries)) or "none",
            )
        return self._default(model, slots=slots, max_len=max_len)
