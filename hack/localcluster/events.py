"""Pod Events as a kubelet records them (Pulled, Created, Started, Killing, Unhealthy, BackOff).

`kubectl describe pod` shows them; they are the first thing a user reads when a pod misbehaves.
Building the Event is pure; sending it is fire-and-forget (a lost Event must never stall a pod).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

from localcluster import kubeapi, status

Obj = dict[str, Any]


def event_object(
    pod: Mapping[str, Any],
    *,
    reason: str,
    message: str,
    warning: bool,
    container: str | None,
    node: str,
    at: str,
) -> Obj:
    """A core/v1 Event about the pod (or one of its containers), from the kubelet on `node`."""
    meta = pod["metadata"]
    involved: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
    }
    if container is not None:
        involved["fieldPath"] = f"spec.containers{{{container}}}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
            "namespace": meta["namespace"],
        },
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }


class EventSink:
    """Sends Events in the background; a failed send is dropped, never retried or raised."""

    def __init__(self, api: kubeapi.Api, *, node: str) -> None:
        self.api, self.node = api, node
        self._tasks: set[asyncio.Task[None]] = set()

    def record(
        self,
        pod: Mapping[str, Any],
        reason: str,
        message: str,
        warning: bool,
        container: str | None,
    ) -> None:
        body = event_object(
            pod,
            reason=reason,
            message=message,
            warning=warning,
            container=container,
            node=self.node,
            at=status.now_rfc3339(),
        )
        task = asyncio.create_task(self._send(pod["metadata"]["namespace"], body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, namespace: str, body: Obj) -> None:
        with contextlib.suppress(kubeapi.ApiError):
            await self.api.create(kubeapi.namespaced_path(namespace, "events"), body)
