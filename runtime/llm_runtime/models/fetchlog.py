"""What `llm-runtime fetch` says while it works: plain log lines, on a terminal or not.

An init container's stdout is a pod log, where carriage-return bars are unreadable, so a fetch
writes one start line (source, destination, size when known), a throttled progress line per
stage (at most every `EVERY_S` seconds, or every `EVERY_PCT` percent of a known total), and one
done line (bytes, seconds, digest written or already present):

    fetch: start builtin://smollm2-135m-instruct -> /models/m (/site/SmolLM2.gguf, 101.2 MiB)
    fetch: read 48.0 MiB / 101.2 MiB (47%) 31.2 MiB/s
    fetch: done in 9.8 s: 101.2 MiB from builtin://smollm2-135m-instruct, wrote /models/m (...)

The formatting and the throttle are pure functions; `Meter` only adds a clock and a lock (the
Hugging Face Hub reports from several download threads). Paths and URIs are logged, nothing else.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tqdm.asyncio

if TYPE_CHECKING:
    _Bar = tqdm.asyncio.tqdm_asyncio[Any]  # what snapshot_download's tqdm_class is typed as
else:  # tqdm's classes are generic in their stubs only
    _Bar = tqdm.asyncio.tqdm_asyncio

Emit = Callable[[str], None]
OnBytes = Callable[[int], None]  # called with each chunk's size as bytes are read or written

EVERY_S = 5.0
EVERY_PCT = 10.0
_PREFIX = "fetch:"
_MIB = float(1 << 20)
_GIB = float(1 << 30)


def log_line(text: str) -> None:
    """The default sink: one line on stderr, flushed (a pod log shows it at once)."""
    print(text, file=sys.stderr, flush=True)


def size_text(n: float) -> str:
    """Bytes as MiB, or GiB from 10 GiB on: `48.0 MiB`, `14.2 GiB`."""
    if n >= 10 * _GIB:
        return f"{n / _GIB:.1f} GiB"
    return f"{n / _MIB:.1f} MiB"


def progress_line(*, stage: str, done: int, total: int | None, seconds: float) -> str:
    """`fetch: read 48.0 MiB / 270.1 MiB (17%) 31.2 MiB/s` (no total: no fraction)."""
    rate = f"{size_text(done / seconds if seconds > 0 else 0.0)}/s"
    if not total:
        return f"{_PREFIX} {stage} {size_text(done)} {rate}"
    pct = min(100, int(done * 100 / total))
    return f"{_PREFIX} {stage} {size_text(done)} / {size_text(total)} ({pct}%) {rate}"


def due(
    *,
    elapsed: float,
    advanced: int,
    total: int | None,
    every_s: float = EVERY_S,
    every_pct: float = EVERY_PCT,
) -> bool:
    """Whether a progress line is due: `elapsed` seconds and `advanced` bytes since the last
    one (or since the start); nothing advanced, nothing to say."""
    if advanced <= 0:
        return False
    if elapsed >= every_s:
        return True
    return bool(total) and advanced * 100 >= every_pct * (total or 0)


def start_line(*, uri: str, dst: Path, path: Path | None, size: int | None) -> str:
    """`fetch: start URI -> DST (local path, size)`; an hf:// source has neither yet."""
    where = f"{path}, {size_text(size)}" if path is not None and size is not None else ""
    return f"{_PREFIX} start {uri} -> {dst}" + (f" ({where})" if where else "")


def done_line(*, uri: str, dst: Path, size: int, seconds: float, digest: str, present: bool) -> str:
    """The last line: what it cost and what DST now holds."""
    if present:
        what = f"already present at {dst} (digest {digest} verified)"
    else:
        what = f"wrote {dst} (digest {digest})"
    return f"{_PREFIX} done in {seconds:.1f} s: {size_text(size)} from {uri}, {what}"


def stage_line(text: str) -> str:
    """A step with no byte count (converting the weights)."""
    return f"{_PREFIX} {text}"


class Meter:
    """Counts the bytes of one stage and emits a progress line whenever one is `due`."""

    def __init__(
        self,
        stage: str,
        total: int | None,
        *,
        emit: Emit = log_line,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage, self.total, self._emit, self._clock = stage, total, emit, clock
        self.done = 0
        self._started = self._last_at = clock()
        self._last_done = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        """`n` more bytes (an OnBytes callback)."""
        with self._lock:
            self.done += n
            now = self._clock()
            advanced = self.done - self._last_done
            if not due(elapsed=now - self._last_at, advanced=advanced, total=self.total):
                return
            self._last_at, self._last_done = now, self.done
            line = progress_line(
                stage=self.stage, done=self.done, total=self.total, seconds=now - self._started
            )
        self._emit(line)

    def grow(self, n: int) -> None:
        """The total grows by `n` (the hub learns file sizes as downloads start)."""
        with self._lock:
            self.total = (self.total or 0) + n


def hub_bar_class(meter: Meter) -> type[_Bar]:
    """A `tqdm_class` for `huggingface_hub.snapshot_download` (its documented option) that draws
    nothing and feeds `meter` the bytes written to disk. The hub aggregates every file's bytes
    into a few shared bars: the bytes bar counts, the file-count bar (unit "it") and the network
    transfer bar (whose total is a guess it keeps raising) are ignored."""

    class _HubMeter(_Bar):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            desc = str(kwargs.get("desc") or "")
            self._counts = kwargs.get("unit") == "B" and not desc.startswith("Downloading bytes")
            kwargs.pop("name", None)
            # tqdm sets `total` in its __init__: __setattr__ grows the meter by it
            super().__init__(*args, **{**kwargs, "file": _Null(), "disable": False})

        def __setattr__(self, key: str, value: Any) -> None:
            if key == "total" and getattr(self, "_counts", False) and value:
                meter.grow(int(value) - int(getattr(self, "total", 0) or 0))
            super().__setattr__(key, value)

        def update(self, n: float | None = 1) -> bool | None:
            if self._counts and n:
                meter.add(int(n))
            return super().update(n)

    return _HubMeter


class _Null:
    """A stream that drops what tqdm draws."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None
