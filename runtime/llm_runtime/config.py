"""Settings of `llm-runtime serve`: every knob is a flag and an `LLM_RUNTIME_*` environment variable.

The operator configures pods through environment variables, people through flags; a flag wins over
the variable, the variable over the default. Settings are parsed once, validated, and frozen, so a
bad value stops the process at start with a message instead of failing on the first request.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "LLM_RUNTIME_"
# The operator sets these two for every pod; they become the `model` and `revision` metric labels.
MODEL_NAME_ENV = "LLM_MODEL_NAME"
MODEL_REVISION_ENV = "LLM_MODEL_REVISION"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything `serve` needs; see `OPTIONS` for what each field means."""

    model: str = ""
    model_name: str = ""
    model_revision: str = ""
    dtype: str = "auto"
    device: str = "auto"
    host: str = "0.0.0.0"
    grpc_port: int = 50051
    metrics_port: int = 9090
    max_batch_size: int = 32
    max_waiting: int = 256
    max_input_tokens: int = 2048
    max_new_tokens: int = 512
    prefill_token_budget: int = 512
    grace_seconds: float = 30.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    auth_token_file: Path | None = None
    log_payloads: bool = False
    log_level: str = "INFO"


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting: its field, how to parse it, and the help line `--help` prints."""

    field: str
    parse: Callable[[str], Any]
    help: str
    env: str = ""  # defaults to LLM_RUNTIME_<FIELD>

    @property
    def env_name(self) -> str:
        return self.env or ENV_PREFIX + self.field.upper()

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


def parse_bool(text: str) -> bool:
    """Environment-style booleans: 1/true/yes/on and 0/false/no/off, any case."""
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


OPTIONS: tuple[Option, ...] = (
    Option("model", str, "model to serve: a converted or HF model folder, or a .gguf file; "
           "empty serves the packaged default (SmolLM2-135M-Instruct)"),
    Option("model_name", str, "name reported by ModelInfo and used as the `model` metric label; "
           "empty uses the model's own name", env=MODEL_NAME_ENV),
    Option("model_revision", str, "revision reported by ModelInfo and used as the `revision` "
           "metric label; empty uses the model's own", env=MODEL_REVISION_ENV),
    Option("dtype", str, "weights dtype: auto (bf16 where the device supports it), bfloat16, "
           "float16 or float32"),
    Option("device", str, "auto (cuda when present, else cpu), cpu, cuda or cuda:N"),
    Option("host", str, "address both servers bind"),
    Option("grpc_port", int, "gRPC port (Runtime, Health, reflection); 0 picks a free one"),
    Option("metrics_port", int, "Prometheus /metrics HTTP port; 0 picks a free one"),
    Option("max_batch_size", int, "most requests decoded together in one step"),
    Option("max_waiting", int, "most requests queued behind a full batch; more get "
           "RESOURCE_EXHAUSTED"),
    Option("max_input_tokens", int, "longest prompt in tokens after the chat template; longer "
           "(or prompt + max_new_tokens beyond the context length) gets INVALID_ARGUMENT"),
    Option("max_new_tokens", int, "largest max_new_tokens a request may ask for"),
    Option("prefill_token_budget", int, "prompt tokens prefilled per engine step: lower keeps "
           "running streams smooth, higher gets new requests their first token sooner"),
    Option("grace_seconds", float, "on SIGTERM, how long in-flight requests may run before they "
           "are cancelled"),
    Option("tls_cert", _optional_path, "PEM certificate file; with --tls-key turns TLS on"),
    Option("tls_key", _optional_path, "PEM private key file for --tls-cert"),
    Option("auth_token_file", _optional_path, "file holding the bearer token every Runtime call "
           "must carry (Health and reflection stay open for probes); empty turns auth off"),
    Option("log_payloads", parse_bool, "log prompts and completions (off: only ids, counts and "
           "timings are logged)"),
    Option("log_level", str, "DEBUG, INFO, WARNING or ERROR"),
)  # fmt: skip


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


def validate(settings: Settings) -> list[str]:
    """Everything wrong with `settings`, as messages a person can act on; empty when fine."""
    problems = []
    positive = (
        "max_batch_size",
        "max_waiting",
        "max_input_tokens",
        "max_new_tokens",
        "prefill_token_budget",
    )
    problems += [f"{f} must be >= 1" for f in positive if getattr(settings, f) < 1]
    non_negative = ("grace_seconds",)
    problems += [f"{f} must be >= 0" for f in non_negative if getattr(settings, f) < 0]
    for port in ("grpc_port", "metrics_port"):
        if not 0 <= getattr(settings, port) <= 65535:
            problems.append(f"{port} must be in 0..65535")
    if (settings.tls_cert is None) != (settings.tls_key is None):
        problems.append("tls_cert and tls_key go together: give both or neither")
    files = (settings.tls_cert, settings.tls_key, settings.auth_token_file)
    problems += [f"{p} does not exist" for p in files if p is not None and not p.is_file()]
    if settings.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        problems.append(f"log_level {settings.log_level!r} is not DEBUG, INFO, WARNING or ERROR")
    return problems


def from_namespace(ns: argparse.Namespace) -> Settings:
    """Settings from parsed flags (defaults already folded in by `add_arguments`)."""
    return Settings(**{opt.field: getattr(ns, opt.field) for opt in OPTIONS})


def read_token(path: Path) -> bytes:
    """The bearer token: the file's content without surrounding whitespace (Secrets end in \\n)."""
    token = path.read_bytes().strip()
    if not token:
        raise ValueError(f"auth token file {path} is empty")
    return token
