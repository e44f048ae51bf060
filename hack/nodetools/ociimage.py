"""Packs files into a one-layer OCI image archive that `ctr -n k8s.io images import` accepts.

No registry is reachable here, so the pod sandbox image (registry.k8s.io/pause) is made from the
pause program that hack/nodetools/build.sh builds:

    python3 hack/nodetools/ociimage.py --name registry.k8s.io/pause:3.10 \\
        --entrypoint /pause --user 65535:65535 --add /pause=BINDIR/pause -o pause.oci.tar

The archive is an OCI image layout in a tar (oci-layout, index.json, blobs/sha256/...): one gzip
layer, its config and manifest. index.json names the image twice, as `ctr export` does:
`io.containerd.image.name` (the full reference, which containerd's import uses) and
`org.opencontainers.image.ref.name` (the tag, as the OCI spec suggests). Every timestamp and owner
is fixed, so the same inputs give the same bytes and the same image digest.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class LayerFile:
    """One regular file of the layer: its absolute path in the image, content and mode."""

    path: str
    data: bytes
    mode: int = 0o755


@dataclass(frozen=True)
class Blob:
    """A content-addressed blob of the layout, with the descriptor that points at it."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
            **extra,
        }


def split_reference(name: str) -> tuple[str, str]:
    """`registry.k8s.io/pause:3.10` -> (`registry.k8s.io/pause`, `3.10`); a tag is required."""
    repo, sep, tag = name.rpartition(":")
    if not sep or not repo or not tag or "/" in tag or "@" in name:
        raise ValueError(f"image name {name!r} needs a tag (REPOSITORY:TAG, no digest)")
    if repo != repo.lower() or any(c.isspace() for c in name):
        raise ValueError(f"image name {name!r}: the repository must be lowercase, without spaces")
    return repo, tag


def _layer_path(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    if not p.is_absolute() or ".." in p.parts or p == PurePosixPath("/"):
        raise ValueError(f"layer path {path!r} must be absolute, below /, without '..'")
    return p.relative_to("/")


def _tar_info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def layer_tar(files: Sequence[LayerFile]) -> bytes:
    """The uncompressed layer: the files sorted by path, each parent folder before them."""
    entries = {_layer_path(f.path): f for f in files}
    if len(entries) != len(files):
        raise ValueError("two files have the same layer path")
    folders = sorted({parent for p in entries for parent in p.parents if parent.parts})
    clash = set(folders) & set(entries)
    if clash:
        raise ValueError(f"{sorted(map(str, clash))} is both a file and a folder")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder in folders:
            tar.addfile(_tar_info(f"{folder}/", tarfile.DIRTYPE, 0o755))
        for p in sorted(entries):
            f = entries[p]
            tar.addfile(_tar_info(str(p), tarfile.REGTYPE, f.mode, len(f.data)), io.BytesIO(f.data))
    return out.getvalue()


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def image_layout(
    name: str,
    files: Sequence[LayerFile],
    entrypoint: Sequence[str],
    user: str = "",
    architecture: str = "amd64",
) -> dict[str, bytes]:
    """Every file of the OCI layout, by its path in the archive."""
    _, tag = split_reference(name)
    diff = layer_tar(files)
    layer = Blob(MEDIA_LAYER, gzip.compress(diff, compresslevel=9, mtime=0))
    image_config: dict[str, Any] = {"Entrypoint": list(entrypoint), "WorkingDir": "/"}
    if user:
        image_config["User"] = user
    config = Blob(
        MEDIA_CONFIG,
        _json(
            {
                "architecture": architecture,
                "os": "linux",
                "config": image_config,
                "rootfs": {
                    "type": "layers",
                    "diff_ids": ["sha256:" + hashlib.sha256(diff).hexdigest()],
                },
                "history": [
                    {"created_by": "hack/nodetools/ociimage.py", "created": "1970-01-01T00:00:00Z"}
                ],
                "created": "1970-01-01T00:00:00Z",
            }
        ),
    )
    manifest = Blob(
        MEDIA_MANIFEST,
        _json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            }
        ),
    )
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            manifest.descriptor(
                platform={"architecture": architecture, "os": "linux"},
                annotations={ANNOTATION_CONTAINERD_NAME: name, ANNOTATION_REF_NAME: tag},
            )
        ],
    }
    out = {"oci-layout": _json(OCI_LAYOUT), "index.json": _json(index)}
    for blob in (layer, config, manifest):
        out["blobs/sha256/" + blob.digest.removeprefix("sha256:")] = blob.data
    return out


def archive(layout: dict[str, bytes]) -> bytes:
    """The layout as a tar, folders first, in a fixed order with fixed owners and times."""
    folders = sorted(
        {str(parent) for p in layout for parent in PurePosixPath(p).parents if parent.parts}
    )
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder in folders:
            tar.addfile(_tar_info(f"{folder}/", tarfile.DIRTYPE, 0o755))
        for path in sorted(layout):
            data = layout[path]
            tar.addfile(_tar_info(path, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return out.getvalue()


def _parse_add(spec: str) -> LayerFile:
    image_path, sep, host_path = spec.partition("=")
    if not sep or not image_path or not host_path:
        raise argparse.ArgumentTypeError(f"--add wants IMAGE_PATH=HOST_FILE, not {spec!r}")
    host = Path(host_path)
    mode = 0o755 if os.access(host, os.X_OK) else 0o644
    return LayerFile(image_path, host.read_bytes(), mode)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--name", required=True, help="REPOSITORY:TAG, e.g. registry.k8s.io/pause:3.10"
    )
    parser.add_argument(
        "--add", action="append", required=True, type=_parse_add, metavar="IMAGE_PATH=HOST_FILE"
    )
    parser.add_argument(
        "--entrypoint", action="append", required=True, help="repeat for each argument"
    )
    parser.add_argument("--user", default="", help="the image's USER, e.g. 65535:65535")
    parser.add_argument("--arch", default="amd64")
    parser.add_argument("-o", "--output", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        layout = image_layout(args.name, args.add, args.entrypoint, args.user, args.arch)
    except ValueError as exc:
        parser.error(str(exc))
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_bytes(archive(layout))
    tmp.replace(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
