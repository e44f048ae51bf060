"""Settings for an in-process runtime on loopback, shared by the runtime's server tests: every
port picked by the OS (or off), so test servers never clash with each other or a real one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from llm_runtime import config


def settings(model: Path, **overrides: object) -> config.Settings:
    base = config.Settings(
        model=str(model),
        host="127.0.0.1",
        grpc_port=0,
        metrics_port=0,
        health_port=0,
        http_port=0,
        grace_seconds=1,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]
