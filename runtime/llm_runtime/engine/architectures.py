"""Which runner serves which architecture: the registry of the runners this package ships.

Adding an architecture is a module with a class satisfying `runners.Runner` (whose constructor
is its factory), one `REGISTRY.register(...)` line here, and a test; `core` asks `runner_for`.
"""

from __future__ import annotations

from typing import Any

from llm_runtime.engine import generic, llama, runners

REGISTRY = runners.RunnerRegistry(default=generic.GenericRunner)
REGISTRY.register(llama.SUPPORTED_MODEL_TYPES, llama.LlamaRunner)


def runner_for(
    model: Any, *, slots: int, max_len: int, registry: runners.RunnerRegistry | None = None
) -> runners.Runner:
    """The runner for `model` from `registry` (default: the shipped `REGISTRY`)."""
    chosen = REGISTRY if registry is None else registry
    return chosen.runner_for(model, slots=slots, max_len=max_len)
