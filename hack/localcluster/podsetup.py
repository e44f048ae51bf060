"""What a pod needs from the apiserver before its first container starts.

Secrets and ConfigMaps it refers to, service-account tokens (TokenRequest bound to the pod), and
the host folders of its PersistentVolumeClaims. Each call raises ConfigError when the pod must
wait (a missing object, an unbound claim), so the worker retries the way a kubelet does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localcluster import containerspec, kubeapi, mounts

Obj = dict[str, Any]


async def fetch_objects(
    api: kubeapi.Api, pod: Mapping[str, Any]
) -> dict[containerspec.ObjectKey, dict[str, str] | None]:
    """Data of every referenced Secret/ConfigMap; None for those that do not exist (yet)."""
    namespace = pod["metadata"]["namespace"]
    found: dict[containerspec.ObjectKey, dict[str, str] | None] = {}
    for kind, name in sorted(containerspec.referenced_objects(pod)):
        plural = "secrets" if kind == "secret" else "configmaps"
        try:
            obj = await api.get(kubeapi.namespaced_path(namespace, plural, name))
        except kubeapi.ApiError as exc:
            if exc.status != 404:
                raise
            found[(kind, name)] = None
            continue
        if kind == "secret":
            found[(kind, name)] = containerspec.secret_data(obj)
        else:
            found[(kind, name)] = {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
    return found


def token_request_body(pod: Mapping[str, Any], *, audience: str, expiration: int) -> Obj:
    """A TokenRequest bound to the pod, so the token dies with it."""
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [audience] if audience else [],
            "expirationSeconds": expiration,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            },
        },
    }


async def request_tokens(api: kubeapi.Api, pod: Mapping[str, Any]) -> dict[mounts.TokenKey, str]:
    """One token per (audience, expiration) projection of the pod."""
    namespace = pod["metadata"]["namespace"]
    account = pod["spec"].get("serviceAccountName") or "default"
    path = kubeapi.namespaced_path(namespace, "serviceaccounts", account) + "/token"
    tokens = {}
    for audience, expiration in sorted(mounts.token_requests(pod)):
        body = token_request_body(pod, audience=audience, expiration=expiration)
        try:
            reply = await api.create(path, body)
        except kubeapi.ApiError as exc:
            raise containerspec.ConfigError(f"token request for {account!r}: {exc}") from exc
        tokens[(audience, expiration)] = str(reply["status"]["token"])
    return tokens


async def pvc_paths(api: kubeapi.Api, pod: Mapping[str, Any]) -> dict[str, str]:
    """claimName -> host folder of the bound PersistentVolume (hostPath or local)."""
    namespace = pod["metadata"]["namespace"]
    paths = {}
    for volume in pod["spec"].get("volumes", []):
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        if not claim:
            continue
        try:
            pvc = await api.get(kubeapi.namespaced_path(namespace, "persistentvolumeclaims", claim))
        except kubeapi.ApiError as exc:
            raise containerspec.ConfigError(f"persistentvolumeclaim {claim!r}: {exc}") from exc
        volume_name = pvc.get("spec", {}).get("volumeName")
        if not volume_name:
            raise containerspec.ConfigError(f"persistentvolumeclaim {claim!r} is not bound")
        pv = await api.get(f"/api/v1/persistentvolumes/{volume_name}")
        source = pv["spec"].get("hostPath") or pv["spec"].get("local")
        if not source:
            raise containerspec.ConfigError(f"volume {volume_name!r} is neither hostPath nor local")
        paths[claim] = str(source["path"])
    return paths


async def prepare_volumes(
    api: kubeapi.Api,
    pod: Mapping[str, Any],
    *,
    pod_dir: Path,
    objects: Mapping[containerspec.ObjectKey, Any],
    pod_ip: str,
    host_ip: str,
) -> dict[str, str]:
    """Materialise every volume of the pod; returns volume name -> host folder."""
    tokens = await request_tokens(api, pod)
    claims = await pvc_paths(api, pod)
    sources: dict[str, str] = {}
    for volume in pod["spec"].get("volumes", []):
        source = mounts.folder_source(volume, pod_dir=pod_dir, pvc_paths=claims)
        files = mounts.volume_files(
            volume, pod=pod, objects=objects, tokens=tokens, pod_ip=pod_ip, host_ip=host_ip
        )
        if files is not None:
            await asyncio.to_thread(mounts.write_files, Path(source), files)
        else:
            await asyncio.to_thread(mounts.prepare_folder, volume, source)
        sources[volume["name"]] = source
    return sources


# How often ConfigMap and Secret volumes are brought up to date (a kubelet takes up to its sync
# period plus its cache TTL, about a minute; the local cluster is quicker, not slower).
OBJECT_REFRESH_SECONDS = 2.0


def token_refresh_interval(pod: Mapping[str, Any]) -> float | None:
    """How often to re-materialise the pod's volumes: projected tokens at 80% of the shortest
    lifetime, ConfigMap and Secret volumes every OBJECT_REFRESH_SECONDS (None: never)."""
    lifetimes = [expiration for _, expiration in mounts.token_requests(pod)]
    intervals = [0.8 * min(lifetimes)] if lifetimes else []
    volumes = pod.get("spec", {}).get("volumes") or []
    if any("configMap" in v or "secret" in v for v in volumes):
        intervals.append(OBJECT_REFRESH_SECONDS)
    return min(intervals) if intervals else None
