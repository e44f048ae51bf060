"""The scheduler thread: iteration-level (continuous) batching over the slot KV cache.

One thread owns the model and runs steps forever. Each step:

1. drops sequences whose client went away (cancelled, deadline) - their slot frees at once;
2. admits waiting requests FIFO while slots are free, up to `prefill_token_budget` prompt tokens
   (always at least one), and prefills them together: a burst of 32 requests is split into a few
   prefill chunks interleaved with decode steps, so the first requests get their first token
   early instead of all waiting for one huge prefill, and running streams never stall for long;
3. runs one batched decode forward over every running sequence (new ones included).

Finished sequences leave between steps; the last slot moves into the hole (compaction), keeping
running sequences in slots 0..n-1 so a decode step reads one contiguous block of the KV cache.
Events go to each request's asyncio queue with `loop.call_soon_threadsafe`; the event loop never
waits on torch.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence as Seq

import torch

from llm_runtime import types
from llm_runtime.engine import limits as limits_
from llm_runtime.engine import llama, sampling, text

log = logging.getLogger(__name__)

Emit = Callable[[types.GenerationEvent | BaseException], bool]


@dataclasses.dataclass(eq=False)
class Sequence:
    """One request's state. Only `cancelled` is written by another thread (a plain flag)."""

    request_id: str
    prompt_ids: list[int]
    params: types.SamplingParams
    row: sampling.RowSampling
    emit: Emit  # returns False when the consumer is gone
    decoder: text.IncrementalDecoder
    stream: text.TextStream
    enqueued_at: float = dataclasses.field(default_factory=time.monotonic)
    cancelled: bool = False
    cached: int = 0  # tokens whose K/V are in the cache
    completion_tokens: int = 0
    next_token: int = -1
    finish: types.FinishReason | None = None


def plan_admissions(prompt_lengths: Seq[int], *, free_slots: int, token_budget: int) -> int:
    """How many waiting requests (FIFO) to prefill this step: as many as fit the free slots and
    the token budget, but at least one when a slot is free so a long prompt cannot starve."""
    count, tokens = 0, 0
    for length in prompt_lengths:
        if count >= free_slots or (count > 0 and tokens + length > token_budget):
            break
        count, tokens = count + 1, tokens + length
    return count


class Scheduler:
    """Owns the runner (model + KV cache) and the running batch; see the module docstring."""

    def __init__(
        self,
        runner: llama.LlamaRunner,
        *,
        limits: limits_.EngineLimits,
        eos_ids: frozenset[int],
        max_len: int,
    ) -> None:
        self._runner = runner
        self._limits = limits
        self._eos_ids = eos_ids
        self._max_len = max_len
        self._cond = threading.Condition()
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._running: list[Sequence] = []
        self._stopping = False
        self.last_batch_size = 0

    # ---- called from the event loop ----
    def submit(self, seq: Sequence) -> None:
        """Queue a request, or raise QueueFullError when the bounded waiting queue is full."""
        with self._cond:
            if len(self._waiting) >= self._limits.max_waiting:
                raise types.QueueFullError(
                    f"{len(self._waiting)} requests are waiting (max_waiting="
                    f"{self._limits.max_waiting}); retry later"
                )
            self._waiting.append(seq)
            self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def counts(self) -> tuple[int, int, int]:
        """(running, waiting, cached tokens) - racy by a step at most, fine for gauges."""
        running = list(self._running)
        return len(running), len(self._waiting), sum(s.cached for s in running)

    # ---- the scheduler thread ----
    def run(self) -> None:
        """Thread body: step until shut down, then end every remaining request as cancelled."""
        with torch.inference_mode():
            while self._next_work():
                admitted = self._admit()
                try:
                    self._step(admitted)
                except Exception as exc:  # a bug or OOM must fail requests, not kill the thread
                    log.exception("engine step failed; failing %d requests", len(self._running))
                    for seq in {id(s): s for s in self._running + admitted}.values():
                        seq.emit(exc)
                    self._running = []
        with self._cond:
            leftover = self._running + list(self._waiting)
            self._running, self._waiting = [], collections.deque()
        for seq in leftover:
            self._finish_now(seq, types.FinishReason.CANCELLED)

    def _next_work(self) -> bool:
        """Block while idle; False once shutdown was asked."""
        with self._cond:
            while not self._stopping and not self._running and not self._waiting:
                self._cond.wait()
            return not self._stopping

    def _admit(self) -> list[Sequence]:
        with self._cond:
            self._waiting = collections.deque(s for s in self._waiting if not s.cancelled)
            count = plan_admissions(
                [len(s.prompt_ids) for s in self._waiting],
                free_slots=self._limits.max_batch_size - len(self._running),
                token_budget=self._limits.prefill_token_budget,
            )
            return [self._waiting.popleft() for _ in range(count)]

    def _step(self, admitted: list[Sequence]) -> None:
        self._release([i for i, s in enumerate(self._running) if s.cancelled])
        self._runner.cache.ensure(max([s.cached + 1 for s in self._running] + [1]))
        if admitted:
            self._prefill(admitted)
        if self._running:
            self._decode()

    def _prefill(self, admitted: list[Sequence]) -> None:
        first_slot = len(self._running)
        slots = list(range(first_slot, first_slot + len(admitted)))
        logits = self._runner.prefill([s.prompt_ids for s in admitted], slots)
        self._running.extend(admitted)
        for seq in admitted:
            seq.cached = len(seq.prompt_ids)
        self._sample_and_accept(admitted, logits)

    def _decode(self) -> None:
        batch = list(self._running)
        self.last_batch_size = len(batch)
        logits = self._runner.decode([s.next_token for s in batch], [s.cached for s in batch])
        for seq in batch:
            seq.cached += 1
        self._sample_and_accept(batch, logits)

    def _sample_and_accept(self, batch: list[Sequence], logits: torch.Tensor) -> None:
        tokens = sampling.choose_tokens(logits, [s.row for s in batch])
        for seq, token in zip(batch, tokens, strict=True):
            self._accept(seq, token)
        done = [i for i, s in enumerate(self._running) if s.finish is not None or s.cancelled]
        finished = [self._running[i] for i in done if self._running[i].finish is not None]
        self._release(done)
        # Final events go out after the slot is free: a client that saw its answer never
        # observes its own request still counted as running.
        for seq in finished:
            self._emit_final(seq)

    def _accept(self, seq: Sequence, token: int) -> None:
        """Record one new token: stream its text, decide whether the sequence is finished."""
        if seq.cancelled:
            return
        if token in self._eos_ids:
            self._finish(seq, types.FinishReason.STOP)
            return
        seq.next_token = token
        seq.completion_tokens += 1
        visible = seq.stream.append(seq.decoder.push(token))
        if not seq.emit(types.TokenEvent(text=visible, token_ids=(token,))):
            seq.cancelled = True
            return
        if seq.stream.stopped:
            self._finish(seq, types.FinishReason.STOP)
        elif seq.completion_tokens >= seq.params.max_new_tokens or seq.cached >= self._max_len:
            self._finish(seq, types.FinishReason.LENGTH)

    def _finish(self, seq: Sequence, reason: types.FinishReason) -> None:
        """Mark the sequence finished; its final event is sent once its slot is released."""
        seq.finish = reason

    def _emit_final(self, seq: Sequence) -> None:
        assert seq.finish is not None
        tail = seq.stream.flush() if not seq.stream.stopped else ""
        if tail:
            seq.emit(types.TokenEvent(text=tail, token_ids=()))
        seq.emit(
            types.FinalEvent(
                finish_reason=seq.finish,
                prompt_tokens=len(seq.prompt_ids),
                completion_tokens=seq.completion_tokens,
                text=seq.stream.text,
            )
        )

    def _finish_now(self, seq: Sequence, reason: types.FinishReason) -> None:
        if not seq.cancelled and seq.finish is None:
            seq.finish = reason
            self._emit_final(seq)

    def _release(self, indices: list[int]) -> None:
        """Remove running sequences and compact: the last one moves into each hole."""
        if not indices:
            return
        for index in sorted(indices, reverse=True):
            last = self._running.pop()
            if index < len(self._running):
                self._runner.cache.move(src=len(self._running), dst=index, length=last.cached)
                self._running[index] = last
