"""The only door to the API server (the only module that imports `kubernetes`).

Everything goes through `_request`, which owns the error policy: 404 on a read is "absent"
(None), everything else >= 400 raises ApiError carrying the status and the server's message.
Writes are server-side apply under one field manager, forced: the operator owns the fields it
sets, and a manual edit of those fields is drift that the next apply undoes. Forcing is safe
only on objects the operator controls: callers check ownership first (`converge.apply_owned`), so
an object of the same name that someone else made is never taken over.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import kubernetes

from llm_operator import FIELD_MANAGER, GROUP, KIND, PLURAL, VERSION, metrics

# (apiVersion, kind) -> (plural, namespaced) for the kinds the operator touches.
KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Service"): ("services", True),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "Event"): ("events", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("kopf.dev/v1", "ClusterKopfPeering"): ("clusterkopfpeerings", False),
    ("kopf.dev/v1", "KopfPeering"): ("kopfpeerings", True),
    (f"{GROUP}/{VERSION}", KIND): (PLURAL, True),
}


class ApiError(Exception):
    """A refused API call: the HTTP status, the Status reason and the server's message."""

    def __init__(self, *, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retriable(self) -> bool:
        """Conflicts, throttling and server trouble pass; invalid objects and RBAC denials do not."""
        return self.status in (409, 429) or self.status >= 500


def load_config() -> None:
    """In-cluster config from the pod's ServiceAccount token when in a pod, else kubeconfig."""
    config: Any = kubernetes.config  # untyped package
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()


@functools.cache
def _client() -> Any:
    return kubernetes.client.ApiClient()


def path_for(
    *, api_version: str, kind: str, namespace: str | None = None, name: str | None = None
) -> str:
    """The REST path of a collection (name None) or of one object."""
    plural, namespaced = KINDS[(api_version, kind)]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespaced:
        base += f"/namespaces/{namespace}"
    path = f"{base}/{plural}"
    return f"{path}/{name}" if name else path


def resource_of(path: str) -> str:
    """Pure: the resource a REST path names (`pods`, `llmdeployments/status`), for metrics."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if "namespaces" in parts and parts.index("namespaces") + 2 < len(parts):
        parts = parts[parts.index("namespaces") + 2 :]
    else:
        parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    return "/".join([parts[0], *parts[2:3]]) if parts else ""


def _error(resp: Any) -> ApiError:
    try:
        body = json.loads(resp.data or b"{}")
    except ValueError:
        body = {"message": (resp.data or b"").decode(errors="replace")}
    return ApiError(
        status=int(resp.status),
        reason=str(body.get("reason") or ""),
        message=str(body.get("message") or ""),
    )


def _request(
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] = (),
    body: Mapping[str, Any] | None = None,
    content_type: str = "application/json",
) -> dict[str, Any] | None:
    """One call; returns the decoded body, None for a 404 GET, raises ApiError otherwise."""
    client = _client()
    headers = {"Accept": "application/json", "Content-Type": content_type}
    serialized = client.param_serialize(
        method=method,
        resource_path=path,
        query_params=list(query),
        header_params=headers,
        body=dict(body) if body is not None else None,
        auth_settings=["BearerToken"],
    )
    try:
        resp = client.call_api(*serialized, _request_timeout=30)
    except kubernetes.client.ApiException as e:
        metrics.API_REQUESTS.labels(method, resource_of(path), str(e.status or 0)).inc()
        raise ApiError(status=int(e.status or 0), reason=str(e.reason), message=str(e.body)) from e
    resp.read()
    metrics.API_REQUESTS.labels(method, resource_of(path), str(resp.status)).inc()
    if method == "GET" and resp.status == 404:
        return None
    if resp.status >= 400:
        raise _error(resp)
    return dict(json.loads(resp.data)) if resp.data else {}


def apply(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Server-side apply of one object under the operator's field manager (forced)."""
    meta = obj["metadata"]
    path = path_for(
        api_version=obj["apiVersion"],
        kind=obj["kind"],
        namespace=meta.get("namespace"),
        name=meta["name"],
    )
    query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
    result = _request(
        "PATCH", path, query=query, body=obj, content_type="application/apply-patch+yaml"
    )
    return result or {}


def scale(*, api_version: str, kind: str, namespace: str, name: str, replicas: int) -> None:
    """Sets spec.replicas only (a merge patch): resizes a revision's Deployment that the current
    spec can no longer rebuild (the stable while a canary runs, an old one draining)."""
    path = path_for(api_version=api_version, kind=kind, namespace=namespace, name=name)
    body = {"spec": {"replicas": replicas}}
    query = [("fieldManager", FIELD_MANAGER)]
    _request("PATCH", path, query=query, body=body, content_type="application/merge-patch+json")


def patch_status(*, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch of an LLMDeployment's status subresource (None deletes a key). The
    rollout tick writes its decision here before it changes any Deployment, so a crash between
    the two loses nothing. Returns the stored object (its new resourceVersion)."""
    path = path_for(api_version=f"{GROUP}/{VERSION}", kind=KIND, namespace=namespace, name=name)
    body = {"status": dict(patch)}
    result = _request(
        "PATCH", f"{path}/status", body=body, content_type="application/merge-patch+json"
    )
    return result or {}


def delete(*, api_version: str, kind: str, namespace: str, name: str) -> None:
    """Deletes one object (a retired revision's Deployment); already gone is fine. Background
    propagation: its ReplicaSets follow through the garbage collector."""
    path = path_for(api_version=api_version, kind=kind, namespace=namespace, name=name)
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
    try:
        _request("DELETE", path, body=body)
    except ApiError as e:
        if e.status != 404:
            raise


def get(*, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    """One object, or None when it does not exist."""
    path = path_for(api_version=api_version, kind=kind, namespace=namespace, name=name)
    return _request("GET", path)


def current(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stored object of `obj`'s kind, namespace and name (None when absent): read before an
    apply so that an object someone else made is not taken over by the forced apply."""
    meta = obj["metadata"]
    return get(
        api_version=obj["apiVersion"],
        kind=obj["kind"],
        namespace=meta.get("namespace"),
        name=meta["name"],
    )


def list_objects(
    *, api_version: str, kind: str, namespace: str, selector: str = "", fields: str = ""
) -> list[dict[str, Any]]:
    """Objects of a kind in a namespace matching a label selector and a field selector."""
    path = path_for(api_version=api_version, kind=kind, namespace=namespace)
    query = [(k, v) for k, v in (("labelSelector", selector), ("fieldSelector", fields)) if v]
    result = _request("GET", path, query=query) or {}
    return [dict(x) for x in result.get("items") or []]


def ensure_peering(*, name: str, namespace: str | None) -> None:
    """Creates the kopf peering object if absent (cluster-wide unless a namespace is given)."""
    kind = "KopfPeering" if namespace else "ClusterKopfPeering"
    obj: dict[str, Any] = {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": {"name": name}}
    if namespace:
        obj["metadata"]["namespace"] = namespace
    if get(api_version="kopf.dev/v1", kind=kind, namespace=namespace, name=name) is not None:
        return
    try:
        _request(
            "POST", path_for(api_version="kopf.dev/v1", kind=kind, namespace=namespace), body=obj
        )
    except ApiError as e:
        if e.status != 409:  # another replica created it first
            raise
