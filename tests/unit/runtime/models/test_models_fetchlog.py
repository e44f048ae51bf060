"""`llm-runtime fetch` reports progress as plain log lines (an init container's log is no
terminal): the format, the throttle, the hub's bars turned into lines, and a real fetch with its
output piped."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from llm_runtime.models import fetchlog, manifest

pytestmark = pytest.mark.unit
MIB = 1 << 20
RUNTIME = Path(__file__).resolve().parents[4] / "runtime"


def test_progress_line_shows_bytes_total_percent_and_rate() -> None:
    line = fetchlog.progress_line(
        stage="read", done=48 * MIB, total=int(270.1 * MIB), seconds=48 / 31.2
    )
    assert line == "fetch: read 48.0 MiB / 270.1 MiB (17%) 31.2 MiB/s"


def test_progress_line_without_a_total_and_in_gib() -> None:
    line = fetchlog.progress_line(stage="download", done=15 << 30, total=None, seconds=0.0)
    assert line == "fetch: download 15.0 GiB 0.0 MiB/s"


@pytest.mark.parametrize(
    ("elapsed", "advanced", "total", "expected"),
    [
        (0.1, 5 * MIB, 100 * MIB, False),  # 5% in 0.1 s: not yet
        (0.1, 10 * MIB, 100 * MIB, True),  # a 10% step
        (5.0, 1, 100 * MIB, True),  # the interval passed
        (4.9, 1 * MIB, None, False),  # no total: only the interval counts
        (5.0, 1 * MIB, None, True),
        (60.0, 0, 100 * MIB, False),  # nothing advanced: nothing to say
    ],
)
def test_a_line_is_due_every_interval_or_every_step(
    elapsed: float, advanced: int, total: int | None, expected: bool
) -> None:
    assert fetchlog.due(elapsed=elapsed, advanced=advanced, total=total) is expected


def test_start_and_done_lines_name_source_destination_size_and_digest() -> None:
    start = fetchlog.start_line(
        uri="builtin://m", dst=Path("/models/m"), path=Path("/pkg/m.gguf"), size=101 * MIB
    )
    assert start == "fetch: start builtin://m -> /models/m (/pkg/m.gguf, 101.0 MiB)"
    hub = fetchlog.start_line(uri="hf://o/n", dst=Path("/models/m"), path=None, size=None)
    assert hub == "fetch: start hf://o/n -> /models/m"
    done = functools.partial(
        fetchlog.done_line, uri="file:///m", dst=Path("/d"), size=2 * MIB, digest="sha256:ab"
    )
    wrote = done(seconds=1.25, present=False)
    assert wrote == "fetch: done in 1.2 s: 2.0 MiB from file:///m, wrote /d (digest sha256:ab)"
    kept = done(seconds=0.5, present=True)
    assert kept.endswith("already present at /d (digest sha256:ab verified)")


def test_meter_throttles_its_lines() -> None:
    now = [0.0]
    lines: list[str] = []
    meter = fetchlog.Meter("copy", 100 * MIB, emit=lines.append, clock=lambda: now[0])
    for _ in range(100):  # 1 MiB every 10 ms: a line per 10%
        now[0] += 0.01
        meter.add(MIB)
    assert len(lines) == 10
    assert lines[0] == "fetch: copy 10.0 MiB / 100.0 MiB (10%) 100.0 MiB/s"
    assert lines[-1].startswith("fetch: copy 100.0 MiB / 100.0 MiB (100%)")


def test_hub_bars_feed_the_meter_with_the_bytes_written_only() -> None:
    """What snapshot_download does with its tqdm_class: a file-count bar, a network transfer
    bar and a bytes bar whose total grows as each file's size is learnt."""
    lines: list[str] = []
    meter = fetchlog.Meter("download", None, emit=lines.append)
    bar_class = fetchlog.hub_bar_class(meter)
    files = bar_class(total=2, desc="Fetching 2 files")
    transfer = bar_class(desc="Downloading bytes", total=0, unit="B", unit_scale=True)
    written = bar_class(desc="Reconstructing", total=0, unit="B", unit_scale=True)
    written.total = (written.total or 0) + 30 * MIB
    written.total = (written.total or 0) + 10 * MIB
    for _ in range(40):
        transfer.update(MIB)
        written.update(MIB)
    files.update(2)
    for bar in (files, transfer, written):
        bar.close()
    assert (meter.done, meter.total) == (40 * MIB, 40 * MIB)
    assert lines[-1].startswith("fetch: download 40.0 MiB / 40.0 MiB (100%)")


def _converted_source(folder: Path, *, size: int) -> Path:
    """A converted model directory (manifest and all) holding `size` bytes of weights: fetch
    copies it verbatim, so no weights are ever parsed."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(os.urandom(size))
    source = manifest.SourceInfo(uri="file:///elsewhere", format="hf", sha256="sha256:00")
    built = manifest.build(folder, name="tiny", dtype="bfloat16", source=source)
    manifest.write(folder, built)
    return folder


def _fetch_piped(uri: str, dst: Path) -> subprocess.CompletedProcess[str]:
    """`llm-runtime fetch` as the init container runs it, stdout and stderr pipes."""
    env = {**os.environ, "PYTHONPATH": str(RUNTIME)}
    cmd = [sys.executable, "-m", "llm_runtime", "fetch", uri, str(dst), "--dtype", "bf16"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_piped_fetch_writes_start_progress_and_done_lines(tmp_path: Path) -> None:
    src = _converted_source(tmp_path / "pvc" / "model", size=6 * MIB)
    dst = tmp_path / "dst"
    first = _fetch_piped(f"file://{src}", dst)
    assert first.returncode == 0, first.stderr
    out = first.stdout + first.stderr
    assert "\r" not in out
    lines = [x for x in out.splitlines() if x.startswith("fetch:")]
    assert lines[0].startswith(f"fetch: start file://{src} -> {dst} ({src}, 6.0 MiB)")
    copies = [x for x in lines if x.startswith("fetch: copy ")]
    assert len(copies) >= 5, lines  # a line per 10% of 6 MiB copied in 1 MiB chunks
    assert all(
        re.fullmatch(r"fetch: copy [\d.]+ MiB / 6\.0 MiB \(\d+%\) [\d.]+ MiB/s", x) for x in copies
    )
    assert copies[-1].startswith("fetch: copy 6.0 MiB / 6.0 MiB (100%)")
    assert re.match(
        rf"fetch: done in [\d.]+ s: 6\.0 MiB from file://{src}, wrote {dst} ", lines[-1]
    )
    again = _fetch_piped(f"file://{src}", dst)
    assert again.returncode == 0, again.stderr
    done = [x for x in again.stderr.splitlines() if x.startswith("fetch: done")]
    assert len(done) == 1 and "already present at" in done[0] and "verified" in done[0]
    assert "already up to date" in again.stdout
