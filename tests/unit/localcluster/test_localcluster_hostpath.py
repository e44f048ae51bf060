"""hostPath volumes on the process node: the kubelet's type check, so a wrong node path fails
the mount (FailedMount) instead of being created as an empty folder."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from localcluster import containerspec, mounts

pytestmark = pytest.mark.unit


def test_path_kind_tells_files_folders_sockets_and_nothing(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "s"))
        kinds = [mounts.path_kind(str(tmp_path / n)) for n in ("f", "s", "missing")]
    assert [mounts.path_kind(str(tmp_path)), *kinds] == ["directory", "file", "socket", None]
    assert mounts.path_kind("/dev/null") == "char"


@pytest.mark.parametrize(
    ("type_", "kind", "problem"),
    [
        ("File", "file", None),
        ("File", None, "hostPath type check failed: /p is not a file"),
        ("File", "directory", "hostPath type check failed: /p is not a file"),
        ("Directory", "directory", None),
        ("Directory", "file", "hostPath type check failed: /p is not a directory"),
        ("Socket", "file", "hostPath type check failed: /p is not a socket file"),
        ("CharDevice", "char", None),
        ("BlockDevice", None, "hostPath type check failed: /p is not a block device"),
        ("", None, None),
        ("DirectoryOrCreate", None, None),
        ("FileOrCreate", None, None),
    ],
)
def test_host_path_problem_is_the_kubelets_type_check(
    type_: str, kind: str | None, problem: str | None
) -> None:
    assert mounts.host_path_problem(type_, "/p", kind) == problem


def test_a_missing_typed_host_path_fails_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "absent" / "model.gguf"
    volume = {"name": "source", "hostPath": {"path": str(missing), "type": "File"}}
    with pytest.raises(containerspec.ConfigError, match=r"absent/model\.gguf is not a file"):
        mounts.prepare_folder(volume, str(missing))
    assert not (tmp_path / "absent").exists()


def test_untyped_and_or_create_host_paths_are_created(tmp_path: Path) -> None:
    folder, file = tmp_path / "d" / "e", tmp_path / "f.txt"
    mounts.prepare_folder({"name": "a", "hostPath": {"path": str(folder)}}, str(folder))
    typed = {"name": "b", "hostPath": {"path": str(file), "type": "FileOrCreate"}}
    mounts.prepare_folder(typed, str(file))
    assert folder.is_dir() and file.is_file()
    present = {"name": "c", "hostPath": {"path": str(file), "type": "File"}}
    mounts.prepare_folder(present, str(file))  # an existing file passes the check
