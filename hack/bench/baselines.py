"""The designs the engine is measured against, all on the engine's own model object in one process.

* `NaiveServer`: one `model.generate()` per request, one at a time under a lock.
* `static_burst`: transformers' `model.generate()` on one left-padded batch of every request of a
  burst, greedy - not a server, the simplest thing a user could write (issue 14's "static").
* `WindowServer` (`traffic_bench.py`): a static-batching server. A batch closes `window` seconds
  after its first request arrived, or at `max_batch` requests, whichever comes first; it then runs
  one `generate()` call over the batch while new arrivals queue for the next one.

The batch designs stream: each row's tokens are timestamped as `generate()` produces them (a
`BaseStreamer` that sees every step), so their TTFT is the end of the batch's prefill, not the end
of the call - the strongest form of the baseline. A row stops counting at EOS or at its own
`max_new_tokens` (`RowLimits`), and the call ends when every row has.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class Clock(Protocol):
    """runtime_bench.Timing: `token(count)` stamps first and last token times."""

    tokens: int

    def token(self, count: int = 1) -> None: ...


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One request of a workload: its chat text (rendered by the chat template) and length."""

    messages: tuple[tuple[str, str], ...]
    max_new_tokens: int


def render(tokenizer: Any, messages: Sequence[tuple[str, str]]) -> str:
    """The chat template's text for `messages`, as the engine renders it."""
    chat = [{"role": r, "content": c} for r, c in messages]
    return str(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))


def pad_id(tokenizer: Any) -> int:
    value = tokenizer.pad_token_id
    return int(tokenizer.eos_token_id if value is None else value)


class RowStreamer:
    """Timestamps each row's tokens for `generate()` on a batch: the first `put` is the prompt,
    each later one a `[batch]` tensor of one step's tokens. A row stops counting at an EOS id or
    at its own limit; `done()` tells the stopping criterion which rows are finished."""

    def __init__(self, clocks: Sequence[Clock], limits: Sequence[int], eos: frozenset[int]) -> None:
        self._clocks, self._limits, self._eos = list(clocks), list(limits), eos
        self._finished = [False] * len(self._clocks)
        self._seen_prompt = False

    def put(self, value: Any) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self._finished[row]:
                continue
            if int(token) in self._eos:
                self._finished[row] = True
                continue
            self._clocks[row].token()
            self._finished[row] = self._clocks[row].tokens >= self._limits[row]

    def end(self) -> None:
        pass

    def done(self) -> list[bool]:
        return list(self._finished)


def row_stopping(streamer: RowStreamer, abort: threading.Event | None = None) -> Any:
    """A stopping criterion ending each row when the streamer says it is finished (or all rows
    once `abort` is set); transformers ends the call when every row is."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Rows(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if abort is not None and abort.is_set():
                return torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            return torch.tensor(streamer.done(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Rows()])


def eos_ids(loaded: Any) -> frozenset[int]:
    from llm_runtime.engine import core

    return core.eos_token_ids(loaded.model, loaded.tokenizer)


def generate_batch(
    loaded: Any,
    prompts: Sequence[Prompt],
    clocks: Sequence[Clock],
    *,
    abort: threading.Event | None = None,
) -> None:
    """One left-padded, greedy `generate()` call over `prompts`, timestamping into `clocks`."""
    import torch

    tokenizer, model = loaded.tokenizer, loaded.model
    texts = [render(tokenizer, p.messages) for p in prompts]
    batch = tokenizer(
        texts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt"
    )
    limits = [p.max_new_tokens for p in prompts]
    streamer = RowStreamer(clocks, limits, eos_ids(loaded))
    with torch.inference_mode():
        model.generate(
            **batch.to(model.device),
            max_new_tokens=max(limits),
            do_sample=False,
            streamer=streamer,
            stopping_criteria=row_stopping(streamer, abort),
            pad_token_id=pad_id(tokenizer),
        )


class NaiveServer:
    """The baseline: every request runs `model.generate()` alone, one at a time under a lock."""

    def __init__(self, loaded: Any) -> None:
        self._loaded = loaded
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=64)

    def generate(self, prompt: Prompt, clock: Clock) -> None:
        with self._lock:
            generate_batch(self._loaded, [prompt], [clock])

    def submit(self, prompt: Prompt, clock: Clock) -> concurrent.futures.Future[None]:
        return self._pool.submit(self.generate, prompt, clock)


@dataclasses.dataclass
class _Pending:
    prompt: Prompt
    clock: Clock
    arrived: float
    future: concurrent.futures.Future[None]


class WindowServer:
    """Static batching: a batch closes `window` seconds after its first request or at
    `max_batch` requests; one `generate()` call serves it; arrivals meanwhile wait for the next."""

    def __init__(
        self,
        loaded: Any,
        *,
        window: float,
        max_batch: int,
        run_batch: Callable[..., None] = generate_batch,
    ) -> None:
        self._loaded, self._window, self._max_batch = loaded, window, max_batch
        self._run_batch = run_batch
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._stopping = False
        self.abort = threading.Event()  # ends the batch in flight (the benchmark's time limit)
        self.batch_sizes: list[int] = []
        self._thread = threading.Thread(target=self._loop, name="window-server", daemon=True)
        self._thread.start()

    def submit(self, prompt: Prompt, clock: Clock) -> concurrent.futures.Future[None]:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._cond:
            self._queue.append(_Pending(prompt, clock, time.perf_counter(), future))
            self._cond.notify()
        return future

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()

    def _take(self) -> list[_Pending]:
        """Block until a batch closes; [] once stopped."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            while not self._stopping and len(self._queue) < self._max_batch:
                left = self._queue[0].arrived + self._window - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._stopping:
                return []
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            return batch

    def _loop(self) -> None:
        while batch := self._take():
            self.batch_sizes.append(len(batch))
            try:
                self._run_batch(
                    self._loaded,
                    [p.prompt for p in batch],
                    [p.clock for p in batch],
                    abort=self.abort,
                )
            except Exception as exc:
                for p in batch:
                    p.future.set_exception(exc)
                continue
            for p in batch:
                p.future.set_result(None)
        with self._cond:
            for p in self._queue:
                p.future.cancel()
