"""Image references become local programs through the documented map in images.yaml.

There is no container engine on this machine, so "pulling" an image means finding its rule.
Resolution is pure: (image, rules) -> ImageRule, so it is tested with plain tables.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = Path(__file__).with_name("images.yaml")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageNotFoundError(Exception):
    """No rule maps this image: the node reports ErrImagePull like a kubelet whose pull failed."""


# A reference as the kubelet parses it (distribution/reference): lower-case path components, an
# optional registry host with port, tag and digest. Anything else is InvalidImageName.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)


# Waiting reasons of a container whose image is not there (cleared once the image maps).
PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
)

# The Event reason a kubelet posts with each image waiting reason (pull failures are "Failed").
IMAGE_EVENTS = {"InvalidImageName": "InspectFailed", "ErrImageNeverPull": "ErrImageNeverPull"}


def pull_failure(image: str, *, policy: str, mapped: bool) -> tuple[str, str] | None:
    """The waiting reason and message a kubelet would report for an image that cannot start,
    or None when the container may go on: InvalidImageName for a reference that does not
    parse (never retried), ErrImageNeverPull for an image that is not "present" (no rule maps
    it) under imagePullPolicy Never; an unmapped image otherwise fails the pull (ErrImagePull)."""
    if not _REFERENCE.fullmatch(image):
        return (
            "InvalidImageName",
            f'Failed to apply default image tag "{image}": invalid reference format',
        )
    if mapped:
        return None
    if policy == "Never":
        return (
            "ErrImageNeverPull",
            f'Container image "{image}" is not present with pull policy of Never',
        )
    return "ErrImagePull", f"no rule in images.yaml maps image {image!r}"


@dataclass(frozen=True)
class ImageRule:
    """What an image would have carried: ENTRYPOINT, CMD, PATH additions and environment."""

    match: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    path: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def base_env(self) -> dict[str, str]:
        """The environment a process of this image starts from (before the container's env)."""
        return {"PATH": ":".join([*self.path, SYSTEM_PATH]), **self.env}


def venv_dir() -> Path:
    """The virtualenv that supplies python and the project's entry points."""
    return Path(os.environ.get("LLMOP_VENV", str(REPO / ".venv")))


def _fill(text: str, *, repo: Path, venv: Path) -> str:
    return text.replace("{repo}", str(repo)).replace("{venv}", str(venv))


def parse_rules(doc: Mapping[str, Any], *, repo: Path, venv: Path) -> list[ImageRule]:
    """Turn the YAML document into rules with placeholders filled."""
    rules = []
    for raw in doc.get("images", []):

        def fill_all(key: str, raw: Mapping[str, Any] = raw) -> tuple[str, ...]:
            return tuple(_fill(str(x), repo=repo, venv=venv) for x in raw.get(key, []))

        env = {str(k): _fill(str(v), repo=repo, venv=venv) for k, v in raw.get("env", {}).items()}
        rules.append(
            ImageRule(
                match=str(raw["match"]),
                entrypoint=fill_all("entrypoint"),
                cmd=fill_all("cmd"),
                path=fill_all("path"),
                env=env,
            )
        )
    return rules


def load_rules(path: Path = RULES_FILE) -> list[ImageRule]:
    """Read images.yaml (re-read on every pod start so edits apply without a node restart)."""
    return parse_rules(yaml.safe_load(path.read_text()) or {}, repo=REPO, venv=venv_dir())


def resolve(image: str, rules: Sequence[ImageRule]) -> ImageRule:
    """The first rule whose pattern matches the image reference."""
    for rule in rules:
        if fnmatch.fnmatchcase(image, rule.match):
            return rule
    raise ImageNotFoundError(f"no rule in images.yaml maps image {image!r}")
