"""Memory figures for the runtime benchmark: peak RSS of a burst and the KV cache's bytes per token.

Peak RSS is Linux's high-water mark of this process (`VmHWM` in /proc/self/status), reset before
each burst by writing 5 to /proc/self/clear_refs, so each design's figure is its own burst's peak
(the model, loaded once, is in every figure). Where the reset is refused the figure is the
process's peak so far, and `PeakRSS.reset_ok` says so.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def status_kib(field: str, text: str | None = None) -> int:
    """A `kB` field of /proc/self/status (`VmRSS`, `VmHWM`); 0 where absent."""
    body = STATUS.read_text() if text is None else text
    for line in body.splitlines():
        name, _, rest = line.partition(":")
        if name == field:
            return int(rest.split()[0])
    return 0


def reset_peak() -> bool:
    """Reset the RSS high-water mark to the current RSS; False where the kernel refuses."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def kv_bytes_per_token(config: Any, *, dtype_bytes: int) -> int:
    """K and V bytes of one token in every layer: 2 x layers x kv_heads x head_dim x dtype."""
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return 2 * int(config.num_hidden_layers) * kv_heads * head_dim * dtype_bytes


@dataclasses.dataclass
class PeakRSS:
    """Context manager: the burst's peak RSS (MiB) and, when `sample` is given, the largest value
    that callable returned, polled every `interval` seconds (the engine's KV allocation)."""

    sample: Any = None  # Callable[[], int] | None
    interval: float = 0.02
    peak_mib: float = 0.0
    peak_sample: int = 0
    reset_ok: bool = False
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PeakRSS:
        self.reset_ok = reset_peak()
        if self.sample is not None:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mib = status_kib("VmHWM") / 1024

    def _poll(self) -> None:
        while True:
            self.peak_sample = max(self.peak_sample, int(self.sample()))
            if self._stop.wait(self.interval):
                return
