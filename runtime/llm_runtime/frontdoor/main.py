"""`llm-frontdoor`: the per-request canary splitter in front of an LLMDeployment's pods.

    llm-frontdoor --config /etc/llm-frontdoor/routing.json [--port PORT] [--metrics-port PORT]

The config file's format is in `llm_runtime.frontdoor.routing`; it is re-read every second.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from llm_runtime.api import contract
from llm_runtime.frontdoor import server, watch


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port 0..65535, got {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> server.Settings:
    parser = argparse.ArgumentParser(
        prog="llm-frontdoor", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--config", type=Path, required=True, help="routing config JSON file (a ConfigMap key)"
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (both ports)")
    parser.add_argument(
        "--port",
        type=_port,
        default=contract.RUNTIME_GRPC_PORT,
        help="gRPC port (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=contract.RUNTIME_METRICS_PORT,
        help="Prometheus /metrics port (default %(default)s)",
    )
    parser.add_argument(
        "--grace-seconds",
        type=_positive,
        default=30.0,
        help="on SIGTERM, how long in-flight calls may take to finish (default %(default)s)",
    )
    parser.add_argument(
        "--max-connection-age-seconds",
        type=float,
        default=30.0,
        help="close each client connection this long after it opened, so clients spread over "
        "new replicas; 0 never (default %(default)s)",
    )
    parser.add_argument(
        "--max-connection-age-grace-seconds",
        type=float,
        default=300.0,
        help="how long calls on an aged connection may still run (default %(default)s)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=_positive,
        default=watch.DEFAULT_POLL_SECONDS,
        help="how often the config file is re-read (default %(default)s)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return server.Settings(
        config=args.config,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        grace_seconds=args.grace_seconds,
        max_connection_age_seconds=args.max_connection_age_seconds,
        max_connection_age_grace_seconds=args.max_connection_age_grace_seconds,
        poll_seconds=args.poll_seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(server.run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
