"""The apiserver's audit policy and the reader that attributes requests to one client."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster import audit
from localcluster.audit import Key

pytestmark = pytest.mark.unit

OPERATOR = audit.service_account_user("scale-op", "llm-operator")
OTHER = audit.service_account_user("elsewhere", "default")
T0 = datetime(2026, 12, 2, 15, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 12, 2, 15, 1, 0, tzinfo=UTC)


def _line(
    audit_id: str,
    *,
    verb: str = "get",
    received: str = "2026-12-02T15:00:10.000001Z",
    staged: str | None = None,
    stage: str = "ResponseComplete",
    user: str = OPERATOR,
    ref: dict[str, Any] | None = None,
    uri: str = "/api/v1/namespaces/ns/pods",
) -> str:
    event = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": stage,
        "requestURI": uri,
        "verb": verb,
        "user": {"username": user, "groups": ["system:serviceaccounts", "system:authenticated"]},
        "requestReceivedTimestamp": received,
        "stageTimestamp": staged or received,
    }
    if ref is not None:
        event["objectRef"] = ref
    return json.dumps(event)


def test_policy_logs_pod_service_accounts_as_metadata_and_nothing_else() -> None:
    policy = yaml.safe_load(audit.policy_text())
    assert policy == audit.policy()
    assert (policy["apiVersion"], policy["kind"]) == ("audit.k8s.io/v1", "Policy")
    assert policy["omitStages"] == ["RequestReceived"]
    rules = policy["rules"]
    # First match wins: kube-system's controllers are dropped before the catch-all for pods.
    assert rules[0] == {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]}
    assert rules[1] == {"level": "Metadata", "userGroups": ["system:serviceaccounts"]}
    assert rules[-1] == {"level": "None"}
    assert {r["level"] for r in rules} <= {"None", "Metadata"}


def test_apiserver_flags_name_the_policy_and_a_bounded_json_log() -> None:
    flags = audit.apiserver_flags(policy_file=Path("/s/p.yaml"), log_file=Path("/s/a.log"))
    assert flags == [
        "--audit-policy-file=/s/p.yaml",
        "--audit-log-path=/s/a.log",
        "--audit-log-maxsize=100",
        "--audit-log-maxbackup=2",
        "--audit-log-format=json",
    ]


def test_requests_are_counted_per_user_verb_and_resource_in_the_window() -> None:
    pods = {"resource": "pods", "namespace": "ns", "apiVersion": "v1"}
    status = {"resource": "llmdeployments", "subresource": "status", "namespace": "ns"}
    lines = [
        _line("a", verb="list", ref=pods),
        _line("b", verb="list", ref=pods),
        _line("c", verb="patch", ref=status),
        _line("d", verb="list", ref=pods, user=OTHER),
        _line("early", verb="list", ref=pods, received="2026-12-02T14:59:59.999999Z"),
        _line("at-t1", verb="list", ref=pods, received="2026-12-02T15:01:00Z"),
    ]
    counts = audit.count(lines, t0=T0, t1=T1)
    assert counts == {
        Key(OPERATOR, "list", "pods"): 2,
        Key(OPERATOR, "patch", "llmdeployments/status"): 1,
        Key(OTHER, "list", "pods"): 1,
    }
    assert audit.of_users(counts, "system:serviceaccount:scale-op:") == {
        Key(OPERATOR, "list", "pods"): 2,
        Key(OPERATOR, "patch", "llmdeployments/status"): 1,
    }


def test_a_watch_is_one_request_though_it_logs_two_stages_and_is_reported_apart() -> None:
    pods = {"resource": "pods", "namespace": "ns"}
    lines = [
        _line("w", verb="watch", ref=pods, stage="ResponseStarted"),
        _line("w", verb="watch", ref=pods, staged="2026-12-02T15:05:00Z"),
        _line("g", verb="get", ref=pods),
    ]
    counts = audit.count(lines, t0=T0, t1=T1)
    assert counts == {Key(OPERATOR, "watch", "pods"): 1, Key(OPERATOR, "get", "pods"): 1}
    assert audit.split(counts) == (1, 1)


def test_non_resource_requests_count_under_their_path() -> None:
    lines = [_line("v", uri="/version?timeout=32s"), _line("h", uri="/healthz")]
    assert audit.count(lines, t0=T0, t1=T1) == {
        Key(OPERATOR, "get", "/version"): 1,
        Key(OPERATOR, "get", "/healthz"): 1,
    }


def test_open_watches_are_those_started_and_not_yet_complete() -> None:
    pods = {"resource": "pods"}
    at = datetime(2026, 12, 2, 15, 0, 30, tzinfo=UTC)
    lines = [
        # Still open: started, no end logged yet.
        _line("open", verb="watch", ref=pods, stage="ResponseStarted"),
        # Ended before `at`.
        _line("done", verb="watch", ref=pods, stage="ResponseStarted"),
        _line("done", verb="watch", ref=pods, staged="2026-12-02T15:00:20Z"),
        # Ends after `at`: open at `at`.
        _line("later", verb="watch", ref=pods, staged="2026-12-02T15:00:40Z"),
        # Starts after `at`, and another user's watch: neither counts.
        _line("future", verb="watch", ref=pods, received="2026-12-02T15:00:31Z"),
        _line("theirs", verb="watch", ref=pods, user=OTHER, stage="ResponseStarted"),
    ]
    assert audit.open_watches(lines, prefix=OPERATOR, at=at) == 2


def test_torn_and_foreign_lines_are_skipped() -> None:
    good = _line("a", ref={"resource": "pods"})
    lines = ["", good[:40], "not json", json.dumps({"kind": "Event"}), good]
    assert audit.count(lines, t0=T0, t1=T1) == {Key(OPERATOR, "get", "pods"): 1}


def test_log_files_are_the_rotated_copies_oldest_first_then_the_log(tmp_path: Path) -> None:
    log = tmp_path / "kube-apiserver-audit.log"
    assert audit.log_files(log) == []
    names = [
        "kube-apiserver-audit-2026-12-02T15-10-00.000.log",
        "kube-apiserver-audit-2026-12-02T15-00-00.000.log",
        "kube-apiserver.log",
    ]
    for name in [*names, log.name]:
        (tmp_path / name).write_text("")
    assert [p.name for p in audit.log_files(log)] == [names[1], names[0], log.name]


def test_report_gives_the_rate_without_watches_and_each_kind() -> None:
    counts = Counter(
        {
            Key(OPERATOR, "watch", "pods"): 3,
            Key(OPERATOR, "patch", "llmdeployments/status"): 4,
            Key(OPERATOR, "get", "/version"): 2,
        }
    )
    assert audit.report(counts, seconds=60) == {
        "requests": 6,
        "requests_per_second": 0.1,
        "watches_opened": 3,
        "by_kind": {"patch llmdeployments/status": 4, "watch pods": 3, "get /version": 2},
    }


def test_a_missing_log_names_the_restart_and_rotated_lines_come_first(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    with pytest.raises(audit.MissingLogError, match="restart the local cluster"):
        audit.read_lines(log)
    with pytest.raises(audit.MissingLogError, match="make cluster-down cluster-up"):
        audit.require_log(log)
    (tmp_path / "a-2026-12-02T15-00-00.000.log").write_text("old\n")
    log.write_text("new1\nnew2\n")
    assert audit.read_lines(log) == ["old", "new1", "new2"]
