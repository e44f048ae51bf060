"""The Node object, its heartbeat Lease and the PersistentVolumes this node provisions.

Builders are pure (config -> dict); the loops only send them. The node lifecycle controller
judges health by the Lease in kube-node-lease (renewed every 10 s) and the Ready condition's
heartbeat (refreshed every 30 s), so both stay fresh while the node runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster import kubeapi, status

log = logging.getLogger("localcluster.registration")
Obj = dict[str, Any]
LEASE_SECONDS = 40
PROVISIONED_LABEL = "llm-operator.local/provisioned-by"


@dataclass(frozen=True)
class NodeConfig:
    """What the node advertises."""

    name: str = "local-node"
    host_ip: str = "198.18.0.1"
    cpus: int = os.cpu_count() or 1
    memory_ki: int = 0
    gpus: int = 1
    max_pods: int = 110
    kubelet_port: int = 10250
    version: str = "v1.37.0"


def memory_ki() -> int:
    """MemTotal from /proc/meminfo, in KiB."""
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 0


def resources(cfg: NodeConfig) -> dict[str, str]:
    """capacity == allocatable: nothing is reserved for system daemons here."""
    return {
        "cpu": str(cfg.cpus),
        "memory": f"{cfg.memory_ki}Ki",
        "pods": str(cfg.max_pods),
        "ephemeral-storage": "100Gi",
        "nvidia.com/gpu": str(cfg.gpus),
    }


def node_object(cfg: NodeConfig) -> Obj:
    """The Node as created (status is sent separately through the status subresource)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": cfg.name,
            "labels": {
                "kubernetes.io/hostname": cfg.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "llm-operator.local/process-node": "true",
            },
        },
        "spec": {},
    }


def node_status(cfg: NodeConfig, *, at: str, first: bool = True) -> Obj:
    """Ready, no pressure, addresses, the kubelet endpoint and what we can hold.

    Heartbeats (`first=False`) leave lastTransitionTime out: a strategic merge patch keeps the
    stored one, so it keeps meaning "when the status last changed".
    """

    def condition(kind: str, ok: bool, reason: str) -> Obj:
        entry = {
            "type": kind,
            "status": "True" if ok else "False",
            "reason": reason,
            "message": "process node",
            "lastHeartbeatTime": at,
        }
        return {**entry, "lastTransitionTime": at} if first else entry

    return {
        "capacity": resources(cfg),
        "allocatable": resources(cfg),
        "conditions": [
            condition("Ready", True, "KubeletReady"),
            condition("MemoryPressure", False, "KubeletHasSufficientMemory"),
            condition("DiskPressure", False, "KubeletHasNoDiskPressure"),
            condition("PIDPressure", False, "KubeletHasSufficientPID"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": cfg.host_ip},
            {"type": "Hostname", "address": cfg.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.kubelet_port}},
        "nodeInfo": {
            "machineID": "llm-operator-local",
            "systemUUID": "llm-operator-local",
            "bootID": "llm-operator-local",
            "kernelVersion": platform.release(),
            "osImage": "llm-operator process node",
            "containerRuntimeVersion": "process://0.1.0",
            "kubeletVersion": cfg.version,
            "kubeProxyVersion": cfg.version,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def micro_time(at: float | None = None) -> str:
    """A MicroTime, as Lease.renewTime wants."""
    at = time.time() if at is None else at
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1e6):06d}Z"


def lease_object(cfg: NodeConfig, *, node_uid: str, at: str) -> Obj:
    """The node's heartbeat Lease, owned by the Node so it goes when the Node goes."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": cfg.name,
            "namespace": "kube-node-lease",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": cfg.name, "uid": node_uid}
            ],
        },
        "spec": {
            "holderIdentity": cfg.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": at,
        },
    }


async def register(api: kubeapi.Api, cfg: NodeConfig) -> str:
    """Create the Node if needed, send its status; returns the Node's UID."""
    try:
        node = await api.create("/api/v1/nodes", node_object(cfg))
    except kubeapi.ApiError as exc:
        if exc.status != 409:
            raise
        node = await api.get(f"/api/v1/nodes/{cfg.name}")
    await send_status(api, cfg, first=True)
    return str(node["metadata"]["uid"])


async def send_status(api: kubeapi.Api, cfg: NodeConfig, *, first: bool = False) -> None:
    body = {"status": node_status(cfg, at=status.now_rfc3339(), first=first)}
    await api.patch(f"/api/v1/nodes/{cfg.name}/status", body, content_type=kubeapi.STRATEGIC_PATCH)


async def heartbeat(api: kubeapi.Api, cfg: NodeConfig, node_uid: str) -> None:
    """Renew the Lease every 10 s and the Node status every 30 s, forever; errors are logged."""
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{cfg.name}"
    beats = 0
    while True:
        lease = lease_object(cfg, node_uid=node_uid, at=micro_time())
        try:
            try:
                await api.patch(path, {"spec": lease["spec"]})
            except kubeapi.ApiError as exc:
                if exc.status != 404:
                    raise
                await api.create(path.rsplit("/", 1)[0], lease)
            if beats % 3 == 0:
                await send_status(api, cfg)
        except (TimeoutError, kubeapi.ApiError, OSError) as exc:
            log.warning("heartbeat: %s", exc)
        beats += 1
        await asyncio.sleep(10)


def pv_for_claim(pvc: Mapping[str, Any], *, folder: Path) -> Obj:
    """A hostPath PersistentVolume pre-bound to one claim (Retain; this node deletes it)."""
    meta, spec = pvc["metadata"], pvc.get("spec", {})
    size = spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{meta['uid']}", "labels": {PROVISIONED_LABEL: "process-node"}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": spec.get("storageClassName") or "",
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "hostPath": {"path": str(folder), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


async def provision_once(api: kubeapi.Api, *, data_dir: Path) -> None:
    """Give every unbound claim a hostPath PV; delete our PVs whose claim is gone."""
    claims = await api.get("/api/v1/persistentvolumeclaims")
    for pvc in claims.get("items", []):
        if pvc.get("spec", {}).get("volumeName") or pvc.get("status", {}).get("phase") != "Pending":
            continue
        meta = pvc["metadata"]
        folder = data_dir / meta["namespace"] / meta["name"]
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o777)
        try:
            await api.create("/api/v1/persistentvolumes", pv_for_claim(pvc, folder=folder))
        except kubeapi.ApiError as exc:
            if exc.status != 409:
                raise
    ours = await api.get("/api/v1/persistentvolumes", params={"labelSelector": PROVISIONED_LABEL})
    for pv in ours.get("items", []):
        if pv.get("status", {}).get("phase") == "Released":
            await api.delete(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")


async def provisioner(api: kubeapi.Api, *, data_dir: Path) -> None:
    while True:
        try:
            await provision_once(api, data_dir=data_dir)
        except (TimeoutError, kubeapi.ApiError, OSError) as exc:
            log.warning("provisioner: %s", exc)
        await asyncio.sleep(2)
