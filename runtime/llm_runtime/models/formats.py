"""Recognise what a model path holds, without loading it (torch-free).

Formats: `converted` (our deployment format: an HF directory plus `llm-manifest.json`), `hf`
(safetensors or .bin weights + config.json + tokenizer), `gguf` (a .gguf file, or a directory
holding exactly one).
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path

from llm_runtime.models import errors

MANIFEST_NAME = "llm-manifest.json"


class ModelFormat(enum.StrEnum):
    CONVERTED = "converted"
    HF = "hf"
    GGUF = "gguf"


@dataclasses.dataclass(frozen=True)
class Located:
    """Where a model's files are: `folder` always, `gguf_file` (a name inside it) for GGUF."""

    format: ModelFormat
    folder: Path
    gguf_file: str | None = None


def classify(names: frozenset[str]) -> ModelFormat | None:
    """The format of a directory with these file names, or None when it holds no model.

    A manifest wins over everything (a converted dir is also an HF dir); HF weights win over a
    stray .gguf next to them.
    """
    if MANIFEST_NAME in names:
        return ModelFormat.CONVERTED
    has_weights = any(n.endswith((".safetensors", ".bin")) for n in names)
    if "config.json" in names and has_weights:
        return ModelFormat.HF
    if any(n.endswith(".gguf") for n in names):
        return ModelFormat.GGUF
    return None


def locate(path: Path, *, expected: str = "auto") -> Located:
    """Find the model at `path`; `expected` (auto|hf|gguf|converted) forces or checks the format."""
    if not path.exists():
        raise errors.ModelFormatError(f"model path {path} does not exist")
    if path.is_file():
        if path.suffix != ".gguf":
            raise errors.ModelFormatError(f"{path} is a file but not a .gguf file")
        found = Located(ModelFormat.GGUF, path.parent, path.name)
    else:
        found = _locate_dir(path)
    if expected not in ("auto", found.format.value):
        return _forced(path, found, ModelFormat(expected))
    return found


def _locate_dir(folder: Path) -> Located:
    names = frozenset(p.name for p in folder.iterdir() if p.is_file())
    fmt = classify(names)
    if fmt is None:
        raise errors.ModelFormatError(
            f"{folder} holds no model: expected {MANIFEST_NAME}, config.json with "
            "*.safetensors, or one *.gguf file"
        )
    if fmt is not ModelFormat.GGUF:
        return Located(fmt, folder)
    return Located(fmt, folder, _single_gguf(folder, names))


def _single_gguf(folder: Path, names: frozenset[str]) -> str:
    ggufs = sorted(n for n in names if n.endswith(".gguf"))
    if len(ggufs) != 1:
        raise errors.ModelFormatError(
            f"{folder} holds {len(ggufs)} .gguf files ({', '.join(ggufs)}); point at one file"
        )
    return ggufs[0]


def _forced(path: Path, found: Located, want: ModelFormat) -> Located:
    """Honour an explicit format where the files allow it (a converted dir read as plain HF)."""
    if want is ModelFormat.HF and found.format is ModelFormat.CONVERTED:
        return Located(ModelFormat.HF, found.folder)
    if want is ModelFormat.GGUF and path.is_dir():
        names = frozenset(p.name for p in path.iterdir() if p.is_file())
        if any(n.endswith(".gguf") for n in names):
            return Located(ModelFormat.GGUF, path, _single_gguf(path, names))
    raise errors.ModelFormatError(f"{path} was expected to be {want.value} but is {found.format}")
