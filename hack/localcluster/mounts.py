"""Pod volumes as host folders, bound at their mount paths inside the pod's mount namespace.

Deciding what each volume holds is pure (`volume_files`, `container_mounts`); writing the files
and creating mount points are the only side effects. Kinds: emptyDir (a folder, mode 0777 like a
kubelet's; medium Memory is a folder too), hostPath, configMap, secret, downwardAPI, projected
(serviceAccountToken, configMap, secret, downwardAPI) and persistentVolumeClaim (the bound PV's
hostPath; see `provision.py`). Files are written when the pod starts and rewritten every few
seconds while it runs (`podsetup.token_refresh_interval`), so edits to a ConfigMap or Secret
reach its volumes as a kubelet's do, and the token is refreshed in place.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster import containerspec

FileMap = dict[str, tuple[str, int]]  # relative path -> (content, mode)
TokenKey = tuple[str, int]  # (audience, expirationSeconds)
DEFAULT_MODE = 0o644


@dataclass(frozen=True)
class Mount:
    """One bind: a host path shown at a path inside the pod."""

    source: str
    target: str
    read_only: bool


def _items(
    data: Mapping[str, str], items: Iterable[Mapping[str, Any]] | None, mode: int
) -> FileMap:
    if not items:
        return {key: (value, mode) for key, value in data.items()}
    return {
        i["path"]: (data[i["key"]], int(i.get("mode", mode))) for i in items if i["key"] in data
    }


def _object_files(
    kind: str, source: Mapping[str, Any], objects: Mapping[containerspec.ObjectKey, Any], mode: int
) -> FileMap:
    name = source.get("secretName") or source["name"]
    data = objects.get((kind, name))
    if data is None:
        if source.get("optional"):
            return {}
        raise containerspec.ConfigError(f"{kind} {name!r} not found")
    return _items(data, source.get("items"), int(source.get("defaultMode", mode)))


def _downward_files(
    source: Mapping[str, Any], pod: Mapping[str, Any], *, pod_ip: str, host_ip: str, mode: int
) -> FileMap:
    files: FileMap = {}
    for item in source.get("items", []):
        if "fieldRef" in item:
            path = item["fieldRef"]["fieldPath"]
            value = containerspec.field_ref(pod, path, pod_ip=pod_ip, host_ip=host_ip)
        else:
            value = "0"
        files[item["path"]] = (value, int(item.get("mode", mode)))
    return files


def token_requests(pod: Mapping[str, Any]) -> set[TokenKey]:
    """The (audience, expiration) pairs of every serviceAccountToken projection in the pod."""
    wanted: set[TokenKey] = set()
    for volume in pod.get("spec", {}).get("volumes", []):
        for source in volume.get("projected", {}).get("sources", []):
            token = source.get("serviceAccountToken")
            if token is not None:
                wanted.add((token.get("audience", ""), int(token.get("expirationSeconds", 3600))))
    return wanted


def volume_files(
    volume: Mapping[str, Any],
    *,
    pod: Mapping[str, Any],
    objects: Mapping[containerspec.ObjectKey, Any],
    tokens: Mapping[TokenKey, str],
    pod_ip: str,
    host_ip: str,
) -> FileMap | None:
    """The files a content volume holds, or None for folder volumes (emptyDir, hostPath, PVC)."""
    if "configMap" in volume:
        return _object_files("configmap", volume["configMap"], objects, DEFAULT_MODE)
    if "secret" in volume:
        return _object_files("secret", volume["secret"], objects, DEFAULT_MODE)
    if "downwardAPI" in volume:
        source = volume["downwardAPI"]
        mode = int(source.get("defaultMode", DEFAULT_MODE))
        return _downward_files(source, pod, pod_ip=pod_ip, host_ip=host_ip, mode=mode)
    if "projected" not in volume:
        return None
    projected = volume["projected"]
    mode = int(projected.get("defaultMode", DEFAULT_MODE))
    files: FileMap = {}
    for source in projected.get("sources", []):
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            key = (token.get("audience", ""), int(token.get("expirationSeconds", 3600)))
            files[token["path"]] = (tokens[key], mode)
        elif "configMap" in source:
            files.update(_object_files("configmap", source["configMap"], objects, mode))
        elif "secret" in source:
            files.update(_object_files("secret", source["secret"], objects, mode))
        elif "downwardAPI" in source:
            files.update(
                _downward_files(
                    source["downwardAPI"], pod, pod_ip=pod_ip, host_ip=host_ip, mode=mode
                )
            )
    return files


def write_files(folder: Path, files: FileMap) -> None:
    """Write a content volume's files, each atomically (temp file + rename in the folder).

    The folder is what gets bound into the pod, so a renamed-in file (a refreshed token) is seen
    at once and a reader never sees it half written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    for rel, (content, mode) in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = path.with_name(f".{path.name}.tmp")
        fresh.write_text(content)
        fresh.chmod(mode)
        os.replace(fresh, path)


def folder_source(volume: Mapping[str, Any], *, pod_dir: Path, pvc_paths: Mapping[str, str]) -> str:
    """The host folder behind a volume; content volumes live under the pod's folder."""
    if "hostPath" in volume:
        return str(volume["hostPath"]["path"])
    if "persistentVolumeClaim" in volume:
        return pvc_paths[volume["persistentVolumeClaim"]["claimName"]]
    return str(pod_dir / "volumes" / volume["name"])


# A hostPath `type` -> (the kind of file it must be, the kubelet's words when it is not).
_HOST_PATH_KINDS = {
    "Directory": ("directory", "is not a directory"),
    "File": ("file", "is not a file"),
    "Socket": ("socket", "is not a socket file"),
    "CharDevice": ("char", "is not a character device"),
    "BlockDevice": ("block", "is not a block device"),
}


def path_kind(path: str) -> str | None:
    """What is at `path`: directory, file, socket, char, block, other; None when nothing is."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for kind, test in (
        ("directory", stat.S_ISDIR),
        ("file", stat.S_ISREG),
        ("socket", stat.S_ISSOCK),
        ("char", stat.S_ISCHR),
        ("block", stat.S_ISBLK),
    ):
        if test(mode):
            return kind
    return "other"


def host_path_problem(type_: str, path: str, kind: str | None) -> str | None:
    """The kubelet's type check of a hostPath volume (pkg/volume/hostpath): None when `kind`
    (what `path_kind` found) satisfies `type_`. The *OrCreate types and unset accept anything
    (the kubelet creates what is missing); the others name the path and what it should be."""
    wanted = _HOST_PATH_KINDS.get(type_)
    if wanted is None or kind == wanted[0]:
        return None
    return f"hostPath type check failed: {path} {wanted[1]}"


def prepare_folder(volume: Mapping[str, Any], source: str) -> None:
    """Create emptyDir and hostPath (DirectoryOrCreate/unset type) folders with open modes, and
    check the typed hostPaths as a kubelet does: ConfigError (FailedMount) when one is wrong."""
    if "emptyDir" in volume:
        os.makedirs(source, exist_ok=True)
        os.chmod(source, 0o777)
        return
    if "hostPath" not in volume:
        return
    type_ = volume["hostPath"].get("type", "")
    if type_ in ("", "DirectoryOrCreate"):
        os.makedirs(source, exist_ok=True)
    elif type_ == "FileOrCreate" and not os.path.exists(source):
        Path(source).touch(mode=0o644)
    elif problem := host_path_problem(type_, source, path_kind(source)):
        raise containerspec.ConfigError(problem)


def read_only_volumes(pod: Mapping[str, Any]) -> set[str]:
    """Volumes every mount of which is read-only: content volumes (as a kubelet mounts them)
    and claims marked `readOnly` in the pod's volume list."""
    names = set()
    for volume in pod.get("spec", {}).get("volumes", []):
        if any(
            k in volume for k in ("configMap", "secret", "downwardAPI", "projected")
        ) or volume.get("persistentVolumeClaim", {}).get("readOnly"):
            names.add(volume["name"])
    return names


def container_mounts(
    container: Mapping[str, Any],
    sources: Mapping[str, str],
    *,
    read_only: Collection[str] = frozenset(),
) -> list[Mount]:
    """The binds of one container, subPath applied, in the order given (parents first)."""
    binds = []
    for vm in container.get("volumeMounts", []):
        source = sources.get(vm["name"])
        if source is None:
            raise containerspec.ConfigError(f"volumeMount {vm['name']!r} names no volume")
        if vm.get("subPath"):
            source = os.path.join(source, vm["subPath"])
        ro = bool(vm.get("readOnly", False)) or vm["name"] in read_only
        binds.append(Mount(source, vm["mountPath"], ro))
    return sorted(binds, key=lambda m: m.target.count("/"))


def shadowed(binds: Iterable[Mount], needed: Iterable[str]) -> list[tuple[str, str]]:
    """(mount path, needed path) pairs where a volume would hide a file the process needs.

    The pod shares the host's root filesystem, so a volume at /work hides a venv under /work.
    """
    return [
        (b.target, path)
        for b in binds
        for path in needed
        if path == b.target or path.startswith(b.target.rstrip("/") + "/")
    ]


def reexposed(hidden: Iterable[tuple[str, str]]) -> list[str]:
    """The folders to bind back on top of the volumes that would hide them.

    For each (volume mount path, needed path) pair: the child of the mount path on the way to
    the needed path (a volume at /tmp hiding /tmp/ci/.venv/bin/python gives /tmp/ci), so the
    whole checkout the program runs from (venv and editable sources) stays reachable. A needed
    path equal to the mount path cannot be saved and is returned as is (the caller refuses).
    """
    found: set[str] = set()
    for target, path in hidden:
        top = target.rstrip("/")
        rest = path[len(top) :].lstrip("/")
        found.add(path if not rest else f"{top}/{rest.split('/')[0]}")
    return sorted(found)


def ensure_mountpoint(mount: Mount) -> list[str]:
    """Create a missing mount point on the host and return what was created (for cleanup)."""
    created: list[str] = []
    target = Path(mount.target)
    missing = []
    probe = target
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    is_file = os.path.isfile(mount.source)
    if is_file and not os.path.exists(mount.source):
        return created
    for path in reversed(missing):
        if path == target and is_file:
            path.touch()
        else:
            path.mkdir()
        created.append(str(path))
    if not os.path.exists(mount.source):
        os.makedirs(mount.source, exist_ok=True)
    return created


def remove_created(paths: Iterable[str]) -> None:
    """Remove mount points the node created, deepest first, only when still empty."""
    for path in sorted(set(paths), key=lambda p: p.count("/"), reverse=True):
        try:
            if os.path.isdir(path):
                os.rmdir(path)
            elif os.path.isfile(path) and os.path.getsize(path) == 0:
                os.unlink(path)
        except OSError:
            pass
