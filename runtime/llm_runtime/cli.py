"""`llm-runtime`: serve a model over gRPC, or prepare one (convert, fetch).

`serve` lives here; `convert` and `fetch` are registered by `llm_runtime.models.cli.register`.
Every sub-command sets `func` (argparse's `set_defaults(func=...)`), a callable taking the parsed
namespace and returning the exit status. Building the parser imports no torch, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from llm_runtime import __version__, config
from llm_runtime.models import cli as models_cli

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _serve(ns: argparse.Namespace) -> int:
    from llm_runtime import server  # grpc and, at load time, torch: only when serving

    settings = config.from_namespace(ns)
    problems = config.validate(settings)
    if problems:
        for problem in problems:
            print(f"llm-runtime serve: {problem}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(settings.log_level.upper())
    return asyncio.run(server.run(settings))


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The whole command line; `env` supplies the LLM_RUNTIME_* defaults of `serve`."""
    parser = argparse.ArgumentParser(
        prog="llm-runtime",
        description="The llm-operator inference runtime: one model, served over gRPC.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve a model over gRPC with health, reflection and Prometheus metrics",
        description=(
            "Serve one model over gRPC (llm.runtime.v1.Runtime, grpc.health.v1.Health, "
            "reflection) and Prometheus metrics on /metrics. Health is NOT_SERVING until the "
            "model is loaded and a warm-up generation succeeded. SIGTERM drains: Health "
            "NOT_SERVING, new calls UNAVAILABLE, in-flight calls finish within --grace-seconds, "
            "exit 0. Each flag also reads the environment variable shown; the flag wins."
        ),
    )
    config.add_arguments(serve, env=env)
    serve.set_defaults(func=_serve)
    models_cli.register(commands)
    # Listed here for --help; `main` hands its arguments to the front door's own parser.
    commands.add_parser(
        "frontdoor",
        help="the per-request canary split in front of an LLMDeployment (no model loaded)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["frontdoor"]:  # one image runs both; the front door never imports torch
        from llm_runtime.frontdoor import main as frontdoor

        return frontdoor.main(args[1:])
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT, stream=sys.stderr)
    try:
        parser = build_parser(os.environ)
    except ValueError as exc:  # a malformed LLM_RUNTIME_* variable
        print(f"llm-runtime: {exc}", file=sys.stderr)
        return 2
    ns = parser.parse_args(argv)
    status: int | None = ns.func(ns)
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
