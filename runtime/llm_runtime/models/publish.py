"""Put a finished model directory in place so a reader never sees half of one.

Normally the model is staged in the sibling `DST.tmp` and renamed over DST. When DST is itself a
mount point (the operator's init container writes straight into a mounted volume) it cannot be
renamed, so the model is staged in `DST/.llm-staging`, moved in file by file, and the manifest —
which is what makes a directory count as a model — is moved last.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from llm_runtime.models import errors, manifest
from llm_runtime.models.formats import MANIFEST_NAME

IN_PLACE_STAGING = ".llm-staging"
IN_PLACE_LOCK = ".llm-lock"


def lock_path(dst: Path) -> Path:
    """The lock file guarding `dst`: inside a mounted DST, else a hidden sibling."""
    if os.path.ismount(dst):
        return dst / IN_PLACE_LOCK
    return dst.with_name(f".{dst.name}.lock")


@contextlib.contextmanager
def locked(dst: Path) -> Iterator[None]:
    """Hold an exclusive flock on `dst` for the block: two pods fetching into one shared volume
    take turns, and the second then finds the model up to date instead of racing the rename."""
    path = lock_path(dst)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def staging_for(dst: Path) -> Path:
    """Where to stage a model bound for `dst`."""
    if os.path.ismount(dst):
        return dst / IN_PLACE_STAGING
    return dst.with_name(dst.name + ".tmp")


def check_replaceable(dst: Path, *, force: bool = False) -> None:
    """Refuse to overwrite a non-empty directory that is not a model we wrote (a typo in DST must
    not delete someone's files). An interrupted in-place publish leaves a staging folder, which
    counts as ours."""
    if force or not dst.exists():
        return
    if not dst.is_dir():
        raise errors.ModelError(f"{dst} exists and is not a directory")
    ours = (dst / MANIFEST_NAME).exists() or (dst / IN_PLACE_STAGING).exists()
    if not ours and any(manifest.model_files(dst)):
        raise errors.ModelError(
            f"{dst} is not empty and holds no {MANIFEST_NAME}; refusing to overwrite it "
            "(choose an empty DST or pass --force)"
        )


def fresh_staging(dst: Path) -> Path:
    """An empty staging directory for `dst` (left-overs of an interrupted run are removed)."""
    staging = staging_for(dst)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def make_readable(folder: Path) -> None:
    """safetensors writes 0600 files; the serving container may run as another user."""
    for name in manifest.model_files(folder):
        (folder / name).chmod(0o644)


def publish(staging: Path, dst: Path) -> None:
    """Replace `dst` with the model in `staging` (which must hold its manifest)."""
    if staging.parent == dst:
        _publish_in_place(staging, dst)
        return
    old = dst.with_name(dst.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        dst.rename(old)
    staging.rename(dst)
    if old.exists():
        shutil.rmtree(old)


def _publish_in_place(staging: Path, dst: Path) -> None:
    (dst / MANIFEST_NAME).unlink(missing_ok=True)
    for name in list(manifest.model_files(dst)):
        (dst / name).unlink()
    for name in manifest.model_files(staging):
        target = dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (staging / name).rename(target)
    (staging / MANIFEST_NAME).rename(dst / MANIFEST_NAME)
    shutil.rmtree(staging)


def discard(staging: Path) -> None:
    """Remove a staging directory after a failure."""
    shutil.rmtree(staging, ignore_errors=True)
