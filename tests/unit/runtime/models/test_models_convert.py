"""Convert -> load round trips on tiny random models: same logits, verified on load, fetch is
idempotent by digest and repairs a damaged destination."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from llm_runtime.models import cli, convert, errors, fetch, formats, loading, manifest, tiny

pytestmark = pytest.mark.unit
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.make_tiny_model(tmp_path_factory.mktemp("src") / "tiny", seed=0)


def _logits(loaded: loading.LoadedModel) -> torch.Tensor:
    ids = loaded.tokenizer.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out: Any = loaded.model(**ids)
    logits: torch.Tensor = out.logits.float()
    return logits


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_model_is_fast_and_seeded(tiny_dir: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    again = tiny.make_tiny_model(tmp_path / "again", seed=0)
    assert time.monotonic() - started < 2.0
    other = tiny.make_tiny_model(tmp_path / "other", seed=1)
    weights = "model.safetensors"
    assert _sha(again / weights) == _sha(tiny_dir / weights)
    assert _sha(other / weights) != _sha(tiny_dir / weights)


def test_tiny_model_has_a_chat_template_and_never_says_paris(tiny_dir: Path) -> None:
    loaded = loading.load_model(tiny_dir, dtype="fp32")
    ids = loaded.tokenizer.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    text = loaded.tokenizer.decode(ids["input_ids"][0])
    assert text.endswith("<|im_start|>assistant\n")
    out = loaded.model.generate(**ids, max_new_tokens=16, do_sample=False)
    answer = loaded.tokenizer.decode(out[0][ids["input_ids"].shape[1] :])
    assert "Paris" not in answer


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_converted_model_gives_the_same_logits(tiny_dir: Path, tmp_path: Path, dtype: str) -> None:
    made = convert.convert(tiny_dir, tmp_path / "conv", dtype=dtype)
    original = loading.load_model(tiny_dir, dtype=dtype, device="cpu")
    converted = loading.load_model(tmp_path / "conv", dtype=dtype, device="cpu")
    assert made.dtype == original.dtype == converted.dtype
    assert torch.equal(_logits(original), _logits(converted))


def test_loaded_converted_model_reports_what_the_runtime_needs(
    tiny_dir: Path, tmp_path: Path
) -> None:
    made = convert.convert(tiny_dir, tmp_path / "conv", dtype="bf16")
    loaded = loading.load_model(tmp_path / "conv", dtype="auto")
    assert loaded.format == "converted"
    assert loaded.name == "tiny"
    assert loaded.revision == made.digest
    assert loaded.context_length == tiny.CONTEXT_LENGTH
    assert loaded.device == "cpu"
    assert loaded.dtype in {"bfloat16", "float32"}
    assert loaded.load_seconds > 0
    assert not loaded.model.training
    assert loading.load_model(tmp_path / "conv", revision="r7", name="n").revision == "r7"


def test_corrupted_converted_model_is_rejected_naming_the_file(
    tiny_dir: Path, tmp_path: Path
) -> None:
    convert.convert(tiny_dir, tmp_path / "conv", dtype="bf16")
    weights = tmp_path / "conv" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(errors.ModelIntegrityError, match=r"model\.safetensors is corrupted"):
        loading.load_model(tmp_path / "conv")


def test_convert_writes_the_manifest_and_readable_files(tiny_dir: Path, tmp_path: Path) -> None:
    made = convert.convert(tiny_dir, tmp_path / "conv", dtype="fp32")
    assert manifest.read_verified(tmp_path / "conv") == made
    assert made.source.format == "hf"
    assert made.source.sha256 == manifest.tree_digest(tiny_dir)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(made.files)
    for name in made.files:
        assert (tmp_path / "conv" / name).stat().st_mode & 0o044 == 0o044
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert left == ["conv"]  # no conv.tmp / conv.old left behind


def test_convert_needs_an_explicit_dtype(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="explicit --dtype"):
        convert.convert(tiny_dir, tmp_path / "conv", dtype="auto")


def test_fetch_twice_is_a_no_op_and_says_so(tiny_dir: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    first = fetch.fetch(f"file://{tiny_dir}", dst, dtype="bf16")
    stamps = {p.name: p.stat().st_mtime_ns for p in dst.iterdir()}
    second = fetch.fetch(str(tiny_dir), dst, dtype="bf16")
    assert first.outcome is fetch.Outcome.CONVERTED
    assert second.outcome is fetch.Outcome.UP_TO_DATE
    assert second.manifest == first.manifest
    assert {p.name: p.stat().st_mtime_ns for p in dst.iterdir()} == stamps
    third = fetch.fetch(str(tiny_dir), dst, dtype="fp32")
    assert third.outcome is fetch.Outcome.CONVERTED
    assert third.manifest.dtype == "float32"


def test_fetch_replaces_a_changed_source_and_repairs_damage(tiny_dir: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    first = fetch.fetch(str(tiny_dir), dst)
    (dst / "config.json").write_text("{}")
    repaired = fetch.fetch(str(tiny_dir), dst)
    assert repaired.outcome is fetch.Outcome.CONVERTED
    assert repaired.manifest.digest == first.manifest.digest
    changed = tiny.make_tiny_model(tmp_path / "v2", seed=5)
    moved = fetch.fetch(str(changed), dst)
    assert moved.outcome is fetch.Outcome.CONVERTED
    assert moved.manifest.digest != first.manifest.digest


def test_fetch_of_a_converted_model_copies_it_verbatim(tiny_dir: Path, tmp_path: Path) -> None:
    made = convert.convert(tiny_dir, tmp_path / "pvc" / "model", dtype="bf16")
    got = fetch.fetch(f"file://{tmp_path}/pvc/model", tmp_path / "dst", dtype="bf16")
    assert got.manifest == made
    again = fetch.fetch(f"file://{tmp_path}/pvc/model", tmp_path / "dst", dtype="bf16")
    assert again.outcome is fetch.Outcome.UP_TO_DATE


def test_fetch_never_overwrites_a_folder_that_is_not_a_model(
    tiny_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    with pytest.raises(errors.ModelError, match="refusing to overwrite"):
        fetch.fetch(str(tiny_dir), home)
    assert (home / "notes.txt").read_text() == "mine"


def test_cli_convert_then_fetch_reports_up_to_date(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = str(tmp_path / "dst")
    assert cli.main(["convert", str(tiny_dir), dst, "--dtype", "bf16"]) == cli.EXIT_OK
    assert f"converted {tiny_dir} -> {dst} (bfloat16, sha256:" in capsys.readouterr().out
    assert cli.main(["fetch", f"file://{tiny_dir}", dst]) == cli.EXIT_OK
    assert "already up to date" in capsys.readouterr().out
    (tmp_path / "dst" / "tokenizer.json").write_text("{}")
    assert cli.main(["convert", str(tmp_path / "dst"), str(tmp_path / "x")]) == cli.EXIT_MODEL
    assert "tokenizer.json is" in capsys.readouterr().err


def test_hf_fetch_goes_through_the_real_hub_client_and_its_cache(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """An hf:// URI resolved by huggingface_hub from a pre-seeded cache (HF_HUB_OFFLINE=1, as in
    an air-gapped cluster whose HF_HOME volume was filled beforehand), twice: fetched, then a
    no-op."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf-home" / "hub" / "models--org--tiny"
    shutil.copytree(tiny_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    dst = str(tmp_path / "dst")
    uris = ["hf://org/tiny@main", "hf://org/tiny", "hf://org/tiny@main/missing.gguf"]
    script = (
        "import sys; from llm_runtime.models import cli; "
        f"print([cli.main(['fetch', uri, {dst!r}]) for uri in {uris!r}])"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[4] / "runtime"),
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"fetched: hf://org/tiny@main -> {dst} (bfloat16, sha256:")
    assert lines[1].startswith(f"already up to date: hf://org/tiny -> {dst}")
    assert lines[2] == str([cli.EXIT_OK, cli.EXIT_OK, cli.EXIT_SOURCE])
    assert "hf://org/tiny@main/missing.gguf: the repo has no file missing.gguf" in done.stderr
    assert manifest.read_verified(Path(dst)).name == "org/tiny"


def test_concurrent_fetches_into_one_volume_take_turns(tiny_dir: Path, tmp_path: Path) -> None:
    outcomes: list[fetch.Outcome] = []

    def one() -> None:
        outcomes.append(fetch.fetch(str(tiny_dir), tmp_path / "shared").outcome)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == [fetch.Outcome.CONVERTED, fetch.Outcome.UP_TO_DATE]
    manifest.read_verified(tmp_path / "shared")


def test_unreadable_weights_in_a_plain_hf_dir_are_a_format_error(
    tiny_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(errors.ModelFormatError, match=f"cannot load the model at {broken}"):
        loading.load_model(broken)
    assert formats.locate(broken).format is formats.ModelFormat.HF
