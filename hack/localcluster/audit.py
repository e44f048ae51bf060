"""The local apiserver's audit log: which in-cluster client sent which requests, and when.

An operator can count the requests its own code makes, but not those of the libraries under it
(kopf's LISTs and watches, its peering heartbeats, the Events it posts). The API server sees them
all, so a benchmark that holds an operator to "at most one request a second" reads its audit log.

The policy logs pods' ServiceAccounts only (group `system:serviceaccounts`), at `Metadata`
level: who, which verb, which object, when - no bodies. kube-system's ServiceAccounts are left
out: with `--use-service-account-credentials` every controller of the controller-manager is one,
and their steady traffic would fill the log without being anyone's benchmark. `RequestReceived`
is omitted, so a request is one line (`ResponseComplete`); a watch also logs `ResponseStarted`
when it opens, so requests are counted once per `auditID`. Non-resource requests (`/version`,
`/apis` discovery, `/healthz`) are kept: they are requests too. Their resource is the URL path.

Everything here is pure except `log_files` and `read_lines`, which read the log's folder, and
the command line, which prints one namespace's accounts' requests of the last seconds:

    PYTHONPATH=hack .venv/bin/python -m localcluster.audit --namespace NS --seconds 60
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from localcluster import cp_layout

SERVICE_ACCOUNTS = "system:serviceaccounts"
KUBE_SYSTEM_SERVICE_ACCOUNTS = "system:serviceaccounts:kube-system"
# kube-apiserver rotates at this size (MB) and keeps this many old files (lumberjack).
MAX_SIZE_MB = 100
MAX_BACKUPS = 2
WATCH = "watch"


def policy() -> dict[str, Any]:
    """The audit policy as a dict; the first rule that matches a request decides its level."""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "None", "userGroups": [KUBE_SYSTEM_SERVICE_ACCOUNTS]},
            {"level": "Metadata", "userGroups": [SERVICE_ACCOUNTS]},
            {"level": "None"},
        ],
    }


def policy_text() -> str:
    """The policy file's text (YAML, dumped once from `policy()`)."""
    return yaml.safe_dump(policy(), sort_keys=False)


def apiserver_flags(*, policy_file: Path, log_file: Path) -> list[str]:
    """kube-apiserver's audit flags: the policy, one JSON line per event, a bounded log."""
    return [
        f"--audit-policy-file={policy_file}",
        f"--audit-log-path={log_file}",
        f"--audit-log-maxsize={MAX_SIZE_MB}",
        f"--audit-log-maxbackup={MAX_BACKUPS}",
        "--audit-log-format=json",
    ]


@dataclass(frozen=True)
class Key:
    """What a request is counted under."""

    user: str
    verb: str
    resource: str


@dataclass(frozen=True)
class Event:
    """One audit line, reduced to what the counts need."""

    audit_id: str
    stage: str
    key: Key
    received: datetime
    staged: datetime


def parse_time(text: str) -> datetime:
    """An audit timestamp ("2026-12-02T15:01:27.123456Z") as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def resource(event: dict[str, Any]) -> str:
    """`pods`, `pods/status`, or for a non-resource request its path (`/version`)."""
    ref = event.get("objectRef") or {}
    if ref.get("resource"):
        sub = ref.get("subresource")
        return f"{ref['resource']}/{sub}" if sub else str(ref["resource"])
    return str(event.get("requestURI", "")).split("?", 1)[0]


def parse_line(line: str) -> Event | None:
    """One line of the log, or None for a blank, torn (mid-write) or non-event line."""
    try:
        raw = json.loads(line)
        key = Key(str(raw["user"]["username"]), str(raw["verb"]), resource(raw))
        return Event(
            audit_id=str(raw["auditID"]),
            stage=str(raw["stage"]),
            key=key,
            received=parse_time(raw["requestReceivedTimestamp"]),
            staged=parse_time(raw["stageTimestamp"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def events(lines: Iterable[str]) -> list[Event]:
    return [e for e in map(parse_line, lines) if e is not None]


def count(lines: Iterable[str], *, t0: datetime, t1: datetime) -> Counter[Key]:
    """Requests received in [t0, t1) per (user, verb, resource), each auditID once.

    Watches are counted too, under verb "watch": a watch opened in the window is a request, and
    `split` reports them apart from the rest.
    """
    seen: set[str] = set()
    counts: Counter[Key] = Counter()
    for e in events(lines):
        if e.audit_id in seen or not t0 <= e.received < t1:
            continue
        seen.add(e.audit_id)
        counts[e.key] += 1
    return counts


def of_users(counts: Counter[Key], prefix: str) -> Counter[Key]:
    """The counts of users whose name starts with `prefix` (e.g. one namespace's accounts)."""
    return Counter({k: n for k, n in counts.items() if k.user.startswith(prefix)})


def split(counts: Counter[Key]) -> tuple[int, int]:
    """(requests other than watches, watches opened)."""
    watches = sum(n for k, n in counts.items() if k.verb == WATCH)
    return sum(counts.values()) - watches, watches


def open_watches(lines: Iterable[str], *, prefix: str, at: datetime) -> int:
    """Watches of users starting with `prefix` open at `at`: received by then, not yet ended.

    A watch logs `ResponseComplete` when it ends, so one without that line (or ending later) is
    still open.
    """
    opened: set[str] = set()
    ended: set[str] = set()
    for e in events(lines):
        if e.key.verb != WATCH or not e.key.user.startswith(prefix) or e.received > at:
            continue
        opened.add(e.audit_id)
        if e.stage == "ResponseComplete" and e.staged <= at:
            ended.add(e.audit_id)
    return len(opened - ended)


def report(counts: Counter[Key], *, seconds: float) -> dict[str, Any]:
    """What a benchmark prints and stores: the rate without watches, watches, each kind."""
    others, watches = split(counts)
    kinds: Counter[str] = Counter()
    for k, n in counts.items():
        kinds[f"{k.verb} {k.resource}"] += n
    return {
        "requests": others,
        "requests_per_second": round(others / seconds, 3) if seconds > 0 else None,
        "watches_opened": watches,
        "by_kind": dict(kinds.most_common()),
    }


def namespace_report(
    lines: Iterable[str], *, namespace: str, t0: datetime, t1: datetime
) -> dict[str, Any]:
    """`report` of one namespace's ServiceAccounts' requests received in [t0, t1)."""
    prefix = service_account_user(namespace, "")
    counts = of_users(count(lines, t0=t0, t1=t1), prefix)
    return report(counts, seconds=(t1 - t0).total_seconds())


def default_log() -> Path:
    """The local cluster's audit log (in the default state folder)."""
    return cp_layout.Layout(cp_layout.default_state_dir()).audit_log


def service_account_user(namespace: str, name: str) -> str:
    """The user name a pod's ServiceAccount token authenticates as."""
    return f"system:serviceaccount:{namespace}:{name}"


def log_files(log: Path) -> list[Path]:
    """The log and its rotated copies (`<stem>-<time><suffix>` beside it), oldest first."""
    rotated = sorted(log.parent.glob(f"{log.stem}-*{log.suffix}"))
    return [*rotated, log] if log.exists() else rotated


class MissingLogError(Exception):
    """No audit log: the apiserver was started before it had the audit flags."""


def require_log(log: Path) -> list[Path]:
    """`log_files(log)`, or MissingLogError naming the fix: a benchmark checks before it starts."""
    files = log_files(log)
    if not files:
        raise MissingLogError(
            f"no audit log at {log}: the apiserver runs without the audit flags; restart the "
            "local cluster (make cluster-down cluster-up) to turn them on"
        )
    return files


def read_lines(log: Path) -> list[str]:
    """Every line of the log and its rotated copies, oldest first; fails naming the fix."""
    files = require_log(log)
    return [line for f in files for line in f.read_text(errors="replace").splitlines()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.audit", description=__doc__)
    parser.add_argument("--namespace", required=True, help="the ServiceAccounts' namespace")
    parser.add_argument("--seconds", type=float, default=60.0, help="the window, ending now")
    args = parser.parse_args(argv)
    t1 = datetime.now(UTC)
    try:
        lines = read_lines(default_log())
    except MissingLogError as e:
        raise SystemExit(str(e)) from None
    t0 = t1 - timedelta(seconds=args.seconds)
    result = namespace_report(lines, namespace=args.namespace, t0=t0, t1=t1)
    prefix = service_account_user(args.namespace, "")
    result["watches_open"] = open_watches(lines, prefix=prefix, at=t1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
