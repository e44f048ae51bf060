"""The node's one door to the apiserver: plain HTTPS with the admin kubeconfig's client certificate.

Everything is a dict, exactly as the apiserver sends it; nothing else in the node imports aiohttp.
A plain HTTP client (rather than the generated `kubernetes` models) keeps every call visible,
lets status patches pick their content type, and makes watches a simple line iterator.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
UNREACHABLE = 0  # ApiError.status when the apiserver did not answer (down, timeout, reset)


class ApiError(Exception):
    """An apiserver reply with a non-2xx status; `status` lets callers own their 404/409 policy."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Credentials:
    """Where the apiserver is and the files that prove who we are."""

    server: str
    ca_file: Path
    cert_file: Path
    key_file: Path


def _materialise(entry: Mapping[str, Any], key: str, *, into: Path) -> Path:
    """Return a file for `key` of a kubeconfig entry, writing `key-data` out when inline."""
    data = entry.get(f"{key}-data")
    if data:
        into.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=into, prefix=key + "-")
        with os.fdopen(fd, "wb") as out:
            out.write(base64.b64decode(data))
        return Path(name)
    return Path(str(entry[key]))


def load_credentials(kubeconfig: Path, *, scratch: Path) -> Credentials:
    """Read the current context of a kubeconfig (client-certificate auth only)."""
    config = yaml.safe_load(kubeconfig.read_text())
    context_name = config.get("current-context") or config["contexts"][0]["name"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    return Credentials(
        server=str(cluster["server"]).rstrip("/"),
        ca_file=_materialise(cluster, "certificate-authority", into=scratch),
        cert_file=_materialise(user, "client-certificate", into=scratch),
        key_file=_materialise(user, "client-key", into=scratch),
    )


class Api:
    """An open HTTPS session to the apiserver."""

    def __init__(self, creds: Credentials) -> None:
        self.creds = creds
        context = ssl.create_default_context(cafile=str(creds.ca_file))
        context.load_cert_chain(str(creds.cert_file), str(creds.key_file))
        connector = aiohttp.TCPConnector(ssl=context, limit=32)
        self._session = aiohttp.ClientSession(
            base_url=creds.server, connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        )

    async def close(self) -> None:
        await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        limit_s: float = 30.0,
    ) -> Obj:
        """One call; raises ApiError on any non-2xx reply, status 0 when none came at all."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        try:
            async with self._session.request(
                method,
                path,
                data=data,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=limit_s),
            ) as reply:
                text = await reply.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(UNREACHABLE, f"{method} {path}: {exc!r}") from exc
        if reply.status >= 300:
            raise ApiError(reply.status, text[:500])
        result: Obj = json.loads(text) if text else {}
        return result

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> Obj:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body=body)

    async def patch(self, path: str, body: Obj, *, content_type: str = MERGE_PATCH) -> Obj:
        return await self.request("PATCH", path, body=body, content_type=content_type)

    async def delete(self, path: str, *, body: Obj | None = None) -> Obj:
        return await self.request("DELETE", path, body=body)

    async def watch(
        self, path: str, *, params: Mapping[str, str], timeout_seconds: int = 300
    ) -> AsyncIterator[Obj]:
        """Yield watch events (`{"type": ..., "object": ...}`) until the server ends the stream."""
        query = {**params, "watch": "true", "timeoutSeconds": str(timeout_seconds)}
        timeout = aiohttp.ClientTimeout(total=timeout_seconds + 30, sock_read=timeout_seconds + 30)
        async with self._session.get(path, params=query, timeout=timeout) as reply:
            if reply.status >= 300:
                raise ApiError(reply.status, (await reply.text())[:500])
            buffer = b""
            async for chunk in reply.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield parse_event(line)


def parse_event(line: bytes) -> Obj:
    """One watch event; an ERROR event (e.g. 410 Gone) becomes ApiError so callers relist."""
    event: Obj = json.loads(line)
    if event.get("type") == "ERROR":
        status = event.get("object", {})
        raise ApiError(int(status.get("code", 500)), str(status.get("message")))
    return event


def pod_path(namespace: str, name: str = "", sub: str = "") -> str:
    """The REST path of a pod (or of all pods in a namespace) and an optional subresource."""
    path = f"/api/v1/namespaces/{namespace}/pods"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def namespaced_path(namespace: str, plural: str, name: str = "") -> str:
    """The REST path of a core/v1 namespaced object such as a secret or configmap."""
    path = f"/api/v1/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path
