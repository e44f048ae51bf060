"""The settings table of `llm-runtime serve`: each setting's field, parser, help and variable.

It lives in the api package, torch-free, because it is half of the contract between the operator
and the runtime: the runtime builds its flags and reads its environment from it
(`llm_runtime.config`), and the operator names the variables it sets in pods from it
(`llm_runtime.api.contract.env`). A variable's name is written here and nowhere else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV_PREFIX = "LLM_RUNTIME_"
# The operator sets these two for every pod; they become the `model` and `revision` metric labels.
MODEL_NAME_ENV = "LLM_MODEL_NAME"
MODEL_REVISION_ENV = "LLM_MODEL_REVISION"


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting: its field, how to parse it, and the help line `--help` prints."""

    field: str
    parse: Callable[[str], Any]
    help: str
    env: str = ""  # defaults to ENV_PREFIX + FIELD

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


def optional_path(text: str) -> Path | None:
    """A path, or None for the empty string (the setting is off)."""
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
    Option("health_port", int, "plaintext port serving only grpc.health.v1 (no TLS, no token), "
           "with the main port's serving status: the kubelet's gRPC probe speaks no TLS; 0 turns "
           "it off"),
    Option("http_port", int, "OpenAI-compatible HTTP port (/v1/chat/completions, /v1/completions, "
           "/v1/models) on the same engine, with the gRPC port's TLS files and token; 0 turns it "
           "off"),
    Option("max_batch_size", int, "most requests decoded together in one step"),
    Option("max_waiting", int, "most requests queued behind a full batch; more get "
           "RESOURCE_EXHAUSTED"),
    Option("max_input_tokens", int, "longest prompt in tokens after the chat template; longer "
           "(or prompt + max_new_tokens beyond the context length) gets INVALID_ARGUMENT"),
    Option("max_new_tokens", int, "largest max_new_tokens a request may ask for"),
    Option("max_prompt_bytes", int, "largest prompt in UTF-8 bytes (chat messages summed), refused "
           "with INVALID_ARGUMENT before tokenizing; 0: 8 bytes per max_input_tokens"),
    Option("max_message_bytes", int, "largest gRPC request message the server reads; larger gets "
           "RESOURCE_EXHAUSTED from gRPC itself before it is parsed"),
    Option("max_concurrent_rpcs", int, "calls the gRPC port runs at once; more get "
           "RESOURCE_EXHAUSTED from gRPC. 0: max_batch_size + max_waiting + 32 (room for "
           "ModelInfo, Health and reflection)"),
    Option("prefill_token_budget", int, "prompt tokens prefilled per engine step: lower keeps "
           "running streams smooth, higher gets new requests their first token sooner"),
    Option("grace_seconds", float, "on SIGTERM, how long in-flight requests may run before they "
           "are cancelled"),
    Option("max_connection_age_seconds", float, "close each client connection this long after "
           "it opened (give or take a tenth): a GOAWAY, on which the client's channel reconnects "
           "and re-resolves its target, so clients that keep one channel still reach new pods (a "
           "canary) though kube-proxy balances per connection. 30 s: a new pod gets traffic "
           "within three 10 s analysis windows, for one handshake per client every 30 s. 0 keeps "
           "connections for ever"),
    Option("max_connection_age_grace_seconds", float, "how long the calls still running on an "
           "aged connection may go on before it is closed under them. It closes as soon as they "
           "end, so a long grace costs nothing, and one shorter than the longest generation cuts "
           "it: 300 s covers a full max_new_tokens on a busy CPU. 0 cuts them at once"),
    Option("tls_cert", optional_path, "PEM certificate file; with --tls-key turns TLS on"),
    Option("tls_key", optional_path, "PEM private key file for --tls-cert"),
    Option("auth_token_file", optional_path, "file holding the bearer token every Runtime call "
           "must carry (Health and reflection stay open for probes); empty turns auth off"),
    Option("log_payloads", parse_bool, "log prompts and completions (off: only ids, counts and "
           "timings are logged)"),
    Option("log_level", str, "DEBUG, INFO, WARNING or ERROR"),
)  # fmt: skip

# The options by field, for lookups (contract.env).
BY_FIELD: dict[str, Option] = {opt.field: opt for opt in OPTIONS}
