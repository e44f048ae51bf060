"""`llm-runtime convert`: write the deployment format (safetensors + tokenizer + manifest).

Loading the packaged GGUF dequantises every weight on each start (~20 s on the 2-core machine);
the converted directory loads in under a second plus a hashing pass. The work happens on CPU in
the target dtype, is staged next to DST and published atomically (see `publish`).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from llm_runtime.models import device, fetchlog, formats, loading, manifest, publish
from llm_runtime.models import progress as progress_

log = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20


def source_digest(
    found: formats.Located,
    *,
    progress: bool | None = None,
    on_bytes: fetchlog.OnBytes | None = None,
) -> str:
    """sha256 identifying a source: of the .gguf file, the HF tree, or a converted manifest
    (`on_bytes` hears each chunk read)."""
    if found.gguf_file:
        path = found.folder / found.gguf_file
        return "sha256:" + manifest.hash_file(path, progress=progress, on_bytes=on_bytes)
    if found.format is formats.ModelFormat.CONVERTED:
        return manifest.read(found.folder).digest
    return manifest.tree_digest(found.folder, progress=progress, on_bytes=on_bytes)


def target_dtype(name: str) -> str:
    """The stored dtype must be explicit: the pod that serves may not be the machine converting."""
    dtype = device.normalize_dtype(name)
    if dtype == "auto":
        raise ValueError("convert needs an explicit --dtype (bf16, fp16 or fp32)")
    return dtype


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    dtype: str = "bf16",
    source_format: str = "auto",
    source_uri: str | None = None,
    source_sha256: str | None = None,
    name: str | None = None,
    force: bool = False,
    progress: bool | None = None,
) -> manifest.Manifest:
    """Convert the model at `src` into the deployment format at `dst` and return its manifest.

    `source_uri`/`source_sha256`/`name` let `fetch` record where the model came from without
    hashing it twice.
    """
    with publish.locked(Path(dst)):
        return convert_locked(
            src,
            dst,
            dtype=dtype,
            source_format=source_format,
            source_uri=source_uri,
            source_sha256=source_sha256,
            name=name,
            force=force,
            progress=progress,
        )


def convert_locked(
    src: str | Path,
    dst: str | Path,
    *,
    dtype: str,
    source_format: str = "auto",
    source_uri: str | None = None,
    source_sha256: str | None = None,
    name: str | None = None,
    force: bool = False,
    progress: bool | None = None,
    on_copy: fetchlog.OnBytes | None = None,
) -> manifest.Manifest:
    """`convert` for a caller that already holds `publish.locked(dst)` (flock is not reentrant);
    `on_copy` hears the bytes of a converted source copied verbatim."""
    stored = target_dtype(dtype)
    found = formats.locate(Path(src), expected=source_format)
    dst_path = Path(dst)
    publish.check_replaceable(dst_path, force=force)
    source = manifest.SourceInfo(
        uri=source_uri or str(Path(src).resolve()),
        format=found.format.value,
        sha256=source_sha256 or source_digest(found, progress=progress),
    )
    staging = publish.fresh_staging(dst_path)
    try:
        result = _convert_into(
            found,
            staging,
            dtype=stored,
            source=source,
            name=name,
            progress=progress,
            on_copy=on_copy,
        )
        publish.publish(staging, dst_path)
    except BaseException:
        publish.discard(staging)
        raise
    log.info("converted %s -> %s (%s, %s)", source.uri, dst_path, stored, result.digest)
    return result


def _convert_into(
    found: formats.Located,
    staging: Path,
    *,
    dtype: str,
    source: manifest.SourceInfo,
    name: str | None,
    progress: bool | None,
    on_copy: fetchlog.OnBytes | None = None,
) -> manifest.Manifest:
    if found.format is formats.ModelFormat.CONVERTED:
        existing = manifest.read_verified(found.folder, progress=progress)
        if existing.dtype == dtype:
            return _copy_converted(found.folder, staging, existing, on_copy=on_copy)
        name = name or existing.name
    with progress_.transformers_bars(progress):
        model, tokenizer = loading.read_weights(found, dtype=dtype, device="cpu")
        loading.clear_quantization(model).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    publish.make_readable(staging)
    built = manifest.build(
        staging,
        name=name or loading.default_name(found, model.config),
        dtype=dtype,
        source=source,
        progress=progress,
    )
    manifest.write(staging, built)
    return built


def _copy_converted(
    folder: Path,
    staging: Path,
    existing: manifest.Manifest,
    *,
    on_copy: fetchlog.OnBytes | None = None,
) -> manifest.Manifest:
    """A converted model in the wanted dtype is copied as is: same files, same digest."""
    for rel in existing.files:
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        copy_file(folder / rel, target, on_bytes=on_copy)
    publish.make_readable(staging)
    manifest.write(staging, existing)
    return existing


def copy_file(src: Path, dst: Path, *, on_bytes: fetchlog.OnBytes | None = None) -> None:
    """`shutil.copyfile`, in chunks when someone counts the bytes."""
    if on_bytes is None:
        shutil.copyfile(src, dst)
        return
    with src.open("rb") as reader, dst.open("wb") as writer:
        while chunk := reader.read(_COPY_CHUNK):
            writer.write(chunk)
            on_bytes(len(chunk))
