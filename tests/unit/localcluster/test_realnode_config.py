"""The real node's configuration (pure): addresses that cannot collide, and what the kubelet is told."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest
from localcluster import netns, rn_config, rn_node
from localcluster.rn_config import RealLayout

pytestmark = pytest.mark.unit

LAYOUT = RealLayout(root=Path("/c/realnode"), cache=Path("/cache"))


def test_the_two_nodes_pod_ranges_share_the_bridge_subnet_and_never_overlap() -> None:
    subnet = ipaddress.IPv4Network(rn_config.POD_SUBNET)
    real = (
        ipaddress.IPv4Address(rn_config.RANGE_START),
        ipaddress.IPv4Address(rn_config.RANGE_END),
    )
    process = (ipaddress.IPv4Address(netns.FIRST_POD_IP), ipaddress.IPv4Address(netns.LAST_POD_IP))
    assert subnet == netns.POD_NET
    assert all(a in subnet for a in (*real, *process))
    assert process[1] < real[0], "the process node's range must end before the real node's"
    # The node's own address and the gateway are outside both pod ranges.
    for fixed in (rn_config.NODE_IP, rn_config.GATEWAY):
        addr = ipaddress.IPv4Address(fixed)
        assert not (process[0] <= addr <= process[1]) and not (real[0] <= addr <= real[1])


def test_containerd_config_is_valid_toml_with_runc_cgroupfs_our_cni_and_a_pinned_sandbox() -> None:
    parsed = tomllib.loads(rn_config.containerd_toml(LAYOUT, cni_bin=Path("/bin/node")))
    assert parsed["version"] == 3
    assert parsed["root"] == "/cache/containerd"
    assert parsed["grpc"]["address"] == "/run/llmop-containerd/containerd.sock"
    cri = parsed["plugins"]["io.containerd.cri.v1.runtime"]
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"] == {
        "BinaryName": "/usr/sbin/runc",
        "Root": "/run/llmop-containerd/runc",
        "SystemdCgroup": False,
    }
    assert cri["cni"]["bin_dirs"] == ["/bin/node"]
    assert cri["cni"]["conf_dir"] == "/c/realnode/cni/net.d"
    images = parsed["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == rn_config.SANDBOX_IMAGE


def test_cni_hands_out_the_upper_half_and_routes_through_the_host_without_masquerade() -> None:
    conf = rn_config.cni_conflist(LAYOUT)
    bridge = conf["plugins"][0]
    assert (bridge["type"], bridge["bridge"]) == ("bridge", "llmop0")
    assert bridge["isGateway"] is False and bridge["ipMasq"] is False
    (rng,) = bridge["ipam"]["ranges"][0]
    assert (rng["rangeStart"], rng["rangeEnd"]) == ("198.18.128.10", "198.18.255.254")
    assert bridge["ipam"]["routes"] == [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}]
    assert bridge["ipam"]["dataDir"] == "/c/realnode/cni/ipam"


def test_kubelet_runs_on_cgroup_v1_with_x509_and_webhook_auth_and_is_tainted() -> None:
    kc = rn_config.kubelet_config(LAYOUT, client_ca=Path("/pki/ca.crt"))
    assert kc["failCgroupV1"] is False and kc["cgroupDriver"] == "cgroupfs"
    assert kc["address"] == "198.18.0.2" and kc["readOnlyPort"] == 0
    assert kc["authentication"]["anonymous"] == {"enabled": False}
    assert kc["authentication"]["x509"] == {"clientCAFile": "/pki/ca.crt"}
    assert kc["authorization"] == {"mode": "Webhook"}
    assert kc["containerRuntimeEndpoint"] == "unix:///run/llmop-containerd/containerd.sock"
    assert kc["registerWithTaints"] == [
        {"key": rn_config.TAINT_KEY, "value": "true", "effect": "NoSchedule"}
    ]
    argv = rn_config.kubelet_argv(LAYOUT, bindir=Path("/b"))
    assert argv[0] == "/b/kubelet"
    assert "--hostname-override=real-node" in argv and "--node-ip=198.18.0.2" in argv


def test_mounts_under_our_folders_are_unmounted_deepest_first_and_others_are_left() -> None:
    points = [
        "/",
        "/c/realnode/kubelet/pods/u/volumes/x",
        "/c/realnode/kubelet",
        "/c/realnode-other",
        "/run/netns/cni-1",
        "/c/realnode/kubelet/pods/u/volumes/x/y",
    ]
    got = rn_node.under(points, [Path("/c/realnode"), Path("/run/netns/cni-1")])
    assert got == [
        "/c/realnode/kubelet/pods/u/volumes/x/y",
        "/c/realnode/kubelet/pods/u/volumes/x",
        "/c/realnode/kubelet",
        "/run/netns/cni-1",
    ]
