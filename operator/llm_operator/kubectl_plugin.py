"""`kubectl llmd`: promote, abort or retry a rollout, and show where it stands.

Installed as the `kubectl-llmd` console script, so kubectl finds it on PATH. It only writes the
documented annotations (`rollout.llm-operator.io/<command>=<token>`); the operator acts on them.
Talks to the cluster through kubectl itself, so it uses the user's context and credentials.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from llm_operator.rollout import clock
from llm_operator.rollout.state import ANNOTATION_PREFIX, CommandKind

RESOURCE = "llmdeployments.llm-operator.io"


def annotate_args(*, kind: CommandKind, name: str, namespace: str | None, token: str) -> list[str]:
    """The kubectl command that files one command; a fresh token makes it a new request."""
    args = ["kubectl", "annotate", RESOURCE, name, f"{ANNOTATION_PREFIX}{kind.value}={token}"]
    args.append("--overwrite")
    return args + (["--namespace", namespace] if namespace else [])


def describe(body: Mapping[str, Any]) -> str:
    """A few lines about the rollout of one LLMDeployment, from its status."""
    status = body.get("status") or {}
    rollout = status.get("rollout") or {}
    lines = [
        f"phase:    {rollout.get('phase', '-')}",
        f"stable:   {rollout.get('stableRevision') or '-'}",
        f"canary:   {rollout.get('canaryRevision') or '-'}"
        + (
            f" (step {rollout.get('step', 0) + 1}, {rollout.get('message')})"
            if rollout.get("canaryRevision")
            else ""
        ),
        f"verdict:  {rollout.get('lastVerdict') or '-'} {rollout.get('lastMessage') or ''}".rstrip(),
        f"failures: {rollout.get('failures', 0)}",
    ]
    rollback = status.get("rollback")
    if rollback:
        lines.append(
            f"rollback: {rollback.get('from')} -> {rollback.get('to')} at {rollback.get('at')}: "
            f"{rollback.get('reason')}: {rollback.get('message')}"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl llmd", description=__doc__)
    parser.add_argument("command", choices=[*(k.value for k in CommandKind), "status"])
    parser.add_argument("name")
    parser.add_argument("-n", "--namespace")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "status":
        get = ["kubectl", "get", RESOURCE, args.name, "-o", "json"]
        get += ["--namespace", args.namespace] if args.namespace else []
        out = subprocess.run(get, check=True, capture_output=True, text=True).stdout
        print(describe(json.loads(out)))
        return 0
    token = clock.format_time(datetime.now(UTC)) or ""
    kind = CommandKind(args.command)
    cmd = annotate_args(kind=kind, name=args.name, namespace=args.namespace, token=token)
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
