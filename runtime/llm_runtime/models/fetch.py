"""`llm-runtime fetch URI DST`: obtain a model and leave it in the deployment format at DST.

The operator's init container runs this before the runtime starts. URIs:
  builtin://smollm2-135m-instruct   a model shipped in an installed Python package
  file:///abs/path, /abs/path       a local or mounted (PVC) .gguf file, HF dir or converted dir
  hf://org/name[@revision][/f.gguf] the Hugging Face Hub via huggingface_hub.snapshot_download
                                    (safetensors + config + tokenizer, or the one GGUF file named)
(`pvc://claim/path` is resolved by the operator to a mount path before it reaches us.)

Fetch is idempotent by digest: when DST already holds a verified conversion of the same source
bytes in the same dtype, nothing is written.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
import urllib.parse
from pathlib import Path

from llm_runtime.models import builtin, convert, errors, fetchlog, formats, manifest, publish
from llm_runtime.models import progress as progress_

log = logging.getLogger(__name__)

SCHEMES = ("builtin", "file", "hf")


class Outcome(enum.StrEnum):
    CONVERTED = "converted"  # a new conversion (or verbatim copy) was written to DST
    UP_TO_DATE = "up-to-date"  # DST already held this source in this dtype; nothing written


@dataclasses.dataclass(frozen=True)
class Source:
    """A parsed URI. `path` for file, `name` for builtin, `repo_id`/`revision`/`filename` for hf."""

    uri: str
    scheme: str
    path: Path | None = None
    repo_id: str | None = None
    revision: str | None = None
    name: str | None = None
    filename: str | None = None  # one file inside an hf:// repo (a .gguf among many)


@dataclasses.dataclass(frozen=True)
class FetchResult:
    outcome: Outcome
    manifest: manifest.Manifest
    dst: Path


def parse_uri(uri: str) -> Source:
    """Parse a model URI (pure: no file system, no network). Raises UnsupportedURIError."""
    text = uri.strip()
    if not text:
        raise errors.UnsupportedURIError("empty model URI")
    if "://" not in text:
        return _local(text, Path(text))
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    if scheme == "file":
        parsed = urllib.parse.urlsplit(text)
        if parsed.netloc not in ("", "localhost"):
            raise errors.UnsupportedURIError(f"{uri}: file:// URIs must be local (file:///path)")
        return _local(text, Path(urllib.parse.unquote(parsed.path)))
    if scheme == "hf":
        return _hf(text, rest)
    if scheme == "builtin":
        if not rest:
            raise errors.UnsupportedURIError(f"{uri}: name the builtin model")
        return Source(uri=text, scheme="builtin", name=rest.strip("/"))
    hint = " (the operator maps pvc:// to a mounted path)" if scheme == "pvc" else ""
    raise errors.UnsupportedURIError(
        f"unsupported URI scheme {scheme!r} in {uri!r}{hint}; use builtin://, file://, hf:// "
        "or an absolute path"
    )


def _local(uri: str, path: Path) -> Source:
    if not path.is_absolute():
        raise errors.UnsupportedURIError(f"{uri}: local model paths must be absolute")
    return Source(uri=uri, scheme="file", path=path)


def _hf(uri: str, rest: str) -> Source:
    """hf://org/name[@revision][/path/in/repo.gguf] (revisions containing "/" are not supported)."""
    org, _, tail = rest.partition("/")
    name_rev, _, filename = tail.partition("/")
    name, _, revision = name_rev.partition("@")
    if not org or not name or "@" in org or (filename and not filename.endswith(".gguf")):
        raise errors.UnsupportedURIError(
            f"{uri}: expected hf://org/name[@revision] or hf://org/name[@revision]/file.gguf"
        )
    repo_id = f"{org}/{name}"
    return Source(
        uri=uri,
        scheme="hf",
        repo_id=repo_id,
        revision=revision or "main",
        name=repo_id,
        filename=filename or None,
    )


def download_hf(
    source: Source,
    *,
    cache_dir: Path | None = None,
    progress: bool | None = None,
    emit: fetchlog.Emit = fetchlog.log_line,
) -> Path:
    """Snapshot the repo (weights, config, tokenizer) through the HF cache; network and auth
    errors become one FetchError line (HF_TOKEN and HF_HUB_OFFLINE are honoured by the hub).
    The hub's bars are replaced by `download` progress lines (its `tqdm_class` option)."""
    import huggingface_hub
    import huggingface_hub.errors as hf_errors

    # Only what loading needs: never every quantisation of a GGUF-only repo, never .bin twins.
    patterns = (
        [source.filename]
        if source.filename
        else ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
    )
    meter = fetchlog.Meter("download", None, emit=emit)
    try:
        with progress_.hub_bars(progress):
            folder = huggingface_hub.snapshot_download(
                repo_id=source.repo_id or "",
                revision=source.revision,
                cache_dir=cache_dir,
                allow_patterns=patterns,
                tqdm_class=fetchlog.hub_bar_class(meter),
            )
    except (hf_errors.HfHubHTTPError, hf_errors.LocalEntryNotFoundError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise errors.FetchError(
            f"could not download {source.uri} from the Hugging Face Hub: {first} "
            "(offline? set HF_TOKEN for gated repos, or pre-fetch into a volume and use file://)"
        ) from exc
    log.info("%s resolved to %s", source.uri, folder)
    local = Path(folder) / source.filename if source.filename else Path(folder)
    if not local.exists():
        raise errors.FetchError(f"{source.uri}: the repo has no file {source.filename}")
    return local


def resolve_local(
    source: Source,
    *,
    cache_dir: Path | None = None,
    progress: bool | None = None,
    emit: fetchlog.Emit = fetchlog.log_line,
) -> Path:
    """A local path holding the source's files (downloading hf:// sources first)."""
    if source.scheme == "builtin":
        return builtin.builtin_path(source.name or "")
    if source.scheme == "hf":
        return download_hf(source, cache_dir=cache_dir, progress=progress, emit=emit)
    assert source.path is not None
    if not source.path.exists():
        raise errors.FetchError(f"{source.uri}: {source.path} does not exist")
    return source.path


def display_name(source: Source) -> str | None:
    """The model name to record: the builtin model's or the hub repo's; None derives it."""
    if source.scheme == "builtin":
        return builtin.lookup(source.name or "").name
    return source.name


def existing_manifest(dst: Path) -> manifest.Manifest | None:
    """DST's verified manifest, or None when DST holds no intact converted model."""
    try:
        return manifest.read_verified(dst)
    except errors.ModelIntegrityError as exc:
        if (dst / formats.MANIFEST_NAME).exists():
            log.warning("%s will be replaced: %s", dst, exc)
        return None


def is_up_to_date(current: manifest.Manifest | None, *, source_sha256: str, dtype: str) -> bool:
    """DST may be left alone when it is a conversion of the same source bytes in the same dtype
    (or a verbatim copy of the same converted source)."""
    if current is None or current.dtype != dtype:
        return False
    return source_sha256 in (current.source.sha256, current.digest)


def source_bytes(found: formats.Located) -> int:
    """The bytes a fetch reads of a located source: its .gguf file, or its model files."""
    if found.gguf_file:
        return (found.folder / found.gguf_file).stat().st_size
    return sum((found.folder / name).stat().st_size for name in manifest.model_files(found.folder))


def fetch(
    uri: str,
    dst: str | Path,
    *,
    dtype: str = "bf16",
    source_format: str = "auto",
    cache_dir: Path | None = None,
    force: bool = False,
    progress: bool | None = None,
    emit: fetchlog.Emit = fetchlog.log_line,
) -> FetchResult:
    """Obtain `uri` and leave its converted form at `dst` (a no-op when already there), saying
    so in `emit` lines (`fetchlog`): start, progress per stage, done."""
    started = time.monotonic()
    stored = convert.target_dtype(dtype)
    source = parse_uri(uri)
    dst_path = Path(dst)
    if source.scheme == "hf":  # the download reports its own progress; the size comes after
        emit(fetchlog.start_line(uri=source.uri, dst=dst_path, path=None, size=None))
    local = resolve_local(source, cache_dir=cache_dir, progress=progress, emit=emit)
    found = formats.locate(local, expected=source_format)
    size = source_bytes(found)
    if source.scheme != "hf":
        emit(fetchlog.start_line(uri=source.uri, dst=dst_path, path=local, size=size))
    read = fetchlog.Meter("read", size, emit=emit)
    digest = convert.source_digest(found, progress=progress, on_bytes=read.add)
    with publish.locked(dst_path):
        current = existing_manifest(dst_path) if dst_path.is_dir() else None
        if is_up_to_date(current, source_sha256=digest, dtype=stored):
            assert current is not None
            result = FetchResult(Outcome.UP_TO_DATE, current, dst_path)
        else:
            emit(fetchlog.stage_line(f"writing {dst_path} ({stored})"))
            written = _write(
                local=local,
                dst=dst_path,
                source=source,
                digest=digest,
                dtype=stored,
                source_format=source_format,
                force=force,
                progress=progress,
                copy=fetchlog.Meter("copy", size, emit=emit),
            )
            result = FetchResult(Outcome.CONVERTED, written, dst_path)
    emit(
        fetchlog.done_line(
            uri=source.uri,
            dst=dst_path,
            size=size,
            seconds=time.monotonic() - started,
            digest=result.manifest.digest,
            present=result.outcome is Outcome.UP_TO_DATE,
        )
    )
    return result


def _write(
    *,
    local: Path,
    dst: Path,
    source: Source,
    digest: str,
    dtype: str,
    source_format: str,
    force: bool,
    progress: bool | None,
    copy: fetchlog.Meter,
) -> manifest.Manifest:
    """Convert (or copy a converted source verbatim) into `dst`; the caller holds its lock."""
    return convert.convert_locked(
        local,
        dst,
        dtype=dtype,
        source_format=source_format,
        source_uri=source.uri,
        source_sha256=digest,
        name=display_name(source),
        force=force,
        progress=progress,
        on_copy=copy.add,
    )
