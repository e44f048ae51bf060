"""Container probes: one check per kind, and a pure tracker for the thresholds.

The node runs in the host namespaces and reaches the pod on its pod IP, as a kubelet does: grpc
(grpc.health.v1 Check), httpGet and tcpSocket dial pod_ip:port; exec runs the command inside the
container's mount and network namespaces (nsenter on its PID) as the container's user.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


@dataclass(frozen=True)
class Timing:
    """A probe's schedule and thresholds, with Kubernetes defaults."""

    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    failure_threshold: int = 3
    success_threshold: int = 1

    @staticmethod
    def of(probe: Mapping[str, Any]) -> Timing:
        return Timing(
            initial_delay=float(probe.get("initialDelaySeconds", 0)),
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
            success_threshold=int(probe.get("successThreshold", 1)),
        )


@dataclass(frozen=True)
class Tracker:
    """Consecutive results and the verdict they give; `record` returns the next tracker."""

    result: bool | None = None  # None until a threshold is first crossed
    successes: int = 0
    failures: int = 0

    def record(self, ok: bool, timing: Timing) -> Tracker:
        successes = self.successes + 1 if ok else 0
        failures = 0 if ok else self.failures + 1
        result = self.result
        if successes >= timing.success_threshold:
            result = True
        elif failures >= timing.failure_threshold:
            result = False
        return Tracker(result=result, successes=successes, failures=failures)


def _port(value: Any, container: Mapping[str, Any]) -> int:
    """A probe port is a number or the name of one of the container's ports."""
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports", []):
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"container has no port named {value!r}")


async def _grpc(host: str, port: int, service: str, limit: float) -> bool:
    async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=limit)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def _http(probe: Mapping[str, Any], host: str, port: int, limit: float) -> bool:
    scheme = str(probe.get("scheme", "HTTP")).lower()
    url = f"{scheme}://{probe.get('host') or host}:{port}{probe.get('path', '/')}"
    headers = {h["name"]: h["value"] for h in probe.get("httpHeaders", [])}
    client_timeout = aiohttp.ClientTimeout(total=limit)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.get(url, headers=headers, ssl=False, allow_redirects=True) as reply,
    ):
        return 200 <= reply.status < 400


async def _tcp(host: str, port: int, limit: float) -> bool:
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), limit)
    writer.close()
    return True


def exec_argv(command: list[str], *, pid: int, uid: int | None, gid: int | None) -> list[str]:
    """nsenter into the container's mount and network namespaces, as its user."""
    argv = ["nsenter", "-t", str(pid), "-m", "-n"]
    if gid is not None or uid is not None:
        argv += ["-G", str(gid if gid is not None else uid)]
    if uid is not None:
        argv += ["-S", str(uid)]
    return [*argv, "--", *command]


async def run_exec(argv: list[str], limit: float, env: Mapping[str, str]) -> bool:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(env)
    )
    try:
        return await asyncio.wait_for(proc.wait(), limit) == 0
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False


async def check(
    probe: Mapping[str, Any],
    *,
    container: Mapping[str, Any],
    pod_ip: str,
    pid: int,
    uid: int | None,
    gid: int | None,
    env: Mapping[str, str],
) -> bool:
    """Run one probe once; any error or timeout is a failure."""
    timing = Timing.of(probe)
    try:
        if "grpc" in probe:
            port = _port(probe["grpc"]["port"], container)
            service = probe["grpc"].get("service") or ""
            return await asyncio.wait_for(
                _grpc(pod_ip, port, service, timing.timeout), timing.timeout + 1
            )
        if "httpGet" in probe:
            port = _port(probe["httpGet"]["port"], container)
            return await _http(probe["httpGet"], pod_ip, port, timing.timeout)
        if "tcpSocket" in probe:
            return await _tcp(pod_ip, _port(probe["tcpSocket"]["port"], container), timing.timeout)
        if "exec" in probe:
            argv = exec_argv(list(probe["exec"]["command"]), pid=pid, uid=uid, gid=gid)
            return await run_exec(argv, timing.timeout, env)
    except (OSError, TimeoutError, grpc.RpcError, aiohttp.ClientError, ValueError):
        return False
    return False
