"""The steps that act: install the tools, make the base, build and export the images.

Every step checks before it acts, so a warm run costs only buildah's layer-cache walk. One lock
($LLMOP_CACHE/images/.lock) serialises builds: `make images` and a test session started together
build once, the second reusing what the first made.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from imagebuild import recipe

REPO = Path(__file__).resolve().parents[2]
# Debian package -> the program that shows it is installed.
TOOLS = {"podman": "podman", "buildah": "buildah", "runc": "runc", "mmdebstrap": "mmdebstrap"}


class BuildError(Exception):
    """A step failed; the message holds the command and the end of its output."""


def log(message: str) -> None:
    print(f"\033[1;34m[images]\033[0m {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """$LLMOP_CACHE, else ~/.cache/llm-operator (the same cache as the cluster's tools)."""
    env = os.environ.get("LLMOP_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "llm-operator"


def _stderr_fd() -> int | None:
    """Our stderr's descriptor (a child's progress goes there, stdout stays for results)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an in-memory stream
        return None


def run(argv: Sequence[str], *, quiet: bool = False) -> str:
    """Run `argv`; its stdout is returned when `quiet`, else streamed to our stderr."""
    done = subprocess.run(
        list(argv),
        stdout=subprocess.PIPE if quiet else _stderr_fd(),
        stderr=subprocess.PIPE if quiet else None,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or "")[-4000:] if quiet else "(output above)"
        raise BuildError(f"{' '.join(argv)} exited {done.returncode}: {tail}")
    return done.stdout or ""


def project_version() -> str:
    """[project].version of pyproject.toml: the images' tag, as the chart's appVersion."""
    with (REPO / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


@contextlib.contextmanager
def exclusive(cache: Path) -> Iterator[None]:
    folder = recipe.images_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_tools() -> None:
    """apt-get install what is missing of podman, buildah, runc and mmdebstrap."""
    missing = [pkg for pkg, program in TOOLS.items() if shutil.which(program) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise BuildError(f"missing {' '.join(missing)}: apt-get install them (needs root)")
    log(f"apt-get install {' '.join(missing)}")
    os.environ.setdefault("DEBIAN_FRONTEND", "noninteractive")
    run(["apt-get", "update", "-qq"], quiet=True)
    apt = ["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=600"]
    run([*apt, "--no-install-recommends", *missing], quiet=True)


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], check=False).returncode == 0


def ensure_base(base: recipe.BaseRecipe, cache: Path) -> str:
    """The base image's tag in podman's store: imported from the cached tarball, which mmdebstrap
    makes only when it is missing."""
    if image_exists(base.tag):
        return base.tag
    tarball = base.tarball(cache)
    if not tarball.is_file():
        log(f"mmdebstrap {base.suite} {base.variant} + {' '.join(base.packages)} -> {tarball}")
        started = time.monotonic()
        partial = tarball.with_suffix(".partial.tar")
        partial.unlink(missing_ok=True)
        run(recipe.mmdebstrap_argv(base, partial))
        partial.rename(tarball)
        log(f"base root file system made in {time.monotonic() - started:.0f} s")
    run(recipe.import_argv(base, tarball), quiet=True)
    return base.tag


def host_ca_bundle() -> Path | None:
    """The host's CA bundle (SSL_CERT_FILE first, as Python's ssl module reads it)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def host_uv_cache() -> Path:
    """The host's uv cache ($UV_CACHE_DIR, else ~/.cache/uv), made if missing: the first build
    fills it, the next ones (and the host's own installs) reuse it."""
    env = os.environ.get("UV_CACHE_DIR")
    path = Path(env) if env else Path.home() / ".cache" / "uv"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Built:
    """One image in podman's store."""

    image: recipe.Image
    ref: str  # llm-operator/runtime:0.1.0
    image_id: str
    size: int  # bytes, as `podman image inspect --format {{.Size}}` reports
    seconds: float  # this run's build time (a warm run: the layer-cache walk)


def inspect(name: str, field: str) -> str:
    return run(["podman", "image", "inspect", "--format", "{{." + field + "}}", name], quiet=True)


def build_image(image: recipe.Image, *, version: str, base: str, mounts: recipe.Mounts) -> Built:
    started = time.monotonic()
    log(f"building {image.ref(version)} from {image.dockerfile} on {base}")
    run(recipe.bud_argv(image=image, version=version, base=base, mounts=mounts, context=REPO))
    seconds = time.monotonic() - started
    name = recipe.podman_name(image.ref(version))
    built = Built(
        image=image,
        ref=image.ref(version),
        image_id=inspect(name, "Id").strip(),
        size=int(inspect(name, "Size").strip()),
        seconds=seconds,
    )
    log(f"{name} {built.image_id[:12]} {built.size / 1e6:.0f} MB in {seconds:.0f} s")
    return built


def build(names: Sequence[str] = (), *, cache: Path | None = None) -> list[Built]:
    """Tools, base and the named images (all when empty); what is up to date is reused."""
    cache = cache or cache_dir()
    images = [recipe.BY_NAME[n] for n in names] if names else list(recipe.IMAGES)
    ensure_tools()
    with exclusive(cache):
        base = ensure_base(recipe.BaseRecipe(), cache)
        mounts = recipe.Mounts(ca_bundle=host_ca_bundle(), uv_cache=host_uv_cache())
        version = project_version()
        return [build_image(i, version=version, base=base, mounts=mounts) for i in images]


def export_image(built: Built, *, cache: Path) -> Path:
    """A docker archive of `built` named as Kubernetes resolves its reference, for
    `ctr -n k8s.io images import`; reused while the image ID is the same."""
    version = built.ref.rsplit(":", 1)[1]
    out = recipe.archive_path(cache, image=built.image, version=version, image_id=built.image_id)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in recipe.stale_archives(out.parent.glob("*.tar"), keep=out):
        stale.unlink()
    name = recipe.kubernetes_name(built.ref)
    run(["podman", "tag", recipe.podman_name(built.ref), name], quiet=True)
    partial = out.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    log(f"exporting {name} -> {out}")
    run(recipe.save_argv(name, partial), quiet=True)
    partial.rename(out)
    return out


def export(names: Sequence[str] = (), *, cache: Path | None = None) -> list[tuple[Built, Path]]:
    cache = cache or cache_dir()
    built = build(names, cache=cache)
    with exclusive(cache):
        return [(b, export_image(b, cache=cache)) for b in built]
