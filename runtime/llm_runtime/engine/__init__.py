"""The continuous-batching engine: `BatchingEngine(loaded_model, limits)` implements `types.Engine`.

Modules: `limits` (limits and request checks, pure), `text` (incremental detokenization and stop
sequences, pure), `sampling` (per-row sampling with per-request RNGs), `kvcache` (slot KV cache),
`runners` (the `Runner` protocol and the registry mapping a config `model_type` to a runner),
`architectures` (the shipped registry: `llama`, the direct batched forward for Llama-family
models, and `generic`, its default entry for other architectures, no batching), `scheduler`
(the step loop thread), `core` (the asyncio-facing engine). Importing this package imports torch.
"""

import os

# Must happen before torch loads libgomp (the first `import torch`); an explicit setting wins.
# Idle OpenMP workers then sleep instead of spinning: on a 2-core machine shared with other pods,
# spinning workers fought them for the cores and every 2-thread step ran 5-7x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from llm_runtime.engine.core import BatchingEngine, EventStream
from llm_runtime.engine.limits import EngineLimits

__all__ = ["BatchingEngine", "EngineLimits", "EventStream"]
