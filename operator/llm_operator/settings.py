"""Operator settings: read once from LLM_OPERATOR_* environment variables, typed, validated.

`main` loads them before kopf starts and exits with a clear message when one is wrong (fail fast);
handlers receive them through kopf's memo and never read the environment themselves.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Literal

from llm_runtime.api import contract
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PREFIX = "LLM_OPERATOR_"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Each description is the setting's documentation: docs/operator-settings.md is generated from
    # these fields (`make docs`).
    namespaces: tuple[str, ...] = Field(
        default=(),
        description="Namespaces to watch, comma-separated; empty means every namespace "
        "(cluster-wide).",
    )
    runtime_image: str = Field(
        default="llm-operator/runtime:0.1.0",
        min_length=1,
        description="The runtime image used when an LLMDeployment leaves spec.runtime.image empty.",
    )
    peering_name: str = Field(
        default="llm-operator",
        description="kopf peering object name: replicas that share it elect one active handler. "
        "Empty means standalone (no peering; a single replica only).",
    )
    priority: int = Field(
        default_factory=lambda: random.randint(1, 2**30),
        ge=0,
        description="This replica's peering priority; unset draws a random one so two replicas "
        "never tie (kopf freezes every replica on a tie).",
    )
    standalone: bool = Field(
        default=False,
        description="Run without peering even when peering_name is set (a single replica only; "
        "development).",
    )
    health_port: int = Field(
        default=contract.OPERATOR_HEALTH_PORT,
        ge=1,
        le=65535,
        description="Port of the liveness endpoint kopf serves at /healthz.",
    )
    metrics_port: int = Field(
        default=contract.OPERATOR_METRICS_PORT,
        ge=1,
        le=65535,
        description="Port of the Prometheus /metrics endpoint.",
    )
    status_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often an LLMDeployment with something in flight (a rollout step, a pod "
        "loading or not Ready, a problem) is observed, its rollout decided and its status "
        "refreshed. Any watch event of the object or its children also wakes it at once.",
    )
    drift_interval_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How often a settled LLMDeployment is checked again with nothing changed. "
        "Drift (a manual edit or deletion of a child) is repaired on its watch event, not on "
        "this period; this is the safety net for a missed event.",
    )
    tick_workers: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Threads that run the ticks: at most this many LLMDeployments are observed "
        "at once (each tick's scrapes and smoke prompts have their own deadlines).",
    )
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="Log format: json (one object per line, for collectors) or text (for humans).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level: debug, info, warning or error."
    )

    @property
    def peering(self) -> bool:
        """Whether replicas coordinate through a peering object."""
        return bool(self.peering_name) and not self.standalone


def _split(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


def from_env(env: Mapping[str, str]) -> Settings:
    """Settings from an environment mapping; raises SettingsError naming the bad variable."""
    raw: dict[str, object] = {}
    for name in Settings.model_fields:
        value = env.get(PREFIX + name.upper())
        if value is None or (value == "" and name != "peering_name"):
            continue
        raw[name] = (
            _split(value)
            if name == "namespaces"
            else value.lower()
            if name.startswith("log_")
            else value
        )
    try:
        return Settings.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{PREFIX}{str(err['loc'][0]).upper()}: {err['msg']}" for err in e.errors()
        )
        raise SettingsError(problems) from e
