"""The fallback runner: any transformers causal LM, one sequence per forward, no batching.

`llama.LlamaRunner` is the fast path and serves every Llama-shaped model (SmolLM2, the tiny test
models, Mistral, Qwen2). A model of another architecture still has to serve correctly, so this
runner gives the scheduler the same interface on top of the model's own forward with one HF
`DynamicCache` per slot. Requests still join and leave between steps, but each decode step runs
one forward per sequence, so throughput is the naive design's; the registry logs a warning.
It is the default entry of `architectures.REGISTRY`: what serves every unregistered model type.
"""

from __future__ import annotations

from typing import Any

import torch

from llm_runtime.engine import runners


class SlotCaches:
    """Per-slot HF caches behind the KVCache methods the scheduler calls."""

    def __init__(self, *, slots: int, max_len: int) -> None:
        self.entries: list[Any] = [None] * slots
        self.max_len = max_len

    @property
    def capacity(self) -> int:
        return self.max_len

    def ensure(self, needed: int) -> None:
        """HF caches grow by themselves."""

    def grow(self, needed: int) -> None:
        """HF caches grow by themselves."""

    def move(self, *, src: int, dst: int, length: int) -> None:
        self.entries[dst], self.entries[src] = self.entries[src], None


class GenericRunner:
    """Prefill and decode through the model's own forward, one sequence at a time."""

    def __init__(self, model: Any, *, slots: int, max_len: int) -> None:
        self.model = model
        self.device: torch.device = next(model.parameters()).device
        self.cache = SlotCaches(slots=slots, max_len=max_len)

    def set_prefix(self, ids: list[int]) -> None:
        """No shared-prefix cache on this path."""

    def cached_prefix(self, prompt: list[int]) -> int:
        return 0

    def copy_prefix(self, slot: int, prompt: list[int]) -> int:
        return 0

    def prefill(self, chunks: list[runners.Chunk]) -> torch.Tensor:
        rows = []
        for chunk in chunks:
            if chunk.start == 0:
                self.cache.entries[chunk.slot] = self._fresh_cache()
            rows.append(self._forward(chunk.ids, chunk.slot))
        return torch.stack(rows).float()

    def decode(self, tokens: list[int], positions: list[int]) -> torch.Tensor:
        return torch.stack([self._forward([t], slot) for slot, t in enumerate(tokens)]).float()

    def _fresh_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _forward(self, ids: list[int], slot: int) -> torch.Tensor:
        input_ids = torch.tensor([ids], device=self.device)
        out = self.model(input_ids=input_ids, cache=self.cache.entries[slot], use_cache=True)
        logits: torch.Tensor = out.logits[0, -1]
        return logits
