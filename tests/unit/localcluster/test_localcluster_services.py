"""The process node's pure Service views (proxy table, hosts files, env) and log helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from localcluster import logs, procs, services

pytestmark = pytest.mark.unit


def svc(name: str, ns: str, cluster_ip: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": cluster_ip, "ports": ports},
    }


def slice_(
    svc_name: str, ns: str, endpoints: list[tuple[str, bool | None]], ports: list[dict[str, Any]]
) -> dict[str, Any]:
    eps = [
        {"addresses": [ip], "conditions": {} if ready is None else {"ready": ready}}
        for ip, ready in endpoints
    ]
    return {"metadata": {"name": f"{svc_name}-x", "namespace": ns, "labels": {services.SERVICE_LABEL: svc_name}},
            "endpoints": eps, "ports": ports}  # fmt: skip


WEB = svc("web", "team", "198.19.0.20", [{"name": "http", "port": 80, "protocol": "TCP"}])
WEB_SLICE = slice_("web", "team", [("198.18.0.10", True), ("198.18.0.11", False), ("198.18.0.12", None)],
                   [{"name": "http", "port": 8000}])  # fmt: skip
DB = svc("db", "team", "None", [{"port": 5432}])
DB_SLICE = slice_("db", "team", [("198.18.0.30", True), ("198.18.0.31", True)], [{"port": 5432}])


def test_proxy_forwards_only_to_ready_endpoints_on_the_target_port() -> None:
    table = services.proxy_table([WEB, DB], [WEB_SLICE, DB_SLICE])
    assert table == {("198.19.0.20", 80): [("198.18.0.10", 8000), ("198.18.0.12", 8000)]}


def test_a_service_without_ready_endpoints_still_gets_a_listener() -> None:
    assert services.proxy_table([WEB], []) == {("198.19.0.20", 80): []}


def test_hosts_file_names_services_and_headless_pods() -> None:
    text = services.hosts_text(namespace="team", pod_name="p", pod_ip="198.18.0.50",
                               services=[WEB, DB], slices=[WEB_SLICE, DB_SLICE])  # fmt: skip
    lines = text.splitlines()
    assert "198.18.0.50\tp" in lines
    assert "198.19.0.20\tweb.team.svc.cluster.local web.team.svc web.team web" in lines
    assert "198.18.0.30\tdb.team.svc.cluster.local db.team.svc db.team db" in lines
    assert "198.18.0.31\tdb.team.svc.cluster.local db.team.svc db.team db" in lines


def test_short_service_names_only_resolve_in_the_same_namespace() -> None:
    text = services.hosts_text(
        namespace="other", pod_name="p", pod_ip="198.18.0.50", services=[WEB], slices=[]
    )
    assert "198.19.0.20\tweb.team.svc.cluster.local web.team.svc web.team" in text.splitlines()


def test_service_env_has_the_api_server_and_same_namespace_services() -> None:
    api = svc(
        "kubernetes", "default", "198.19.0.1", [{"name": "https", "port": 443, "protocol": "TCP"}]
    )
    env = services.service_env(
        "team", [api, WEB, svc("x", "elsewhere", "198.19.0.9", [{"port": 1}])]
    )
    assert (
        env["KUBERNETES_SERVICE_HOST"] == "198.19.0.1" and env["KUBERNETES_SERVICE_PORT"] == "443"
    )
    assert env["WEB_SERVICE_HOST"] == "198.19.0.20" and env["WEB_SERVICE_PORT_HTTP"] == "80"
    assert env["WEB_PORT_80_TCP_ADDR"] == "198.19.0.20"
    assert "X_SERVICE_HOST" not in env


def test_log_requests_parse_path_and_query() -> None:
    head = b"GET /containerLogs/team/web-0/app?tailLines=2&follow=true HTTP/1.1\r\nHost: x\r\n\r\n"
    assert logs.parse_request(head) == (
        ["containerLogs", "team", "web-0", "app"],
        {"tailLines": "2", "follow": "true"},
    )


def test_tail_lines_then_limit_bytes() -> None:
    assert logs.tail(b"a\nb\nc\n", 2, None) == b"b\nc\n"
    assert logs.tail(b"a\nb\nc\n", None, 3) == b"a\nb"
    assert logs.tail(b"a\nb\n", 0, None) == b""


def test_latest_and_previous_logs_follow_the_restart_count(tmp_path: Path) -> None:
    folder = tmp_path / "logs" / "app"
    folder.mkdir(parents=True)
    for run in (0, 1, 10):
        (folder / f"{run}.log").write_text(f"run {run}\n")
    assert logs.latest_log(tmp_path, "app", previous=False) == folder / "10.log"
    assert logs.latest_log(tmp_path, "app", previous=True) == folder / "1.log"
    assert logs.latest_log(tmp_path, "other", previous=False) is None


def test_closed_folders_on_the_way_to_the_interpreter_are_exposed_child_by_child() -> None:
    closed = {"/root"}
    found = procs.blocked_folders(
        [
            "/root/.pyenv/versions/3.11/bin/python3.11",
            "/root/.local/x",
            "/srv/checkout/.venv/bin/python",
        ],
        is_open=lambda folder: folder not in closed,
    )
    assert found == [("/root", [".local", ".pyenv"])]
    assert procs.exit_code(-9) == 137 and procs.exit_code(3) == 3


def test_stateful_pods_behind_a_headless_service_get_their_own_names() -> None:
    db_slice = slice_("db", "team", [("198.18.0.30", True)], [{"port": 5432}])
    db_slice["endpoints"][0]["hostname"] = "db-0"
    text = services.hosts_text(
        namespace="team", pod_name="p", pod_ip="198.18.0.50", services=[DB], slices=[db_slice]
    )
    assert "198.18.0.30\tdb-0.db.team.svc.cluster.local db-0.db" in text.splitlines()


def test_a_container_counts_as_started_once_past_the_launcher() -> None:
    launcher = str(procs.LAUNCHER).encode()
    assert not procs.past_launcher(
        b"ip\0netns\0exec\0llmop-1\0/py\0-I\0" + launcher + b"\0spec.json\0"
    )
    assert not procs.past_launcher(b"/py\0-I\0" + launcher + b"\0spec.json\0")
    assert procs.past_launcher(b"/usr/bin/sleep\0600\0")
    assert procs.past_launcher(None)
    assert not procs.past_launcher(b"")  # mid-execve: new memory, no arguments yet


def test_only_a_gone_or_zombie_process_counts_as_exited() -> None:
    assert procs.exited(None)
    assert procs.exited("4242 (python3) Z 1 4242 4242 0 -1")
    assert not procs.exited("4242 (ip netns (x)) R 1 4242 4242 0 -1")
    assert not procs.exited("4242 (python3) S 1 4242 4242 0 -1")


def test_slices_are_found_by_namespace_and_service_name_and_unlabelled_ones_ignored() -> None:
    other_ns = slice_("web", "other", [("198.18.0.40", True)], [{"name": "http", "port": 8000}])
    unlabelled = {"metadata": {"name": "stray", "namespace": "team"}, "endpoints": []}
    index = services.by_service([WEB_SLICE, DB_SLICE, other_ns, unlabelled])
    assert index == {
        ("team", "web"): [WEB_SLICE],
        ("team", "db"): [DB_SLICE],
        ("other", "web"): [other_ns],
    }
    # The same Service name in another namespace never lends its endpoints.
    assert services.proxy_table([WEB], [other_ns]) == {("198.19.0.20", 80): []}


def test_dns_records_are_cluster_ips_ready_headless_endpoints_and_hostnames() -> None:
    named = {**DB_SLICE, "endpoints": [*DB_SLICE["endpoints"], {"addresses": ["198.18.0.32"], "hostname": "db-0"},
                                       {"addresses": ["198.18.0.33"], "hostname": "db-1", "conditions": {"ready": False}}]}  # fmt: skip
    records = services.dns_records([WEB, DB, svc("Odd", "team", "", [])], [WEB_SLICE, named])
    assert records == {
        "web.team.svc.cluster.local": ["198.19.0.20"],
        "db.team.svc.cluster.local": ["198.18.0.30", "198.18.0.31", "198.18.0.32"],
        "db-0.db.team.svc.cluster.local": ["198.18.0.32"],
    }
