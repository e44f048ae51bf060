"""The control plane's few apiserver calls: readiness, existence checks, node readiness, apply.

Standard library HTTPS with the admin client certificate: `up` must stay fast, and importing the
`kubernetes` client alone costs about a second. Every call has a short timeout and a refused
connection reads as "not yet", which is what the callers poll for.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any

from localcluster import cp_layout
from localcluster.cp_layout import Layout

Obj = dict[str, Any]


@dataclass(frozen=True)
class Reply:
    status: int
    body: Obj


class Client:
    """A tiny admin client for the loopback apiserver."""

    def __init__(self, *, host: str, port: int, context: ssl.SSLContext) -> None:
        self._host, self._port, self._context = host, port, context

    @classmethod
    def from_layout(cls, layout: Layout, *, cert_stem: str = "admin") -> Client:
        context = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
        context.load_cert_chain(
            str(layout.pki / f"{cert_stem}.crt"), str(layout.pki / f"{cert_stem}.key")
        )
        return cls(host="127.0.0.1", port=cp_layout.APISERVER_PORT, context=context)

    def call(
        self, method: str, path: str, body: Obj | None = None, *, timeout: float = 5.0
    ) -> Reply:
        """One request; status 0 means the apiserver could not be reached at all."""
        conn = http.client.HTTPSConnection(
            self._host, self._port, context=self._context, timeout=timeout
        )
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"Accept": "application/json", "Content-Type": "application/json"}
            conn.request(method, path, body=payload, headers=headers)
            reply = conn.getresponse()
            text = reply.read().decode()
            return Reply(reply.status, _json_or_text(text))
        except (OSError, http.client.HTTPException):
            return Reply(0, {})
        finally:
            conn.close()

    def ready(self) -> bool:
        """The apiserver's /readyz says every check passed."""
        return self.call("GET", "/readyz").status == 200

    def exists(self, path: str) -> bool:
        return self.call("GET", path).status == 200

    def get(self, path: str) -> Obj | None:
        reply = self.call("GET", path)
        return reply.body if reply.status == 200 else None

    def apply(self, *, collection: str, obj: Obj) -> None:
        """Create `obj` in `collection`, or replace it when it exists (idempotent)."""
        created = self.call("POST", collection, obj)
        if created.status in (200, 201):
            return
        if created.status == 409:
            path = f"{collection}/{obj['metadata']['name']}"
            current = self.get(path) or {}
            version = current.get("metadata", {}).get("resourceVersion")
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": version}}
            replaced = self.call("PUT", path, obj)
            if replaced.status == 200:
                return
            created = replaced
        raise RuntimeError(f"apply {collection}: HTTP {created.status}: {created.body}")


def _json_or_text(text: str) -> Obj:
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return {"text": text}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def node_is_ready(node: Obj) -> bool:
    """Pure: a Node object's Ready condition is True."""
    conditions = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def ready_nodes(client: Client) -> list[str]:
    """Names of the nodes whose Ready condition is True."""
    nodes = client.get("/api/v1/nodes") or {}
    return [n["metadata"]["name"] for n in nodes.get("items", []) if node_is_ready(n)]


def node_proxier_binding(node_name: str) -> Obj:
    """Pure: let the node agent's service proxy watch Services and EndpointSlices.

    The Node authorizer covers what a kubelet does; the proxy half of our node agent needs what
    kube-proxy gets from the bootstrap `system:node-proxier` role.
    """
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "llmop:node-proxier"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:node-proxier",
        },
        "subjects": [
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "User",
                "name": f"system:node:{node_name}",
            }
        ],
    }


def apply_node_rbac(client: Client, *, node_name: str) -> None:
    client.apply(
        collection="/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        obj=node_proxier_binding(node_name),
    )
