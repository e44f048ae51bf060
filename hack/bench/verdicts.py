"""The runtime benchmark's table, ratios and targets (pure: rows in, lines out).

Targets, all on ratios measured in one run:
* issue 14: engine >= 2x static `generate()` tok/s at N=1, 32 and 64; TTFT p50 <= 0.5 s at N=32;
* earlier (the engine's first version): N=1 no slower than naive, N=32 >= 15x naive when naive
  ran at 32 (`--naive-max 32`), TTFT p50 <= 1.5 s at N=32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

STATIC_RATIO_AT = (1, 32, 64)  # issue 14: engine >= 2x static here
STATIC_RATIO = 2.0
TTFT_P50_AT_32 = 0.5


class Row(Protocol):
    @property
    def design(self) -> str: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def tok_s(self) -> float: ...
    @property
    def ttft_p50(self) -> float: ...
    @property
    def ttft_p99(self) -> float: ...
    @property
    def tpot_p50(self) -> float: ...
    @property
    def peak_rss_mib(self) -> float: ...


def table(rows: Sequence[Row]) -> list[str]:
    lines = [
        f"{'design':<8} {'N':>3} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p99':>9} {'TPOT p50':>9} "
        f"{'peak RSS':>9}"
    ]
    for r in rows:
        lines.append(
            f"{r.design:<8} {r.concurrency:>3} {r.tok_s:>8.1f} {r.ttft_p50:>8.2f}s "
            f"{r.ttft_p99:>8.2f}s {r.tpot_p50 * 1000:>7.0f}ms {r.peak_rss_mib:>6.0f}MiB"
        )
    return lines


def _check(label: str, ok: bool) -> str:
    return f"  target {label}: {'PASS' if ok else 'FAIL'}"


def _naive_lines(n: int, eng: Row, naive: Row) -> list[str]:
    ratio = eng.tok_s / naive.tok_s
    lines = [f"N={n:<3} engine/naive  tok/s = {ratio:5.2f}x"]
    if n == 1:
        lines.append(_check("N=1 no slower than naive", ratio >= 1))
    if n == 32:
        lines.append(_check("N=32 >= 15x naive", ratio >= 15))
    return lines


def _static_lines(n: int, eng: Row, static: Row) -> list[str]:
    ratio = eng.tok_s / static.tok_s
    lines = [f"N={n:<3} engine/static tok/s = {ratio:5.2f}x"]
    if n in STATIC_RATIO_AT:
        lines.append(_check(f"N={n} >= {STATIC_RATIO:g}x static (issue 14)", ratio >= STATIC_RATIO))
    return lines


def verdict(rows: Sequence[Row]) -> list[str]:
    """Ratios per level and the targets whose designs ran; lines to print."""
    by = {(r.design, r.concurrency): r for r in rows}
    lines: list[str] = []
    for n in sorted({r.concurrency for r in rows if r.design == "engine"}):
        eng = by[("engine", n)]
        naive, static = by.get(("naive", n)), by.get(("static", n))
        if naive is not None:
            lines += _naive_lines(n, eng, naive)
        if static is not None:
            lines += _static_lines(n, eng, static)
        if n == 32:
            lines.append(_check("N=32 p50 TTFT <= 1.5 s", eng.ttft_p50 <= 1.5))
            lines.append(
                _check(
                    f"N=32 p50 TTFT <= {TTFT_P50_AT_32} s (issue 14)",
                    eng.ttft_p50 <= TTFT_P50_AT_32,
                )
            )
    return lines


def memory_lines(
    *, config_bytes: int, engine_bytes: int, peaks: Sequence[tuple[int, float, float]]
) -> list[str]:
    """KV bytes per token from the model config and from the engine's cache, and per engine
    burst (N, peak KV MiB, peak RSS MiB) what that allocation was."""
    same = "agrees" if config_bytes == engine_bytes else "DIFFERS"
    lines = [
        f"KV bytes/token: {config_bytes} from the config (2 x layers x kv_heads x head_dim x "
        f"dtype bytes), {engine_bytes} from the engine's KVCache ({same})"
    ]
    for n, kv_mib, rss_mib in peaks:
        tokens = kv_mib * 2**20 / engine_bytes if engine_bytes else 0.0
        lines.append(
            f"N={n:<3} engine KV cache at its largest {kv_mib:7.1f} MiB "
            f"(= {tokens:,.0f} token slots), peak RSS {rss_mib:.0f} MiB"
        )
    return lines
