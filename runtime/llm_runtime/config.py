"""Settings of `llm-runtime serve`: every knob is a flag and an `LLM_RUNTIME_*` environment variable.

The operator configures pods through environment variables, people through flags; a flag wins over
the variable, the variable over the default. Settings are parsed once, validated, and frozen, so a
bad value stops the process at start with a message instead of failing on the first request.

The table of options (field, parser, help, variable) is `llm_runtime.api.options`, torch-free, so
the operator names the variables from it; its names are re-exported here.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_runtime.api import contract
from llm_runtime.api.options import (
    BY_FIELD,
    ENV_PREFIX,
    MODEL_NAME_ENV,
    MODEL_REVISION_ENV,
    OPTIONS,
    Option,
    parse_bool,
)

__all__ = [
    "ENV_PREFIX",
    "MODEL_NAME_ENV",
    "MODEL_REVISION_ENV",
    "OPTIONS",
    "Option",
    "Settings",
    "add_arguments",
    "from_namespace",
    "parse_bool",
    "read_token",
    "validate",
]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything `serve` needs; see `OPTIONS` for what each field means."""

    model: str = ""
    model_name: str = ""
    model_revision: str = ""
    dtype: str = "auto"
    device: str = "auto"
    host: str = "0.0.0.0"
    grpc_port: int = contract.RUNTIME_GRPC_PORT
    metrics_port: int = contract.RUNTIME_METRICS_PORT
    health_port: int = contract.RUNTIME_HEALTH_PORT
    http_port: int = contract.RUNTIME_HTTP_PORT
    max_batch_size: int = 32
    max_waiting: int = 256
    max_input_tokens: int = 2048
    max_new_tokens: int = 512
    max_prompt_bytes: int = 0  # 0: PROMPT_BYTES_PER_TOKEN * max_input_tokens
    max_message_bytes: int = 4 * 1024 * 1024 + 64 * 1024  # gRPC's 4 MiB and room for the fields
    max_concurrent_rpcs: int = 0  # 0: max_batch_size + max_waiting + RPC_HEADROOM
    prefill_token_budget: int = 512
    grace_seconds: float = 30.0
    max_connection_age_seconds: float = 30.0
    max_connection_age_grace_seconds: float = 300.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    auth_token_file: Path | None = None
    log_payloads: bool = False
    log_level: str = "INFO"


def add_arguments(parser: argparse.ArgumentParser, *, env: Mapping[str, str]) -> None:
    """Add one flag per setting; a set environment variable becomes the flag's default."""
    defaults = Settings()
    for opt in OPTIONS:
        default = getattr(defaults, opt.field)
        raw = env.get(opt.env_name)
        try:
            value = opt.parse(raw) if raw is not None else default
        except ValueError as exc:
            raise ValueError(f"{opt.env_name}={raw!r}: {exc}") from exc
        shown = "" if value is None else value
        kwargs: dict[str, Any] = {"dest": opt.field, "default": value, "type": opt.parse}
        if opt.parse is parse_bool:
            kwargs = {"dest": opt.field, "default": value, "action": argparse.BooleanOptionalAction}
        parser.add_argument(
            opt.flag, help=f"{opt.help} [env {opt.env_name}; now: {shown!s}]", **kwargs
        )


def _problem(field: str, rule: str) -> str:
    """A broken rule, naming the setting as a person set it (its flag and its variable)."""
    opt = BY_FIELD[field]
    return f"{field} {rule} ({opt.flag}, {opt.env_name})"


# The ports `serve` listens on; 0 picks a free one (grpc, metrics) or turns the server off.
PORTS = ("grpc_port", "metrics_port", "health_port", "http_port")


def port_clashes(settings: Settings) -> list[str]:
    """Two servers given the same fixed port: the second would fail to bind only once the first
    is up, so refuse it at start, naming the later setting of each pair (0 never clashes)."""
    problems = []
    for i, later in enumerate(PORTS):
        value = getattr(settings, later)
        for earlier in PORTS[:i]:
            if value and value == getattr(settings, earlier):
                problems.append(_problem(later, f"must differ from {earlier} (or be 0)"))
    return problems


def validate(settings: Settings) -> list[str]:
    """Everything wrong with `settings`, as messages a person can act on; empty when fine."""
    problems = []
    positive = (
        "max_batch_size",
        "max_waiting",
        "max_input_tokens",
        "max_new_tokens",
        "prefill_token_budget",
        "max_message_bytes",
    )
    problems += [_problem(f, "must be >= 1") for f in positive if getattr(settings, f) < 1]
    derived = ("max_prompt_bytes", "max_concurrent_rpcs")  # 0 means "derive from the others"
    problems += [_problem(f, "must be >= 0") for f in derived if getattr(settings, f) < 0]
    non_negative = (
        "grace_seconds",
        "max_connection_age_seconds",
        "max_connection_age_grace_seconds",
    )
    # `not >=` also refuses NaN, which float() parses and every comparison lets through.
    problems += [_problem(f, "must be >= 0") for f in non_negative if not getattr(settings, f) >= 0]
    for port in PORTS:
        if not 0 <= getattr(settings, port) <= 65535:
            problems.append(_problem(port, "must be in 0..65535"))
    problems += port_clashes(settings)
    if (settings.tls_cert is None) != (settings.tls_key is None):
        problems.append("tls_cert and tls_key go together: give both or neither")
    files = (settings.tls_cert, settings.tls_key, settings.auth_token_file)
    problems += [f"{p} does not exist" for p in files if p is not None and not p.is_file()]
    if settings.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        problems.append(f"log_level {settings.log_level!r} is not DEBUG, INFO, WARNING or ERROR")
    return problems


# A prompt's default byte budget per allowed token: byte-level BPE averages 3-5 bytes per token on
# prose (4 bytes are one emoji), so 8 leaves room for any real prompt that fits max_input_tokens
# and bounds the work spent tokenizing one that cannot (4 MB took 7 s to tokenize, measured).
PROMPT_BYTES_PER_TOKEN = 8
# Calls beyond the batch and the queue that the gRPC port still takes: ModelInfo, Health,
# reflection, and requests on their way to a RESOURCE_EXHAUSTED from the queue.
RPC_HEADROOM = 32


def prompt_bytes_limit(settings: Settings) -> int:
    """`max_prompt_bytes`, or its default derived from `max_input_tokens`."""
    return settings.max_prompt_bytes or PROMPT_BYTES_PER_TOKEN * settings.max_input_tokens


def concurrent_rpcs_limit(settings: Settings) -> int:
    """`max_concurrent_rpcs`, or its default: every call the engine could hold, plus headroom."""
    return settings.max_concurrent_rpcs or (
        settings.max_batch_size + settings.max_waiting + RPC_HEADROOM
    )


def from_namespace(ns: argparse.Namespace) -> Settings:
    """Settings from parsed flags (defaults already folded in by `add_arguments`)."""
    return Settings(**{opt.field: getattr(ns, opt.field) for opt in OPTIONS})


def read_token(path: Path) -> bytes:
    """The bearer token: the file's content without surrounding whitespace (Secrets end in \\n)."""
    token = path.read_bytes().strip()
    if not token:
        raise ValueError(f"auth token file {path} is empty")
    return token
