"""The real node's configuration, as pure functions: containerd, CNI and the kubelet.

The real node is a second Node, `real-node`, run by the real kubelet (built from k8s.io/kubernetes
at the control plane's version) on containerd with runc, beside the process node. Its pods are
real containers with real cgroups, so memory limits kill (`OOMKilled`), and `kubectl exec` and
`port-forward` work. It is tainted, so only pods that ask for it (a toleration and a nodeSelector)
land there and the process node's tests keep their node.

Addresses: it shares the bridge `llmop0` with the process node. The kubelet listens on
198.18.0.2:10250 (the process node has 198.18.0.1:10250); its pods get 198.18.128.0/17 from CNI's
host-local IPAM (the process node hands out the lower half), with 198.18.0.1 as their gateway, so
the Services the process node's proxy serves on the host work for them too.

Where things live: everything that belongs to one cluster's lifetime is under `<cluster>/realnode/`
and `/run/llmop-containerd` and is removed by `down`. containerd's content store and image
snapshots stay in the tool cache (`$LLMOP_CACHE/containerd`), like a real node's image cache, so
a second `up` does not import the multi-gigabyte runtime image again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_NAME = "real-node"
NODE_IP = "198.18.0.2"
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
BRIDGE = "llmop0"
GATEWAY = "198.18.0.1"
POD_SUBNET = "198.18.0.0/16"
RANGE_START = "198.18.128.10"
RANGE_END = "198.18.255.254"
CNI_NETWORK = "llmop-real"
# The taint keeps every pod that does not ask for this node off it.
TAINT_KEY = "llm-operator.dev/real-node"
TAINT = {"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}
# The same taint as `kubectl taint` writes it.
TAINT_ARG = f"{TAINT['key']}={TAINT['value']}:{TAINT['effect']}"
# cgroup v1 parent of all pods: one folder per controller, removed by `down`.
CGROUP_ROOT = "/llmop"
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"
K8S_NAMESPACE = "k8s.io"
RUNC = "/usr/sbin/runc"  # Debian's package


@dataclass(frozen=True)
class RealLayout:
    """The real node's paths: `root` is `<cluster>/realnode`, `cache` holds containerd's images."""

    root: Path
    cache: Path
    state: Path = Path("/run/llmop-containerd")

    @property
    def containerd_root(self) -> Path:
        return self.cache / "containerd"

    @property
    def socket(self) -> Path:
        return self.state / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        """host-local's allocations (one file per pod IP)."""
        return self.root / "cni" / "ipam"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def containerd_toml(layout: RealLayout, *, cni_bin: Path) -> str:
    """containerd 2.x config (version 3): CRI with runc, cgroupfs, our CNI and a local sandbox.

    The sandbox image is pinned, so the kubelet's image garbage collector never deletes it (it
    cannot be pulled back: no registry is reachable). No registry mirror is configured: every
    image comes from `ctr images import`, and a pod naming any other image fails as ErrImagePull.
    """
    runtime = 'plugins."io.containerd.cri.v1.runtime"'
    return "\n".join(
        [
            "version = 3",
            f'root = "{layout.containerd_root}"',
            f'state = "{layout.state}"',
            "",
            "[grpc]",
            f'  address = "{layout.socket}"',
            "",
            '[plugins."io.containerd.nri.v1.nri"]',
            "  disable = true",
            "",
            '[plugins."io.containerd.cri.v1.images"]',
            '  snapshotter = "overlayfs"',
            '[plugins."io.containerd.cri.v1.images".pinned_images]',
            f'  sandbox = "{SANDBOX_IMAGE}"',
            "",
            # No process here may lower its oom_score_adj (no CAP_SYS_RESOURCE), and the CRI
            # asks -998 for every sandbox; this clamps it to containerd's own (runc otherwise
            # fails: "can't get final child's PID from pipe: EOF").
            f"[{runtime}]",
            "  enable_selinux = false",
            "  restrict_oom_score_adj = true",
            # Pod network namespaces under our state folder, so `down` finds every one.
            "  netns_mounts_under_state_dir = true",
            f"[{runtime}.containerd]",
            '  default_runtime_name = "runc"',
            f"[{runtime}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{runtime}.containerd.runtimes.runc.options]",
            f'  BinaryName = "{RUNC}"',
            f'  Root = "{layout.state / "runc"}"',
            "  SystemdCgroup = false",
            f"[{runtime}.cni]",
            f'  bin_dirs = ["{cni_bin}"]',
            f'  conf_dir = "{layout.cni_conf_dir}"',
            "  max_conf_num = 1",
            "",
        ]
    )


def cni_conflist(layout: RealLayout) -> dict[str, Any]:
    """bridge + host-local on llmop0, the upper half of the pod /16, the host as gateway.

    `isGateway` stays off: the bridge already holds the gateway address (the control plane put
    it there), and the bridge plugin would otherwise try to give it one from the range.
    No masquerading: pod traffic never leaves the machine.
    """
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.cni_ipam_dir),
                    "ranges": [
                        [
                            {
                                "subnet": POD_SUBNET,
                                "rangeStart": RANGE_START,
                                "rangeEnd": RANGE_END,
                                "gateway": GATEWAY,
                            }
                        ]
                    ],
                    "routes": [{"dst": "0.0.0.0/0", "gw": GATEWAY}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(layout: RealLayout, *, client_ca: Path) -> dict[str, Any]:
    """The KubeletConfiguration: cgroup v1 allowed, cgroupfs, x509 + webhook auth, no swap check.

    - `failCgroupV1: false`: this machine mounts cgroup v1 controllers; 1.37 still runs there
      when asked (KEP-5573).
    - Eviction thresholds are low: the node shares the machine's disk with the tool cache and
      must not evict the test's pods for a disk it does not own.
    - Image GC is left at its defaults but the sandbox image is pinned in containerd.
    """
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "failCgroupV1": False,
        "failSwapOn": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": CGROUP_ROOT,
        "containerRuntimeEndpoint": f"unix://{layout.socket}",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "registerWithTaints": [dict(TAINT)],
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        "serializeImagePulls": False,
        # Names resolve in the cluster only: the process node's DNS (dns.py) on the gateway
        # answers Services and headless endpoints, and no host resolver is passed to pods
        # (dnsPolicy Default gets none), so no pod's lookup leaves the machine.
        "resolvConf": "",
        "clusterDNS": [GATEWAY],
        "clusterDomain": "cluster.local",
        "protectKernelDefaults": False,
        # The kubelet may not lower its own oom_score_adj here (no CAP_SYS_RESOURCE).
        "oomScoreAdj": 0,
        "localStorageCapacityIsolation": True,
        "logging": {"format": "text"},
    }


def kubelet_argv(layout: RealLayout, *, bindir: Path) -> list[str]:
    """The kubelet's command line: everything else is in its config file."""
    return [
        str(bindir / "kubelet"),
        f"--config={layout.kubelet_config}",
        f"--kubeconfig={layout.kubeconfig}",
        f"--root-dir={layout.kubelet_dir}",
        f"--cert-dir={layout.kubelet_dir / 'pki'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={NODE_IP}",
        "--node-labels=llm-operator.dev/node-kind=real",
        "--v=1",
    ]


def containerd_argv(layout: RealLayout, *, bindir: Path) -> list[str]:
    return [str(bindir / "containerd"), f"--config={layout.containerd_config}"]


def to_json(value: Any) -> str:
    """Pure: JSON for config files (the kubelet reads JSON as YAML)."""
    return json.dumps(value, indent=2, sort_keys=True) + "\n"
