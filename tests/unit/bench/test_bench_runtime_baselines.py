"""The runtime benchmark's pure parts: baselines' bookkeeping, memory figures, the verdict lines."""

from __future__ import annotations

import dataclasses
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from bench import baselines, memory, verdicts

pytestmark = pytest.mark.unit


@dataclasses.dataclass
class Clock:
    tokens: int = 0

    def token(self, count: int = 1) -> None:
        self.tokens += count


@dataclasses.dataclass(frozen=True)
class Row:
    design: str
    concurrency: int
    tok_s: float
    ttft_p50: float = 0.1
    ttft_p99: float = 0.1
    tpot_p50: float = 0.05
    peak_rss_mib: float = 1000.0


def test_row_streamer_counts_each_row_until_eos_or_its_own_limit() -> None:
    clocks = [Clock(), Clock(), Clock()]
    streamer = baselines.RowStreamer(clocks, [2, 5, 5], eos=frozenset({0}))
    streamer.put(torch.tensor([[9, 9], [9, 9], [9, 9]]))  # the prompt: not counted
    for step in ([4, 4, 4], [4, 0, 4], [4, 4, 4], [4, 4, 0]):
        streamer.put(torch.tensor(step))
    assert [c.tokens for c in clocks] == [2, 1, 3]
    assert streamer.done() == [True, True, True]


def test_row_stopping_ends_finished_rows_and_everything_on_abort() -> None:
    streamer = baselines.RowStreamer([Clock(), Clock()], [1, 3], eos=frozenset())
    abort = threading.Event()
    criteria = baselines.row_stopping(streamer, abort)
    ids = torch.zeros(2, 4, dtype=torch.long)
    streamer.put(ids)
    streamer.put(torch.tensor([1, 1]))
    assert criteria(ids, None).tolist() == [True, False]
    abort.set()
    assert criteria(ids, None).tolist() == [True, True]


def _prompt(n: int) -> baselines.Prompt:
    return baselines.Prompt(messages=(("user", f"p{n}"),), max_new_tokens=4)


def test_window_server_closes_a_batch_at_max_batch_or_after_the_window() -> None:
    seen: list[list[str]] = []

    def run_batch(
        _loaded: Any, prompts: list[baselines.Prompt], clocks: list[Any], **_: Any
    ) -> None:
        seen.append([p.messages[0][1] for p in prompts])

    server = baselines.WindowServer(None, window=0.2, max_batch=2, run_batch=run_batch)
    futures = [server.submit(_prompt(i), Clock()) for i in range(3)]
    started = time.perf_counter()
    for f in futures:
        f.result(timeout=5)
    server.stop()
    assert seen == [["p0", "p1"], ["p2"]]  # full batch at once, the lone one after its window
    assert time.perf_counter() - started >= 0.2
    assert server.batch_sizes == [2, 1]


def test_window_server_fails_the_batch_whose_generate_raised() -> None:
    def run_batch(*_: Any, **__: Any) -> None:
        raise RuntimeError("boom")

    server = baselines.WindowServer(None, window=0.0, max_batch=4, run_batch=run_batch)
    future = server.submit(_prompt(0), Clock())
    with pytest.raises(RuntimeError, match="boom"):
        future.result(timeout=5)
    server.stop()


def test_kv_bytes_per_token_follows_the_config() -> None:
    smollm2 = SimpleNamespace(
        num_attention_heads=9, num_key_value_heads=3, hidden_size=576, num_hidden_layers=30
    )
    assert memory.kv_bytes_per_token(smollm2, dtype_bytes=2) == 2 * 30 * 3 * 64 * 2


def test_status_fields_are_read_in_kib() -> None:
    text = "Name:\tpython\nVmHWM:\t  123456 kB\nVmRSS:\t  100 kB\n"
    assert memory.status_kib("VmHWM", text) == 123456
    assert memory.status_kib("VmSwap", text) == 0


def test_peak_rss_keeps_the_largest_sample() -> None:
    values = iter(range(1, 1000))
    with memory.PeakRSS(sample=lambda: next(values), interval=0.001) as peak:
        time.sleep(0.02)
    assert peak.peak_sample > 1
    assert peak.peak_mib > 0


def test_verdict_reports_static_ratios_and_issue_14_targets() -> None:
    rows = [
        Row("engine", 1, 30.0),
        Row("static", 1, 20.0),
        Row("engine", 32, 700.0, ttft_p50=0.4),
        Row("static", 32, 300.0),
        Row("naive", 32, 20.0),
    ]
    lines = verdicts.verdict(rows)
    assert "N=1   engine/static tok/s =  1.50x" in lines
    assert "  target N=1 >= 2x static (issue 14): FAIL" in lines
    assert "  target N=32 >= 2x static (issue 14): PASS" in lines
    assert "  target N=32 >= 15x naive: PASS" in lines
    assert "  target N=32 p50 TTFT <= 0.5 s (issue 14): PASS" in lines


def test_memory_lines_flag_a_disagreeing_kv_size() -> None:
    lines = verdicts.memory_lines(config_bytes=100, engine_bytes=200, peaks=[(64, 1.0, 900.0)])
    assert "DIFFERS" in lines[0]
    assert "5,243 token slots" in lines[1]
