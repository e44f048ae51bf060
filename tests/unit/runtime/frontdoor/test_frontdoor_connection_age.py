"""The front door ages its clients' connections like the runtime does, so they spread over
front door replicas added after they connected."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_runtime.frontdoor import main, proxy

pytestmark = pytest.mark.unit


def test_a_positive_age_becomes_grpc_age_and_grace_in_milliseconds() -> None:
    assert proxy.connection_age_options(30, 300) == [
        ("grpc.max_connection_age_ms", 30_000),
        ("grpc.max_connection_age_grace_ms", 300_000),
    ]


def test_zero_age_keeps_connections_and_huge_values_stay_c_ints() -> None:
    assert proxy.connection_age_options(0, 300) == []
    ((_, age), (_, grace)) = proxy.connection_age_options(10**9, 10**9)
    assert age == grace == 2**31 - 1


def test_the_command_line_sets_the_age_and_defaults_to_the_runtimes() -> None:
    default = main.parse_args(["--config", "routes.json"])
    assert (default.max_connection_age_seconds, default.max_connection_age_grace_seconds) == (
        30.0,
        300.0,
    )
    got = main.parse_args(
        ["--config", "routes.json", "--max-connection-age-seconds", "5",
         "--max-connection-age-grace-seconds", "7"]
    )  # fmt: skip
    assert (got.config, got.max_connection_age_seconds) == (Path("routes.json"), 5.0)
    assert got.max_connection_age_grace_seconds == 7.0
