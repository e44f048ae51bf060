"""The front door's routing config: two backends and the canary's weight, parsed and frozen.

The file (a mounted ConfigMap key, written by the operator) is one JSON object:

    {
      "stable": {"target": "dns:///chat-r1a2b3.ns.svc.cluster.local:PORT", "revision": "r1a2b3"},
      "canary": {"target": "dns:///chat-r4c5d6.ns.svc.cluster.local:PORT", "revision": "r4c5d6"},
      "weight": 10
    }

- `stable` (required): where every request goes unless the split picks the canary.
- `canary` (optional, may be `null`): the revision under test.
- `weight` (optional, default 0): the canary's share in whole percent, an integer 0..100. It
  must be 0 when there is no canary.
- `target`: a gRPC target string (`dns:///host:port`, `ipv4:10.0.0.1:PORT,10.0.0.2:PORT`,
  `127.0.0.1:5001`...); a DNS name that resolves to several pod IPs (a headless Service) is
  spread across them by the channel's round_robin policy.
- `revision`: the revision's name, only used as a metric label (`[A-Za-z0-9._-]`, 1..63 chars).

Unknown keys are refused (a typo must not silently mean "default"), and so is any other mistake,
with a message naming the field (`canary.weight`, `stable.target`...). Pure: no gRPC, no I/O,
so an HTTP front door can share it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

STABLE = "stable"
CANARY = "canary"
BACKENDS = (STABLE, CANARY)

_REVISION = re.compile(r"[A-Za-z0-9._-]{1,63}")
_TOP_KEYS = frozenset({STABLE, CANARY, "weight"})
_BACKEND_KEYS = frozenset({"target", "revision"})


class ConfigError(ValueError):
    """A config the front door refuses; the message names the field."""


@dataclasses.dataclass(frozen=True)
class Backend:
    """One revision's pods, reached through one gRPC target."""

    target: str
    revision: str


@dataclasses.dataclass(frozen=True)
class RoutingConfig:
    """Where requests go: `weight` percent to `canary`, the rest to `stable`."""

    stable: Backend
    canary: Backend | None = None
    weight: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.weight, bool) or not isinstance(self.weight, int):
            raise ConfigError(f"weight: must be an integer percent, got {self.weight!r}")
        if not 0 <= self.weight <= 100:
            raise ConfigError(f"weight: must be within 0..100, got {self.weight}")
        if self.canary is None and self.weight != 0:
            raise ConfigError(f"weight: is {self.weight} but there is no canary")

    @property
    def canary_weight(self) -> int:
        """The canary's effective share: 0 without a canary."""
        return self.weight if self.canary is not None else 0

    def backend(self, name: str) -> Backend | None:
        return self.stable if name == STABLE else self.canary if name == CANARY else None


def _backend(raw: Any, field: str) -> Backend:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{field}: must be an object with target and revision")
    unknown = sorted(set(raw) - _BACKEND_KEYS)
    if unknown:
        raise ConfigError(f"{field}.{unknown[0]}: unknown field")
    target = raw.get("target")
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"{field}.target: must be a non-empty string")
    if any(c.isspace() for c in target):
        raise ConfigError(f"{field}.target: must not contain whitespace, got {target!r}")
    revision = raw.get("revision")
    if not isinstance(revision, str) or not _REVISION.fullmatch(revision):
        raise ConfigError(
            f"{field}.revision: must be 1..63 characters of [A-Za-z0-9._-], got {revision!r}"
        )
    return Backend(target=target, revision=revision)


def from_mapping(raw: Any) -> RoutingConfig:
    """Validate a decoded JSON document; ConfigError names the first bad field."""
    if not isinstance(raw, Mapping):
        raise ConfigError("the config must be a JSON object")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown field")
    if raw.get(STABLE) is None:
        raise ConfigError(f"{STABLE}: required")
    stable = _backend(raw[STABLE], STABLE)
    canary_raw = raw.get(CANARY)
    canary = None if canary_raw is None else _backend(canary_raw, CANARY)
    return RoutingConfig(stable=stable, canary=canary, weight=raw.get("weight", 0))


def parse(text: str | bytes) -> RoutingConfig:
    """A config file's content -> RoutingConfig, or ConfigError."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid JSON: {exc}") from None
    return from_mapping(raw)


def to_json(config: RoutingConfig) -> str:
    """The file content for `config` (the operator's side, and tests)."""
    doc: dict[str, Any] = {STABLE: dataclasses.asdict(config.stable), "weight": config.weight}
    if config.canary is not None:
        doc[CANARY] = dataclasses.asdict(config.canary)
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
