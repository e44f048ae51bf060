"""Kubeconfigs for the admin, the node agent and the control-plane components.

Built as dicts and dumped once. Credentials are embedded (`*-data`), so a kubeconfig is one
self-contained file that can be copied or merged into `~/.kube/config` without dangling paths.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

Config = dict[str, Any]


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def build(*, name: str, server: str, ca: Path, cert: Path, key: Path, user: str) -> Config:
    """Pure except for reading the PEM files: one cluster, one user, one current context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)},
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
        "preferences": {},
    }


def _replace_named(items: list[Config], new: list[Config]) -> list[Config]:
    """Pure: `items` with entries named like one in `new` replaced, the rest of `new` appended."""
    names = {n["name"] for n in new}
    return [i for i in items if i.get("name") not in names] + new


def merge(existing: Config, ours: Config) -> Config:
    """Pure: add our cluster/user/context to a foreign kubeconfig and make ours current.

    Entries with other names are kept untouched, so a user's other clusters survive.
    """
    merged = dict(existing)
    for section in ("clusters", "users", "contexts"):
        merged[section] = _replace_named(list(existing.get(section) or []), ours[section])
    merged["current-context"] = ours["current-context"]
    merged.setdefault("apiVersion", "v1")
    merged.setdefault("kind", "Config")
    return merged


def write(path: Path, config: Config) -> None:
    """Write atomically with owner-only permissions (the file holds a private key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(config, out, sort_keys=False)
    tmp.replace(path)


def read(path: Path) -> Config:
    """A kubeconfig as a dict; an empty or missing file reads as an empty config."""
    if not path.exists():
        return {}
    loaded = yaml.safe_load(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


def install_default(ours: Config, *, target: Path) -> None:
    """Make our context the machine's default in `target`, merging into what is there."""
    write(target, merge(read(target), ours))


def default_target() -> Path:
    """`~/.kube/config` (deliberately not $KUBECONFIG, which may point at our own file)."""
    return Path.home() / ".kube" / "config"
