"""Recognising what a model path holds, and publishing a converted model without half states."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_runtime.models import errors, formats, manifest, publish

pytestmark = pytest.mark.unit
F = formats.ModelFormat


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ({"llm-manifest.json", "config.json", "model.safetensors"}, F.CONVERTED),
        ({"config.json", "model.safetensors", "tokenizer.json"}, F.HF),
        ({"config.json", "pytorch_model.bin"}, F.HF),
        ({"config.json", "model.safetensors", "model.Q4.gguf"}, F.HF),
        ({"model.Q4_1.gguf", "README.md"}, F.GGUF),
        ({"config.json"}, None),
        ({"model.safetensors"}, None),
        (set(), None),
    ],
)
def test_classify(names: set[str], expected: formats.ModelFormat | None) -> None:
    assert formats.classify(frozenset(names)) == expected


def _touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("x")
    return folder


def test_gguf_file_and_its_folder_locate_the_same_file(tmp_path: Path) -> None:
    folder = _touch(tmp_path / "m", "a.gguf")
    by_file = formats.locate(folder / "a.gguf")
    by_dir = formats.locate(folder)
    assert by_file == by_dir == formats.Located(F.GGUF, folder, "a.gguf")


def test_two_gguf_files_are_ambiguous(tmp_path: Path) -> None:
    folder = _touch(tmp_path / "m", "a.gguf", "b.gguf")
    with pytest.raises(errors.ModelFormatError, match=r"2 \.gguf files \(a\.gguf, b\.gguf\)"):
        formats.locate(folder)


@pytest.mark.parametrize(
    ("names", "message"),
    [((), "holds no model"), (("weights.pt",), "holds no model")],
)
def test_folder_without_a_model(tmp_path: Path, names: tuple[str, ...], message: str) -> None:
    with pytest.raises(errors.ModelFormatError, match=message):
        formats.locate(_touch(tmp_path / "m", *names))


def test_missing_path_and_non_gguf_file(tmp_path: Path) -> None:
    with pytest.raises(errors.ModelFormatError, match="does not exist"):
        formats.locate(tmp_path / "nope")
    with pytest.raises(errors.ModelFormatError, match=r"not a \.gguf file"):
        formats.locate(_touch(tmp_path, "w.bin") / "w.bin")


def test_forced_format(tmp_path: Path) -> None:
    converted = _touch(tmp_path / "c", "llm-manifest.json", "config.json", "model.safetensors")
    assert formats.locate(converted, expected="hf").format is F.HF
    assert formats.locate(converted, expected="converted").format is F.CONVERTED
    with pytest.raises(errors.ModelFormatError, match="expected to be gguf but is converted"):
        formats.locate(converted, expected="gguf")
    mixed = _touch(tmp_path / "m", "config.json", "model.safetensors", "x.gguf")
    assert formats.locate(mixed, expected="gguf") == formats.Located(F.GGUF, mixed, "x.gguf")


SOURCE = manifest.SourceInfo(uri="u", format="hf", sha256="sha256:0")


def _staged(dst: Path, content: str) -> Path:
    staging = publish.fresh_staging(dst)
    (staging / "config.json").write_text(content)
    manifest.write(staging, manifest.build(staging, name="n", dtype="float32", source=SOURCE))
    return staging


def test_publish_replaces_the_old_model_and_leaves_no_staging(tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    publish.publish(_staged(dst, "one"), dst)
    publish.publish(_staged(dst, "two"), dst)
    assert (dst / "config.json").read_text() == "two"
    manifest.read_verified(dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst"]


def test_publish_in_place_moves_files_then_manifest(tmp_path: Path) -> None:
    dst = _touch(tmp_path / "mnt", "stale.safetensors")
    staging = dst / publish.IN_PLACE_STAGING
    staging.mkdir()
    (staging / "config.json").write_text("new")
    manifest.write(staging, manifest.build(staging, name="n", dtype="float32", source=SOURCE))
    publish.publish(staging, dst)
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "llm-manifest.json"]
    manifest.read_verified(dst)


def test_refuses_to_overwrite_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    home = _touch(tmp_path / "home", "thesis.tex")
    with pytest.raises(errors.ModelError, match="refusing to overwrite"):
        publish.check_replaceable(home)
    publish.check_replaceable(home, force=True)
    publish.check_replaceable(tmp_path / "absent")
    publish.check_replaceable(_touch(tmp_path / "empty"))
    publish.check_replaceable(_touch(tmp_path / "ours", "llm-manifest.json", "x"))
