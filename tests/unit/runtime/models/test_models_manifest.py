"""The manifest catches every kind of damage to a converted model and names the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llm_runtime.models import errors, formats, manifest

pytestmark = pytest.mark.unit

SOURCE = manifest.SourceInfo(uri="file:///src.gguf", format="gguf", sha256="sha256:00")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "tokenizer.json").write_text("{}")
    manifest.write(folder, manifest.build(folder, name="m", dtype="bfloat16", source=SOURCE))
    return folder


def test_intact_model_verifies_and_round_trips(model_dir: Path) -> None:
    read = manifest.read_verified(model_dir)
    assert read.name == "m"
    assert read.dtype == "bfloat16"
    assert read.source == SOURCE
    assert set(read.files) == {"config.json", "model.safetensors", "tokenizer.json"}
    assert read.files["model.safetensors"].size == 256 * 64


def test_corrupted_file_is_named(model_dir: Path) -> None:
    data = bytearray((model_dir / "model.safetensors").read_bytes())
    data[100] ^= 0xFF
    (model_dir / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(errors.ModelIntegrityError, match=r"model\.safetensors is corrupted"):
        manifest.read_verified(model_dir)


def test_truncated_file_is_named_with_both_sizes(model_dir: Path) -> None:
    (model_dir / "tokenizer.json").write_text("")
    with pytest.raises(errors.ModelIntegrityError, match=r"tokenizer\.json is 0 bytes.*says 2"):
        manifest.read_verified(model_dir)


def test_missing_file_is_named(model_dir: Path) -> None:
    (model_dir / "tokenizer.json").unlink()
    with pytest.raises(errors.ModelIntegrityError, match=r"tokenizer\.json is listed .* missing"):
        manifest.read_verified(model_dir)


def test_file_without_manifest_entry_is_rejected(model_dir: Path) -> None:
    (model_dir / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(errors.ModelIntegrityError, match=r"extra\.safetensors is not listed"):
        manifest.read_verified(model_dir)


def test_dotfiles_and_lost_found_are_not_part_of_the_model(model_dir: Path) -> None:
    (model_dir / ".staging").mkdir()
    (model_dir / ".staging" / "x").write_text("x")
    (model_dir / "lost+found").mkdir()
    (model_dir / ".editor.swp").write_text("x")
    manifest.read_verified(model_dir)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(errors.ModelIntegrityError, match=r"llm-manifest\.json is missing"):
        manifest.read(tmp_path)


def test_manifest_whose_digest_does_not_match_its_files_is_rejected(model_dir: Path) -> None:
    path = model_dir / formats.MANIFEST_NAME
    doc = json.loads(path.read_text())
    doc["files"]["config.json"]["sha256"] = "0" * 64
    path.write_text(json.dumps(doc))
    with pytest.raises(errors.ModelIntegrityError, match="digest does not match"):
        manifest.read(model_dir)


@pytest.mark.parametrize("text", ["not json", "{}", '{"format_version": 1}'])
def test_malformed_manifest_is_an_integrity_error(model_dir: Path, text: str) -> None:
    (model_dir / formats.MANIFEST_NAME).write_text(text)
    with pytest.raises(errors.ModelIntegrityError, match="not a valid manifest"):
        manifest.read(model_dir)


def test_future_format_version_is_refused(model_dir: Path) -> None:
    path = model_dir / formats.MANIFEST_NAME
    doc = json.loads(path.read_text())
    doc["format_version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(errors.ModelIntegrityError, match="format_version 99"):
        manifest.read(model_dir)


def test_digest_depends_on_content_not_on_order() -> None:
    a = {"x": manifest.FileEntry(sha256="1", size=1), "y": manifest.FileEntry(sha256="2", size=1)}
    b = dict(reversed(list(a.items())))
    changed = {**a, "y": manifest.FileEntry(sha256="3", size=1)}
    assert manifest.files_digest(a) == manifest.files_digest(b)
    assert manifest.files_digest(a) != manifest.files_digest(changed)
    assert manifest.files_digest(a).startswith("sha256:")


def test_hash_file_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    data = b"abc" * 100_000
    (tmp_path / "f").write_bytes(data)
    assert manifest.hash_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
