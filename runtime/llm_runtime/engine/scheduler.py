"""The scheduler thread: iteration-level (continuous) batching over the slot KV cache.

One thread owns the model and runs steps forever. Each step:

1. drops sequences whose client went away (cancelled, deadline) - their slot frees at once;
2. prefills under a token budget (`prefill_token_budget`): first the next slice of a long prompt
   being prefilled in chunks, then waiting requests FIFO whose prompts fit whole; a prompt that
   does not fit starts a chunked prefill in a reserved slot. All of it is one packed forward.
   A burst of 32 requests is thus split into a few prefill steps interleaved with decode steps,
   so the first requests get their first token early instead of all waiting for one huge
   prefill, and a 2k-token prompt never stalls the running streams for seconds;
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
from collections.abc import Callable
from collections.abc import Sequence as Seq

import torch

from llm_runtime import types
from llm_runtime.engine import limits as limits_
from llm_runtime.engine import runners, sampling, text

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
    cancelled: bool = False
    cached: int = 0  # tokens whose K/V are in the cache
    completion_tokens: int = 0
    next_token: int = -1
    finish: types.FinishReason | None = None


@dataclasses.dataclass(frozen=True)
class PrefillPlan:
    """This step's prefill work: whole prompts to admit, and the chunked (long) prompt's share."""

    admit: int  # waiting requests (FIFO) prefilled whole this step
    start_chunked: bool  # the next waiting request starts a chunked prefill this step
    chunk_tokens: int  # tokens of the chunked prompt (continuing or starting) computed now


def plan_prefill(
    lengths: Seq[int], *, free_slots: int, token_budget: int, chunk_left: int | None
) -> PrefillPlan:
    """Split this step's prefill token budget: first the prompt being prefilled in chunks (if
    any, `chunk_left` tokens to go), then waiting prompts FIFO that fit whole (`lengths`: tokens
    still to compute). A waiting prompt that does not fit what is left starts a chunked prefill
    - one at a time - so a long prompt can neither stall decoding for seconds nor starve."""
    budget, chunk = token_budget, 0
    if chunk_left is not None:
        chunk = min(budget, chunk_left)
        budget -= chunk
    admit, used = 0, 0
    while admit < min(free_slots, len(lengths)) and used + lengths[admit] <= budget:
        used += lengths[admit]
        admit += 1
    start = chunk_left is None and admit < min(free_slots, len(lengths)) and used < budget
    if start:
        chunk = min(budget - used, lengths[admit])
    return PrefillPlan(admit=admit, start_chunked=start, chunk_tokens=chunk)


class Scheduler:
    """Owns the runner (model + KV cache) and the running batch; see the module docstring."""

    def __init__(
        self,
        runner: runners.Runner,
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
        self._running: list[Sequence] = []  # decoding; sequence i lives in slot i
        self._chunked: Sequence | None = None  # a long prompt being prefilled in chunks
        self._chunk_slot = limits.max_batch_size - 1  # its slot, kept free of running ones
        self._stopping = False
        self.last_batch_size = 0

    @property
    def cache(self) -> runners.SlotCache:
        """The runner's KV cache (read-only use from other threads: sizes for reports)."""
        return self._runner.cache

    # ---- called from the event loop ----
    def submit(self, seq: Sequence) -> None:
        """Queue a request, or raise QueueFullError when the bounded waiting queue is full."""
        with self._cond:
            self.check_room()
            self._waiting.append(seq)
            self._cond.notify()

    def check_room(self) -> None:
        """Raise QueueFullError when a request queued now would be refused: checked before its
        prompt is tokenized, so an overloaded server spends nothing on requests it turns away
        (racy by design; `submit` makes the binding check)."""
        if len(self._waiting) >= self._limits.max_waiting:
            raise types.QueueFullError(
                f"{len(self._waiting)} requests are waiting (max_waiting="
                f"{self._limits.max_waiting}); retry later"
            )

    def shutdown(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def counts(self) -> tuple[int, int, int]:
        """(running, waiting, cached tokens) - racy by a step at most, fine for gauges."""
        running = list(self._running)
        chunked = self._chunked
        if chunked is not None:
            running.append(chunked)
        return len(running), len(self._waiting), sum(s.cached for s in running)

    # ---- the scheduler thread ----
    def run(self) -> None:
        """Thread body: step until shut down, then end every remaining request as cancelled."""
        with torch.inference_mode():
            while self._next_work():
                plan, admitted = self._admit()
                try:
                    self._step(plan, admitted)
                except Exception as exc:  # a bug or OOM must fail requests, not kill the thread
                    self._fail(exc, admitted)
        with self._cond:
            leftover = self._running + list(self._waiting)
            if self._chunked is not None:
                leftover.append(self._chunked)
            self._running, self._waiting, self._chunked = [], collections.deque(), None
        for seq in leftover:
            self._finish_now(seq, types.FinishReason.CANCELLED)

    def _fail(self, exc: Exception, admitted: list[Sequence]) -> None:
        """End every sequence the failed step touched with the error (the server says INTERNAL)."""
        touched = self._running + admitted + ([self._chunked] if self._chunked else [])
        log.exception("engine step failed; failing %d requests", len(touched))
        for seq in {id(s): s for s in touched}.values():
            seq.emit(exc)
        self._running, self._chunked = [], None

    def _next_work(self) -> bool:
        """Block while idle; False once shutdown was asked."""
        with self._cond:
            while (
                not self._stopping
                and not self._running
                and not self._waiting
                and self._chunked is None
            ):
                self.last_batch_size = 0  # idle: the batch-size gauge reads 0, not the last burst
                self._cond.wait()
            return not self._stopping

    def _admit(self) -> tuple[PrefillPlan, list[Sequence]]:
        """Plan this step's prefill and take the admitted requests (the chunked one included,
        last) off the waiting queue."""
        with self._cond:
            self._waiting = collections.deque(s for s in self._waiting if not s.cancelled)
            chunked = self._chunked
            busy = len(self._running) + (1 if chunked is not None else 0)
            plan = plan_prefill(
                [
                    len(s.prompt_ids) - self._runner.cached_prefix(s.prompt_ids)
                    for s in self._waiting
                ],
                free_slots=self._limits.max_batch_size - busy,
                token_budget=self._limits.prefill_token_budget,
                chunk_left=None if chunked is None else len(chunked.prompt_ids) - chunked.cached,
            )
            taken = plan.admit + (1 if plan.start_chunked else 0)
            return plan, [self._waiting.popleft() for _ in range(taken)]

    def _step(self, plan: PrefillPlan, admitted: list[Sequence]) -> None:
        self._release([i for i, s in enumerate(self._running) if s.cancelled])
        if self._chunked is not None and self._chunked.cancelled:
            self._chunked = None
        live = [*self._running, *([self._chunked] if self._chunked else [])]
        self._runner.cache.ensure(max([s.cached + 1 for s in live] + [1]))
        if admitted or (self._chunked is not None and plan.chunk_tokens):
            self._prefill(plan, admitted)
        if self._running:
            self._decode()

    def _prefill(self, plan: PrefillPlan, admitted: list[Sequence]) -> None:
        """One packed prefill: the chunked prompt's next slice, then whole admitted prompts."""
        whole = admitted[: plan.admit]
        if plan.start_chunked:
            self._chunked = admitted[-1]
            self._chunked.cached = self._runner.copy_prefix(
                self._chunk_slot, self._chunked.prompt_ids
            )
        chunks: list[runners.Chunk] = []
        owners: list[Sequence] = []
        chunked = self._chunked
        if chunked is not None and plan.chunk_tokens:
            ids = chunked.prompt_ids[chunked.cached : chunked.cached + plan.chunk_tokens]
            chunks.append(runners.Chunk(slot=self._chunk_slot, start=chunked.cached, ids=ids))
            owners.append(chunked)
        for slot, seq in enumerate(whole, start=len(self._running)):
            seq.cached = self._runner.copy_prefix(slot, seq.prompt_ids)
            chunks.append(
                runners.Chunk(slot=slot, start=seq.cached, ids=seq.prompt_ids[seq.cached :])
            )
            owners.append(seq)
        logits = self._runner.prefill(chunks)
        for chunk, seq in zip(chunks, owners, strict=True):
            seq.cached = chunk.start + len(chunk.ids)
        self._running.extend(whole)
        done = [s for s in owners if s.cached == len(s.prompt_ids)]
        rows = [i for i, s in enumerate(owners) if s.cached == len(s.prompt_ids)]
        if chunked is not None and chunked.cached == len(chunked.prompt_ids):
            self._promote_chunked(chunked)
        if done:
            self._sample_and_accept(done, logits[rows])

    def _promote_chunked(self, seq: Sequence) -> None:
        """The chunked prompt is complete: move it from its reserved slot into the batch."""
        slot = len(self._running)
        if slot != self._chunk_slot:
            self._runner.cache.move(src=self._chunk_slot, dst=slot, length=seq.cached)
        self._running.append(seq)
        self._chunked = None

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
            if isinstance(token, BaseException):  # this row broke: fail it alone, not the batch
                self._fail_one(seq, token)
                continue
            self._isolated(seq, self._accept, token)
        done = [i for i, s in enumerate(self._running) if s.finish is not None or s.cancelled]
        finished = [self._running[i] for i in done if self._running[i].finish is not None]
        self._release(done)
        # Final events go out after the slot is free: a client that saw its answer never
        # observes its own request still counted as running.
        for seq in finished:
            self._isolated(seq, self._emit_final)

    def _isolated(self, seq: Sequence, action: Callable[..., None], *args: int) -> None:
        """Run one sequence's own work (detokenizing, stop sequences, its events) so that an
        error in it fails that request alone (INTERNAL) while the rest of the batch goes on."""
        try:
            action(seq, *args)
        except Exception as exc:
            log.exception("request %s failed in the engine; its batch goes on", seq.request_id)
            self._fail_one(seq, exc)

    def _fail_one(self, seq: Sequence, exc: BaseException) -> None:
        """End one sequence with an error: it leaves the batch at the next release."""
        seq.emit(exc)
        seq.cancelled = True

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
