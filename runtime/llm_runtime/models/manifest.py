"""`llm-manifest.json`: what a converted model is made of, verified on every load.

The manifest names the source (URI, format, sha256), the dtype, and every file with its sha256 and
size. Its `digest` is a sha256 over the sorted (name, sha256) pairs, so it identifies the model's
content: it is the model revision the runtime reports and the key that makes `fetch` idempotent.
The manifest is written last when converting, so a directory without one is never mistaken for a
finished model.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pydantic
import tqdm

from llm_runtime.models import errors, fetchlog
from llm_runtime.models import progress as progress_
from llm_runtime.models.formats import MANIFEST_NAME

FORMAT_VERSION = 1
_CHUNK = 4 << 20
# Files at least this large get a progress bar while hashed (when progress is on).
PROGRESS_MIN_BYTES = 64 << 20
# Entries in a model folder that are not part of the model: the manifest itself, dotfiles
# (staging folders, editors), and ext4's lost+found on a freshly formatted volume.
_IGNORED = frozenset({MANIFEST_NAME, "lost+found"})


class FileEntry(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    sha256: str
    size: int


class SourceInfo(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    uri: str  # what the user asked for: builtin://..., hf://org/name@rev, file:///...
    format: str  # gguf | hf | converted
    sha256: str  # of the .gguf file, or tree_digest() of an HF directory


class Manifest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    format_version: int = FORMAT_VERSION
    name: str
    dtype: str
    source: SourceInfo
    files: dict[str, FileEntry]
    digest: str
    created_by: str = "llm-runtime"


def files_digest(files: Mapping[str, FileEntry]) -> str:
    """The content digest: sha256 over "name sha256" lines, sorted by name."""
    lines = "".join(f"{name} {files[name].sha256}\n" for name in sorted(files))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def hash_file(
    path: Path, *, progress: bool | None = None, on_bytes: fetchlog.OnBytes | None = None
) -> str:
    """Hex sha256 of a file, read in chunks; a tqdm bar for large files when progress is on,
    and `on_bytes(len(chunk))` after each chunk (fetch's progress lines)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    show = size >= PROGRESS_MIN_BYTES and progress_.resolve(progress)
    with (
        path.open("rb") as f,
        tqdm.tqdm(
            total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", disable=not show
        ) as bar,
    ):
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
            if on_bytes is not None:
                on_bytes(len(chunk))
    return digest.hexdigest()


def model_files(folder: Path) -> Iterator[str]:
    """Relative POSIX names of every file that belongs to the model in `folder`."""
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _IGNORED)
        for name in sorted(names):
            rel = Path(root, name).relative_to(folder).as_posix()
            if not name.startswith(".") and rel not in _IGNORED:
                yield rel


def hash_tree(
    folder: Path, *, progress: bool | None = None, on_bytes: fetchlog.OnBytes | None = None
) -> dict[str, FileEntry]:
    """FileEntry for every model file in `folder`."""
    return {
        name: FileEntry(
            sha256=hash_file(folder / name, progress=progress, on_bytes=on_bytes),
            size=(folder / name).stat().st_size,
        )
        for name in model_files(folder)
    }


def tree_digest(
    folder: Path, *, progress: bool | None = None, on_bytes: fetchlog.OnBytes | None = None
) -> str:
    """Digest of an unconverted HF directory: what `fetch` compares to decide it is up to date."""
    return files_digest(hash_tree(folder, progress=progress, on_bytes=on_bytes))


def build(
    folder: Path, *, name: str, dtype: str, source: SourceInfo, progress: bool | None = None
) -> Manifest:
    """The manifest of the files now in `folder`."""
    files = hash_tree(folder, progress=progress)
    return Manifest(name=name, dtype=dtype, source=source, files=files, digest=files_digest(files))


def write(folder: Path, manifest: Manifest) -> None:
    """Write the manifest atomically (tmp + rename): it is the commit point of a conversion."""
    tmp = folder / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    tmp.chmod(0o644)
    tmp.replace(folder / MANIFEST_NAME)


def read(folder: Path) -> Manifest:
    """Parse and self-check `folder`'s manifest (its digest must match its own file list)."""
    path = folder / MANIFEST_NAME
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise errors.ModelIntegrityError(f"{path} is missing") from None
    except (pydantic.ValidationError, ValueError) as exc:
        raise errors.ModelIntegrityError(f"{path} is not a valid manifest: {exc}") from None
    if manifest.format_version != FORMAT_VERSION:
        raise errors.ModelIntegrityError(
            f"{path} has format_version {manifest.format_version}; this runtime reads {FORMAT_VERSION}"
        )
    if files_digest(manifest.files) != manifest.digest:
        raise errors.ModelIntegrityError(f"{path}: digest does not match its file list")
    return manifest


def verify(folder: Path, manifest: Manifest, *, progress: bool | None = None) -> None:
    """Raise ModelIntegrityError naming the first file that is missing, unlisted, resized or
    corrupted. Sizes are checked for every file before any hashing, so common damage is cheap
    to find."""
    present = set(model_files(folder))
    listed = set(manifest.files)
    for name in sorted(listed - present):
        raise errors.ModelIntegrityError(f"{folder}: {name} is listed in the manifest but missing")
    for name in sorted(present - listed):
        raise errors.ModelIntegrityError(f"{folder}: {name} is not listed in the manifest")
    for name in sorted(listed):
        size = (folder / name).stat().st_size
        if size != manifest.files[name].size:
            raise errors.ModelIntegrityError(
                f"{folder}: {name} is {size} bytes, the manifest says {manifest.files[name].size}"
            )
    for name in sorted(listed):
        if hash_file(folder / name, progress=progress) != manifest.files[name].sha256:
            raise errors.ModelIntegrityError(
                f"{folder}: {name} is corrupted (sha256 differs from the manifest)"
            )


def read_verified(folder: Path, *, progress: bool | None = None) -> Manifest:
    """The manifest of `folder`, after checking every file against it."""
    manifest = read(folder)
    verify(folder, manifest, progress=progress)
    return manifest
