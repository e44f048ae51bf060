"""The OCI image archive that hack/nodetools/ociimage.py writes for `ctr images import`."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from nodetools import ociimage

pytestmark = pytest.mark.unit

PAUSE = ociimage.LayerFile("/pause", b"\x7fELF fake pause", 0o755)


def _members(data: bytes) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    out: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for info in tar.getmembers():
            f = tar.extractfile(info)
            out[info.name] = (info, f.read() if f else b"")
    return out


def _blob(layout: dict[str, bytes], descriptor: dict[str, Any]) -> bytes:
    data = layout["blobs/sha256/" + descriptor["digest"].removeprefix("sha256:")]
    assert descriptor["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert descriptor["size"] == len(data)
    return data


def test_layout_names_the_image_and_every_digest_matches_its_blob() -> None:
    layout = ociimage.image_layout("registry.k8s.io/pause:3.10", [PAUSE], ["/pause"], "65535:65535")
    assert json.loads(layout["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(layout["index.json"])
    assert index["schemaVersion"] == 2
    [entry] = index["manifests"]
    assert entry["mediaType"] == ociimage.MEDIA_MANIFEST
    assert entry["annotations"] == {
        "io.containerd.image.name": "registry.k8s.io/pause:3.10",
        "org.opencontainers.image.ref.name": "3.10",
    }
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    manifest = json.loads(_blob(layout, entry))
    config = json.loads(_blob(layout, manifest["config"]))
    [layer_desc] = manifest["layers"]
    assert layer_desc["mediaType"] == ociimage.MEDIA_LAYER
    diff = gzip.decompress(_blob(layout, layer_desc))
    assert config["rootfs"] == {
        "type": "layers",
        "diff_ids": ["sha256:" + hashlib.sha256(diff).hexdigest()],
    }
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert config["config"]["User"] == "65535:65535"
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    # Exactly three blobs: layer, config, manifest.
    assert len([p for p in layout if p.startswith("blobs/")]) == 3


def test_layer_holds_the_files_as_root_with_their_modes_and_parent_folders() -> None:
    tool = ociimage.LayerFile("/usr/bin/tool", b"x", 0o644)
    members = _members(ociimage.layer_tar([tool, PAUSE]))
    assert list(members) == ["usr", "usr/bin", "pause", "usr/bin/tool"]
    info, data = members["pause"]
    assert info.isreg() and data == PAUSE.data and info.mode == 0o755
    assert (info.uid, info.gid, info.mtime) == (0, 0, 0)
    assert members["usr/bin"][0].isdir()
    assert members["usr/bin/tool"][0].mode == 0o644


def test_same_inputs_give_the_same_bytes() -> None:
    def build() -> bytes:
        return ociimage.archive(
            ociimage.image_layout("registry.k8s.io/pause:3.10", [PAUSE], ["/pause"])
        )

    assert build() == build()


@pytest.mark.parametrize(
    "name", ["registry.k8s.io/pause", "pause@sha256:abc", "localhost:5000/pause", "Pause:1"]
)
def test_a_name_needs_a_lowercase_repository_and_a_tag(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ociimage.image_layout(name, [PAUSE], ["/pause"])


@pytest.mark.parametrize("path", ["pause", "/", "/a/../pause"])
def test_layer_paths_must_be_absolute_and_plain(path: str) -> None:
    with pytest.raises(ValueError, match="absolute"):
        ociimage.layer_tar([ociimage.LayerFile(path, b"")])


def test_a_path_cannot_be_a_file_and_a_folder() -> None:
    with pytest.raises(ValueError, match="both a file and a folder"):
        ociimage.layer_tar([ociimage.LayerFile("/a", b""), ociimage.LayerFile("/a/b", b"")])


def test_cli_writes_an_archive_with_the_layout_at_its_top(tmp_path: Path) -> None:
    binary = tmp_path / "pause"
    binary.write_bytes(PAUSE.data)
    binary.chmod(0o755)
    out = tmp_path / "pause.oci.tar"
    args = [
        "--name",
        "registry.k8s.io/pause:3.10",
        "--entrypoint",
        "/pause",
        "--user",
        "65535:65535",
    ]
    assert ociimage.main([*args, "--add", f"/pause={binary}", "-o", str(out)]) == 0
    members = _members(out.read_bytes())
    assert {"oci-layout", "index.json", "blobs", "blobs/sha256"} <= set(members)
    index = json.loads(members["index.json"][1])
    manifest = json.loads(members["blobs/sha256/" + index["manifests"][0]["digest"][7:]][1])
    layer = members["blobs/sha256/" + manifest["layers"][0]["digest"][7:]][1]
    pause_info, pause_data = _members(gzip.decompress(layer))["pause"]
    assert pause_data == PAUSE.data and pause_info.mode == 0o755
    assert not (tmp_path / "pause.oci.tar.tmp").exists()
