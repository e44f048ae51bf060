"""Runs inside `ip netns exec NS`: bind the pod's volumes, drop to runAsUser, exec the program.

Standard library only and run by path (`python -I launch.py SPEC`), so it starts fast and does not
depend on PYTHONPATH. `ip netns exec` already gave this process a private mount namespace (with
/etc/hosts and /etc/resolv.conf bound from /etc/netns/NS), so the binds below stay inside the pod.
Mount points must exist; the node creates missing ones before launching and removes them later.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(
    source: str | None, target: str, flags: int, fstype: str | None = None, data: str | None = None
) -> None:
    src = source.encode() if source is not None else None
    kind = fstype.encode() if fstype is not None else None
    options = data.encode() if data is not None else None
    if _libc.mount(src, target.encode(), kind, flags, options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def bind(source: str, target: str, *, read_only: bool) -> None:
    """Bind source over target; a read-only bind needs a second, remounting call."""
    _mount(source, target, MS_BIND | MS_REC)
    if read_only:
        _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY)


def expose(folder: str, children: list[str]) -> None:
    """Let a non-root user reach `children` of a folder it may not traverse (e.g. /root/.pyenv).

    Inside this mount namespace only: a tmpfs (mode 0755) covers the folder, and each child is
    bound back from the original folder, reached through a file descriptor opened beforehand.
    """
    fd = os.open(folder, os.O_PATH)
    _mount("tmpfs", folder, 0, "tmpfs", "mode=0755")
    for child in children:
        source, target = f"/proc/self/fd/{fd}/{child}", os.path.join(folder, child)
        if os.path.isdir(source):
            os.mkdir(target)
        else:
            open(target, "w").close()
        bind(source, target, read_only=False)


KEEP_WRITABLE = {"proc", "sys", "dev", "run"}


def read_only_root(volume_targets: set[str]) -> None:
    """readOnlyRootFilesystem, best effort: every top-level folder becomes a read-only bind.

    Kernel filesystems and /run stay as they are; volumes already bound below a folder keep
    their own (writable) mounts because only the top of each recursive bind is remounted.
    """
    for entry in sorted(os.listdir("/")):
        path = "/" + entry
        if entry in KEEP_WRITABLE or path in volume_targets:
            continue
        if os.path.islink(path) or not os.path.isdir(path):
            continue
        bind(path, path, read_only=True)


def drop_privileges(spec: dict[str, Any]) -> None:
    """setuid/setgid to the pod's numbers; no user needs to exist for this."""
    uid, gid = spec.get("uid"), spec.get("gid")
    if uid is None and gid is None:
        return
    groups = [int(g) for g in spec.get("groups", [])]
    gid_value = int(gid) if gid is not None else int(uid if uid is not None else 0)
    os.setgroups(groups)
    os.setgid(gid_value)
    if uid is not None:
        os.setuid(int(uid))


def main() -> None:
    with open(sys.argv[1]) as handle:
        spec: dict[str, Any] = json.load(handle)
    # Folders a volume is about to hide (a checkout under /tmp below an emptyDir at /tmp), held
    # open so they can be bound back on top of that volume.
    held = {path: os.open(path, os.O_PATH) for path in spec.get("reexpose", [])}
    # Volumes first: their sources may live in a folder that `expose` is about to cover.
    for mount in spec.get("mounts", []):
        bind(mount["source"], mount["target"], read_only=bool(mount.get("readOnly")))
    for path, fd in held.items():
        os.makedirs(path, exist_ok=True)
        bind(f"/proc/self/fd/{fd}", path, read_only=True)
    if spec.get("readOnlyRoot"):
        read_only_root({mount["target"].rstrip("/") for mount in spec.get("mounts", [])})
    for folder, children in spec.get("expose", []):
        expose(folder, children)
    drop_privileges(spec)
    workdir = spec.get("workingDir") or "/"
    try:
        os.chdir(workdir)
    except FileNotFoundError:
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)
    argv: list[str] = spec["argv"]
    os.execve(argv[0], argv, spec["env"])


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:
        print(f"process node: container failed to start: {exc}", file=sys.stderr, flush=True)
        sys.exit(128)
