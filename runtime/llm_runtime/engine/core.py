"""`BatchingEngine`: the `types.Engine` the server runs, bridging asyncio and the scheduler thread.

`generate()` runs on the event loop and makes only the cheap checks (draining, input size, sampling
values, a full queue), raising their errors from the call itself. It then starts the request's
admission (a task): tokenizing and chat templating, milliseconds for a normal prompt and seconds
for a megabyte one, run on the engine's one tokenizer thread, so Health and other calls keep being
answered meanwhile, and the request is queued once its tokens pass the checks. The errors only the
tokens can tell (too many tokens, a failing chat template, a queue that filled up meanwhile) are
raised by the returned `EventStream`'s first `__anext__`, still before any event.
The scheduler thread pushes events into that stream's
asyncio.Queue via `loop.call_soon_threadsafe`; closing the stream (aclose, task cancellation at a
deadline, or garbage collection) sets the sequence's `cancelled` flag and the scheduler frees its
slot before the next step.

Prompts and outputs are never logged here: payload logging is the server's switch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import os
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import torch

from llm_runtime import types
from llm_runtime.engine import architectures, kvcache, runners, sampling, scheduler, text
from llm_runtime.engine import limits as limits_

WARMUP_REQUEST = types.GenerationRequest(
    request_id="warm-up",
    prompt="Hello",
    messages=(),
    sampling=types.SamplingParams(max_new_tokens=2),
)


class LoadedModelLike(Protocol):
    """What the engine reads from `llm_runtime.models.loading.LoadedModel`."""

    @property
    def model(self) -> Any: ...
    @property
    def tokenizer(self) -> Any: ...
    @property
    def name(self) -> str: ...
    @property
    def revision(self) -> str: ...
    @property
    def dtype(self) -> Any: ...
    @property
    def device(self) -> Any: ...
    @property
    def context_length(self) -> int: ...


class EventStream(AsyncIterator[types.GenerationEvent]):
    """The async iterator `generate()` returns; the scheduler thread feeds it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[types.GenerationEvent | BaseException] = asyncio.Queue()
        self._done = False
        self.sequence: scheduler.Sequence | None = None
        # Tokenizing and queueing (a task started by `generate`); awaited by the first __anext__.
        self.admission: asyncio.Future[None] | None = None

    def push(self, item: types.GenerationEvent | BaseException) -> bool:
        """Called on the scheduler thread. False when nobody will read the event any more."""
        if self._done:
            return False
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed
            return False
        return True

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> types.GenerationEvent:
        if self._done:
            raise StopAsyncIteration
        admission, self.admission = self.admission, None
        try:
            if admission is not None:
                await admission  # raises what admission raised; cancelling us cancels it
            item = await self._queue.get()
        except BaseException:  # CancelledError: deadline or client gone
            self.close()
            raise
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if isinstance(item, types.FinalEvent):
            self._done = True
        return item

    async def aclose(self) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._done

    def close(self) -> None:
        """Stop the generation: the scheduler drops the sequence at its next step, and an
        admission still under way is cancelled."""
        if not self._done:
            self._done = True
            if self.admission is not None:
                self.admission.cancel()
            if self.sequence is not None:
                self.sequence.cancelled = True

    def __del__(self) -> None:
        self.close()


def eos_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Every id that ends a generation: the tokenizer's EOS and the generation config's."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return frozenset(ids)


def shared_chat_prefix(tokenizer: Any) -> list[int]:
    """Token ids every chat request starts with: the longest common prefix of two renderings
    that differ only in the user's words (the system prompt and role markers). Empty without a
    chat template. Exactness is checked per request, so a tokenizer merge across the boundary
    only costs the optimisation, never correctness."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    rendered = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": word}], tokenize=False, add_generation_prompt=True
        )
        for word in ("alpha", "zebra")
    ]
    a, b = (list(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in rendered)
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    return a[:common]


class BatchingEngine:
    """Continuous batching over the runner the registry picks for the model (`architectures`);
    see `scheduler` for the step loop."""

    def __init__(
        self,
        loaded: LoadedModelLike,
        limits: limits_.EngineLimits | None = None,
        *,
        registry: runners.RunnerRegistry | None = None,
    ) -> None:
        self._limits = limits or limits_.EngineLimits()
        self._registry = registry  # None: `architectures.REGISTRY`; tests pass their own
        self._tokenizer = loaded.tokenizer
        # The scheduler thread decodes with its own copy (made in start()): HF fast tokenizers are
        # not safe to use from two threads at once ("Already borrowed").
        self._decode_tokenizer: Any = None
        self._context_length = int(loaded.context_length)
        self._max_len = limits_.sequence_capacity(
            limits=self._limits, context_length=self._context_length
        )
        self._model = loaded.model
        self._scheduler: scheduler.Scheduler | None = None
        self._device = torch.device(str(loaded.device))
        self._info = types.ModelInfo(
            name=loaded.name,
            revision=loaded.revision,
            dtype=str(loaded.dtype).removeprefix("torch."),
            device=str(loaded.device),
            context_length=self._context_length,
            max_batch_size=self._limits.max_batch_size,
            max_waiting=self._limits.max_waiting,
            max_input_tokens=self._limits.max_input_tokens,
            max_new_tokens=self._limits.max_new_tokens,
        )
        self._vocab_size = int(loaded.model.get_input_embeddings().num_embeddings)
        # One thread, so the tokenizer is never used by two threads at once ("Already borrowed").
        self._tokenizing = concurrent.futures.ThreadPoolExecutor(1, "llm-tokenize")
        self._thread: threading.Thread | None = None
        self._draining = False

    @property
    def info(self) -> types.ModelInfo:
        return self._info

    def stats(self) -> types.EngineStats:
        if self._scheduler is None:
            return types.EngineStats(running=0, waiting=0, batch_size=0, kv_cache_usage=0.0)
        running, waiting, cached = self._scheduler.counts()
        budget = self._limits.max_batch_size * self._max_len
        return types.EngineStats(
            running=running,
            waiting=waiting,
            batch_size=self._scheduler.last_batch_size,
            kv_cache_usage=cached / budget,
        )

    def kv_cache_bytes(self) -> tuple[int, int]:
        """(KV bytes one cached token of one sequence takes, bytes the KV cache holds now), for
        benchmarks and sizing; (0, 0) before start() or when the runner's cache is not one slot
        tensor (the generic runner's per-request HF caches)."""
        cache = None if self._scheduler is None else self._scheduler.cache
        if not isinstance(cache, kvcache.KVCache):
            return 0, 0
        return cache.bytes_per_token(), cache.allocated_bytes()

    def generate(self, request: types.GenerationRequest) -> AsyncIterator[types.GenerationEvent]:
        """Make the cheap checks (raising the domain errors) and return the request's stream,
        which tokenizes and queues the request when first awaited (see the module docstring)."""
        self._check_accepting()
        limits_.check_input(request)
        limits_.check_size(request, limits=self._limits)
        limits_.check_sampling(request.sampling, limits=self._limits)
        stream = EventStream(asyncio.get_running_loop())
        stream.admission = asyncio.ensure_future(self._admit(request, stream))
        return stream

    def _check_accepting(self) -> None:
        if self._draining or self._scheduler is None:
            raise types.DrainingError("the engine is not accepting requests")
        self._scheduler.check_room()

    async def _admit(self, request: types.GenerationRequest, stream: EventStream) -> None:
        """Tokenize off the event loop, check the tokens, and queue the request."""
        loop = asyncio.get_running_loop()
        prompt_ids = await loop.run_in_executor(self._tokenizing, self._encode, request)
        limits_.check_prompt_length(
            prompt_tokens=len(prompt_ids),
            max_new_tokens=request.sampling.max_new_tokens,
            limits=self._limits,
            context_length=self._context_length,
        )
        limits_.check_token_ids(prompt_ids, vocab_size=self._vocab_size)
        # Accepted by generate(), so a drain begun meanwhile lets it run (stop() cancels it).
        if stream.closed or self._scheduler is None:  # the client went away while tokenizing
            return
        stream.sequence = self._sequence(request, prompt_ids, stream)
        self._scheduler.submit(stream.sequence)

    def _sequence(
        self, request: types.GenerationRequest, prompt_ids: list[int], stream: EventStream
    ) -> scheduler.Sequence:
        params = request.sampling
        return scheduler.Sequence(
            request_id=request.request_id,
            prompt_ids=prompt_ids,
            params=params,
            row=sampling.RowSampling(
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                generator=None
                if params.temperature == 0
                else sampling.make_generator(seed=params.seed, device=self._device),
            ),
            emit=stream.push,
            decoder=text.IncrementalDecoder(self._decode_text),
            stream=text.TextStream(stops=params.stop),
        )

    def _decode_text(self, ids: Sequence[int]) -> str:
        """Detokenize on the scheduler thread, with its own tokenizer copy."""
        return str(self._decode_tokenizer.decode(list(ids), skip_special_tokens=True))

    def _encode(self, request: types.GenerationRequest) -> list[int]:
        if request.prompt:
            return list(self._tokenizer(request.prompt)["input_ids"])
        if not getattr(self._tokenizer, "chat_template", None):
            raise types.InvalidRequestError("messages: this model has no chat template")
        chat = [{"role": m.role, "content": m.content} for m in request.messages]
        try:
            rendered = self._tokenizer.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja errors: e.g. a role the template rejects
            raise types.InvalidRequestError(f"messages: chat template failed: {exc}") from exc
        return list(self._tokenizer(rendered, add_special_tokens=False)["input_ids"])

    async def start(self) -> None:
        """Start the scheduler thread and run one warm-up generation end to end."""
        if self._thread is not None:
            return
        if self._device.type == "cpu":
            torch.set_num_threads(len(os.sched_getaffinity(0)) or 1)
        built = await asyncio.to_thread(self._build_scheduler)
        self._thread = threading.Thread(target=built.run, name="llm-engine", daemon=True)
        self._scheduler = built
        self._thread.start()
        events = [event async for event in self.generate(WARMUP_REQUEST)]
        if not events or not isinstance(events[-1], types.FinalEvent):
            raise RuntimeError("warm-up generation produced no final event")

    def _build_scheduler(self) -> scheduler.Scheduler:
        """Off the event loop: build the model's runner (fused weights, KV cache) and precompute
        the shared prefix."""
        self._decode_tokenizer = copy.deepcopy(self._tokenizer)
        runner = architectures.runner_for(
            self._model,
            slots=self._limits.max_batch_size,
            max_len=self._max_len,
            registry=self._registry,
        )
        runner.set_prefix(shared_chat_prefix(self._tokenizer))
        return scheduler.Scheduler(
            runner,
            limits=self._limits,
            eos_ids=eos_token_ids(self._model, self._tokenizer),
            max_len=self._max_len,
        )

    def begin_drain(self) -> None:
        """Refuse new requests (DrainingError); running ones continue."""
        self._draining = True

    async def stop(self) -> None:
        """Refuse new work, end what is left as CANCELLED and join the scheduler thread."""
        self._draining = True
        if self._scheduler is not None:
            self._scheduler.shutdown()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self._tokenizing.shutdown(wait=False, cancel_futures=True)


def chat_request(
    messages: Sequence[tuple[str, str]], *, request_id: str, params: types.SamplingParams
) -> types.GenerationRequest:
    """Convenience for tests and the benchmark: a chat request from (role, content) pairs."""
    return types.GenerationRequest(
        request_id=request_id,
        prompt=None,
        messages=tuple(types.ChatMessage(role=r, content=c) for r, c in messages),
        sampling=params,
    )
