"""What the images are made of and how each step is called: pure (no I/O), tested with asserts.

The base image: Debian bookworm minbase with python3 (3.11, at /usr/bin/python3), made by
mmdebstrap and imported into podman's store. Its tarball is cached outside the checkout under a
key of every input (`BaseRecipe.key`), so a warm build never runs mmdebstrap again.

The project's images: `images/<name>.Dockerfile` built with buildah on that base. The quirks of
these machines are in the command line (see the shared notes, containers-here.md): runc (crun
refuses the hybrid cgroup layout), host networking, rlimits below the sandbox's (no
CAP_SYS_RESOURCE to raise them), the host's CA bundle (a TLS-intercepting proxy) and uv cache
mounted into the build, and `--layers` so unchanged steps are reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Bump when the recipe's meaning changes while its fields stay the same (e.g. a new step).
BASE_RECIPE_VERSION = 1
# Where Debian (and images derived from it, python:3.11-slim included) keep the system CA bundle:
# the host's bundle is mounted there, so pip and uv (UV_NATIVE_TLS) trust the proxy.
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Where the build sees the host's uv cache (UV_CACHE_MOUNT in the Dockerfiles). buildah leaves an
# empty mount point behind in every stage that RUNs; under /tmp it is hidden at run time by the
# pod's /tmp volume.
UV_CACHE_MOUNT = "/tmp/uv-cache"
# The PyTorch CPU index is not reachable here: PyPI's Linux torch (the CUDA build, nvidia-* wheels).
PYPI_INDEX = "https://pypi.org/simple"
# Lower than the sandbox's own limits: a runtime without CAP_SYS_RESOURCE cannot raise them.
ULIMITS = ("nofile=4096:4096", "nproc=4096:4096")
OCI_RUNTIME = "runc"
# What `podman import` writes into the base image's config (a root file system carries none).
BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
# Like the slim images: no manuals, translations or docs but the copyright files.
SLIM_DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)


@dataclass(frozen=True)
class BaseRecipe:
    """The inputs of the mmdebstrap base image; any change makes a new key, tarball and tag."""

    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = ("python3", "python3-venv", "ca-certificates")
    dpkg_options: tuple[str, ...] = SLIM_DPKG_OPTIONS
    apt_options: tuple[str, ...] = ('APT::Install-Recommends "false"',)
    mirror: str = ""  # empty: mmdebstrap's default (the host's apt sources, else deb.debian.org)
    changes: tuple[str, ...] = BASE_CHANGES

    def key(self) -> str:
        """12 hex digits of sha256 over every field and BASE_RECIPE_VERSION."""
        fields = {**dataclasses.asdict(self), "version": BASE_RECIPE_VERSION}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def tag(self) -> str:
        return f"localhost/llm-operator/base:{self.suite}-{self.key()}"

    def tarball(self, cache: Path) -> Path:
        return images_dir(cache) / f"base-{self.suite}-{self.key()}.tar"


@dataclass(frozen=True)
class Image:
    """One of the project's images: its Dockerfile and the build arguments it gets here."""

    name: str
    build_args: tuple[tuple[str, str], ...] = ()

    @property
    def dockerfile(self) -> str:
        """Relative to the build context, the repository root."""
        return f"images/{self.name}.Dockerfile"

    def ref(self, version: str) -> str:
        """The name the chart and the operator's default use (llm-operator/runtime:0.1.0)."""
        return f"llm-operator/{self.name}:{version}"


IMAGES = (
    Image("runtime", build_args=(("TORCH_INDEX", PYPI_INDEX),)),
    Image("operator"),
)
BY_NAME = {image.name: image for image in IMAGES}


def images_dir(cache: Path) -> Path:
    """Everything this package caches: $LLMOP_CACHE/images."""
    return cache / "images"


def _has_domain(ref: str) -> bool:
    first, sep, _rest = ref.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def podman_name(ref: str) -> str:
    """The name podman stores a short name under: localhost/llm-operator/runtime:0.1.0."""
    return ref if _has_domain(ref) else f"localhost/{ref}"


def kubernetes_name(ref: str) -> str:
    """The reference Kubernetes (and containerd's CRI) resolves an image name to, as
    distribution/reference normalises it: docker.io/llm-operator/runtime:0.1.0. An image
    imported into containerd must carry this name for a pod's `image: llm-operator/runtime:0.1.0`
    to find it."""
    if _has_domain(ref):
        return ref
    return f"docker.io/{ref}" if "/" in ref else f"docker.io/library/{ref}"


def mmdebstrap_argv(recipe: BaseRecipe, out: Path) -> list[str]:
    argv = ["mmdebstrap", "--quiet", f"--variant={recipe.variant}"]
    argv += [f"--include={','.join(recipe.packages)}"]
    argv += [f"--dpkgopt={opt}" for opt in recipe.dpkg_options]
    argv += [f"--aptopt={opt}" for opt in recipe.apt_options]
    argv += [recipe.suite, str(out)]
    return [*argv, recipe.mirror] if recipe.mirror else argv


def import_argv(recipe: BaseRecipe, tarball: Path) -> list[str]:
    changes = [arg for change in recipe.changes for arg in ("--change", change)]
    return ["podman", "import", "--quiet", *changes, str(tarball), recipe.tag]


@dataclass(frozen=True)
class Mounts:
    """What of the host the build sees: the CA bundle (None: none found) and the uv cache."""

    ca_bundle: Path | None
    uv_cache: Path | None


def bud_argv(*, image: Image, version: str, base: str, mounts: Mounts, context: Path) -> list[str]:
    """`buildah bud` for one image, tagged `image.ref(version)`."""
    argv = ["buildah", "bud", f"--runtime={OCI_RUNTIME}", "--network=host", "--layers"]
    argv += [arg for limit in ULIMITS for arg in ("--ulimit", limit)]
    if mounts.ca_bundle is not None:
        argv += ["-v", f"{mounts.ca_bundle}:{IMAGE_CA_BUNDLE}:ro"]
    args = [("BASE_IMAGE", base), *image.build_args]
    if mounts.uv_cache is not None:
        argv += ["-v", f"{mounts.uv_cache}:{UV_CACHE_MOUNT}"]
        args.append(("UV_CACHE_MOUNT", UV_CACHE_MOUNT))
    argv += [arg for name, value in args for arg in ("--build-arg", f"{name}={value}")]
    return [*argv, "-f", str(context / image.dockerfile), "-t", image.ref(version), str(context)]


def archive_path(cache: Path, *, image: Image, version: str, image_id: str) -> Path:
    """A docker archive of one build: named by the image ID, so an unchanged image is reused."""
    return images_dir(cache) / "archives" / f"{image.name}-{version}-{image_id[:12]}.tar"


def stale_archives(found: Iterable[Path], *, keep: Path) -> list[Path]:
    """Earlier archives of the same image and version than `keep` (other builds' IDs)."""
    prefix = keep.name.rsplit("-", 1)[0] + "-"
    return sorted(p for p in found if p.name.startswith(prefix) and p != keep)


def save_argv(name: str, out: Path) -> list[str]:
    """A docker archive whose manifest names the image `name`; containerd's import reads it."""
    return ["podman", "save", "--quiet", "--format", "docker-archive", "-o", str(out), name]
