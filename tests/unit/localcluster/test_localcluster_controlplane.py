"""The local control plane's decisions, without starting it: flags, PKI, kubeconfigs, pid files."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from localcluster import (
    controlplane,
    cp_api,
    cp_cluster,
    cp_kubeconfig,
    cp_layout,
    cp_net,
    cp_pki,
    cp_procs,
    cp_testing,
)
from localcluster.cp_layout import Layout

pytestmark = pytest.mark.unit


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    """A state folder with a complete PKI and kubeconfigs (made once: key generation is real)."""
    layout = Layout(tmp_path_factory.mktemp("cluster"))
    layout.make_dirs()
    cp_pki.ensure_pki(layout.pki, node_name="n1")
    controlplane.write_kubeconfigs(layout)
    return layout


def _cert(layout: Layout, stem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((layout.pki / f"{stem}.crt").read_bytes())


def test_apiserver_advertises_the_bridge_and_authorizes_nodes_and_rbac(layout: Layout) -> None:
    flags = _flags(controlplane.apiserver_argv(layout, Path("/bin")))
    assert flags["advertise-address"] == "198.18.0.1" == cp_net.GATEWAY_CIDR.split("/")[0]
    assert flags["authorization-mode"] == "Node,RBAC"
    assert flags["service-cluster-ip-range"] == "198.19.0.0/16"
    assert "NodeRestriction" in flags["enable-admission-plugins"]
    assert flags["etcd-servers"].startswith("http://127.0.0.1:")


def test_apiserver_writes_an_audit_log_of_pod_service_accounts(layout: Layout) -> None:
    flags = _flags(controlplane.apiserver_argv(layout, Path("/bin")))
    assert flags["audit-policy-file"] == str(layout.audit_policy)
    assert flags["audit-log-path"] == str(layout.audit_log)
    assert flags["audit-log-format"] == "json"
    assert (flags["audit-log-maxsize"], flags["audit-log-maxbackup"]) == ("100", "2")
    controlplane.write_audit_policy(layout)
    assert yaml.safe_load(layout.audit_policy.read_text())["kind"] == "Policy"


def test_controller_manager_signs_tokens_and_runs_the_default_controllers(layout: Layout) -> None:
    flags = _flags(controlplane.controller_manager_argv(layout, Path("/bin")))
    assert flags["service-account-private-key-file"].endswith("sa.key")
    assert flags["root-ca-file"].endswith("ca.crt")
    assert flags["use-service-account-credentials"] == "true"
    assert flags["controllers"] == "*"


def test_etcd_listens_on_loopback_only(layout: Layout) -> None:
    flags = _flags(controlplane.etcd_argv(layout, Path("/bin")))
    assert flags["listen-client-urls"].startswith("http://127.0.0.1:")
    assert flags["listen-peer-urls"].startswith("http://127.0.0.1:")
    assert flags["data-dir"] == str(layout.etcd_data)


def test_apiserver_certificate_names_every_way_clients_reach_it(layout: Layout) -> None:
    sans = _cert(layout, "apiserver").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    ips = {str(i) for i in sans.value.get_values_for_type(x509.IPAddress)}
    dns = set(sans.value.get_values_for_type(x509.DNSName))
    assert ips == {"127.0.0.1", "198.18.0.1", "198.19.0.1"}
    assert {"kubernetes.default.svc.cluster.local", "localhost"} <= dns
    # The ClusterIP of `kubernetes` is the first address of the service range.
    first = next(ipaddress.ip_network(cp_layout.SERVICE_CIDR).hosts())
    assert str(first) in ips


def test_client_certificates_carry_user_and_groups(layout: Layout) -> None:
    node = _cert(layout, "node")
    assert node.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    assert node.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    admin = _cert(layout, "admin")
    assert [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters"
    ]
    usage = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_pki_is_kept_across_runs(layout: Layout) -> None:
    before = (layout.pki / "ca.crt").read_bytes(), (layout.pki / "admin.key").read_bytes()
    cp_pki.ensure_pki(layout.pki, node_name="n1")
    assert ((layout.pki / "ca.crt").read_bytes(), (layout.pki / "admin.key").read_bytes()) == before
    assert (layout.pki / "ca.key").stat().st_mode & 0o077 == 0


def test_a_renamed_node_gets_a_new_certificate_and_others_are_kept(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    cp_pki.ensure_pki(pki, node_name="a")
    admin, node = (pki / "admin.crt").read_bytes(), (pki / "node.crt").read_bytes()
    cp_pki.ensure_pki(pki, node_name="b")
    assert (pki / "admin.crt").read_bytes() == admin
    assert (pki / "node.crt").read_bytes() != node
    cert = x509.load_pem_x509_certificate((pki / "node.crt").read_bytes())
    assert cert.subject == cp_pki.subject("system:node:b", ("system:nodes",))


def test_certificates_are_renewed_near_expiry_or_under_another_ca(layout: Layout) -> None:
    cert, ca = _cert(layout, "apiserver"), _cert(layout, "ca")
    name, sans = cp_pki.subject("kube-apiserver"), cp_pki.apiserver_sans()
    now = cert.not_valid_before_utc
    assert cp_pki.is_current(cert, name=name, sans=sans, issuer=ca, now=now)
    late = cert.not_valid_after_utc - datetime.timedelta(days=1)
    assert not cp_pki.is_current(cert, name=name, sans=sans, issuer=ca, now=late)
    other = x509.SubjectAlternativeName([x509.DNSName("elsewhere")])
    assert not cp_pki.is_current(cert, name=name, sans=other, issuer=ca, now=now)
    assert not cp_pki.is_current(cert, name=name, sans=sans, issuer=_cert(layout, "admin"), now=now)


def test_admin_kubeconfig_is_self_contained_and_passes_the_guard(layout: Layout) -> None:
    config = yaml.safe_load(layout.kubeconfig.read_text())
    assert config["current-context"] == cp_layout.CONTEXT
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca == (layout.pki / "ca.crt").read_bytes()
    cp_testing.guard_kubeconfig(layout.kubeconfig, layout=layout)


def test_guard_refuses_a_foreign_context(layout: Layout, tmp_path: Path) -> None:
    foreign = yaml.safe_load(layout.kubeconfig.read_text())
    foreign["contexts"][0]["name"] = foreign["current-context"] = "prod"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(foreign))
    with pytest.raises(cp_testing.ForeignClusterError):
        cp_testing.guard_kubeconfig(path, layout=layout)


def test_guard_refuses_our_context_name_on_another_ca(layout: Layout, tmp_path: Path) -> None:
    other = Layout(tmp_path / "other")
    other.make_dirs()
    cp_pki.ensure_ca(other.pki)
    with pytest.raises(cp_testing.ForeignClusterError):
        cp_testing.guard_kubeconfig(layout.kubeconfig, layout=other)


def test_merge_keeps_foreign_entries_and_makes_ours_current() -> None:
    theirs = {
        "clusters": [
            {"name": "prod", "cluster": {}},
            {"name": "llm-operator-local", "cluster": {}},
        ],
        "users": [{"name": "alice", "user": {}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "alice"}}],
        "current-context": "prod",
    }
    ours = {
        "clusters": [{"name": "llm-operator-local", "cluster": {"server": "s"}}],
        "users": [{"name": "admin", "user": {}}],
        "contexts": [{"name": "llm-operator-local", "context": {}}],
        "current-context": "llm-operator-local",
    }
    merged = cp_kubeconfig.merge(theirs, ours)
    assert [c["name"] for c in merged["clusters"]] == ["prod", "llm-operator-local"]
    assert merged["clusters"][1]["cluster"] == {"server": "s"}
    assert [u["name"] for u in merged["users"]] == ["alice", "admin"]
    assert merged["current-context"] == "llm-operator-local"


def test_install_default_merges_into_an_existing_file(layout: Layout, tmp_path: Path) -> None:
    target = tmp_path / ".kube" / "config"
    target.parent.mkdir()
    target.write_text(yaml.safe_dump({"contexts": [{"name": "prod", "context": {}}]}))
    controlplane.install_default_kubeconfig(layout, target=target)
    config = yaml.safe_load(target.read_text())
    assert {c["name"] for c in config["contexts"]} == {"prod", cp_layout.CONTEXT}
    assert target.stat().st_mode & 0o077 == 0


def test_stat_parsing_survives_odd_command_names() -> None:
    fields = " ".join(["S", *[str(i) for i in range(4, 22)], "12345", "0"])
    assert cp_procs.parse_stat(f"42 (we ird) name)) {fields}") == ("S", 12345)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7 99\n", cp_procs.Recorded(7, 99)), ("7\n", None), ("x y", None), ("", None)],
)
def test_pidfile_parsing(text: str, expected: cp_procs.Recorded | None) -> None:
    assert cp_procs.parse_pidfile(text) == expected


def test_stop_ends_a_started_process_and_ignores_a_recycled_pid(tmp_path: Path) -> None:
    pidfile, log = tmp_path / "p.pid", tmp_path / "p.log"
    rec = cp_procs.start(
        [sys.executable, "-c", "import time; time.sleep(60)"], pidfile=pidfile, log=log
    )
    assert cp_procs.running(pidfile) == rec
    assert cp_procs.stop(pidfile, timeout=5)
    assert not cp_procs.is_ours_and_alive(rec)
    assert not pidfile.exists()
    # A pid file naming a live process with another start time is not ours: nobody is signalled.
    pidfile.write_text(f"1 {rec.starttime}\n")
    assert not cp_procs.stop(pidfile)


def test_ip_json_addresses_are_read_as_cidrs() -> None:
    out: list[dict[str, object]] = [
        {"addr_info": [{"family": "inet", "local": "198.18.0.1", "prefixlen": 16}]}
    ]
    assert cp_net._cidrs(out) == ["198.18.0.1/16"]


def test_node_ready_reads_the_ready_condition() -> None:
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
    assert cp_api.node_is_ready(ready)
    assert not cp_api.node_is_ready(not_ready)
    assert not cp_api.node_is_ready({})


def test_env_lines_put_our_tools_first_and_our_kubeconfig(layout: Layout) -> None:
    line = cp_cluster.env_lines(layout, bindir=Path("/cache/bin dir"))
    assert line == f"export KUBECONFIG={layout.kubeconfig} PATH='/cache/bin dir':\"$PATH\"\n"


def test_namespace_names_are_valid_labels() -> None:
    name = cp_testing.namespace_name("test_Thing[case-1 / x]" + "y" * 80)
    assert len(name) <= 63
    assert name.startswith("t-test-thing-case-1-x-")
    assert all(c.isalnum() or c == "-" for c in name) and name == name.lower()
