"""A userspace Service proxy: each ClusterIP is an address on llmop0, each port a TCP listener.

Pods reach a ClusterIP through their default route (the host), the host reaches it directly;
the listener splices bytes to a ready endpoint picked round-robin at connect time. Splicing raw
TCP keeps long-lived gRPC (HTTP/2) streams intact; an existing connection stays on its backend
until either side closes, like kube-proxy's conntrack entries. No ready endpoint: the
connection is closed at once (kube-proxy rejects it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging

from localcluster import netns, services

log = logging.getLogger("localcluster.proxy")
SERVICE_NET = ipaddress.ip_network("198.19.0.0/16")
CHUNK = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def splice(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    backend: services.Backend,
) -> None:
    """Copy both directions until both are done; half-closes pass through."""
    try:
        server_r, server_w = await asyncio.wait_for(asyncio.open_connection(*backend), 5)
    except (OSError, TimeoutError):
        client_w.close()
        return
    try:
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
    finally:
        for w in (client_w, server_w):
            w.close()


class Proxy:
    """Listeners for the current proxy table; `apply` adds and removes what changed."""

    def __init__(self) -> None:
        self.table: dict[services.Listener, list[services.Backend]] = {}
        self.servers: dict[services.Listener, asyncio.Server] = {}
        self.addresses: set[str] = set()
        self._rr: dict[services.Listener, itertools.count[int]] = {}
        self._connections: set[asyncio.Task[object]] = set()

    def pick(self, listener: services.Listener) -> services.Backend | None:
        backends = self.table.get(listener) or []
        if not backends:
            return None
        counter = self._rr.setdefault(listener, itertools.count())
        return backends[next(counter) % len(backends)]

    async def _handle(
        self,
        listener: services.Listener,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        backend = self.pick(listener)
        if backend is None:
            writer.close()
            return
        # asyncio keeps only weak references to connection handlers: an idle, paused
        # connection could be garbage-collected mid-stream. Hold each one until it ends.
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await splice(reader, writer, backend)
        finally:
            self._connections.discard(task)

    async def apply(self, table: dict[services.Listener, list[services.Backend]]) -> None:
        """Make the listeners and ClusterIP addresses match the table."""
        self.table = table
        for listener in [key for key in self.servers if key not in table]:
            server = self.servers.pop(listener)
            server.close()
        wanted = {ip for ip, _ in table}
        for ip in sorted(self.addresses - wanted):
            await netns.ip("addr", "del", f"{ip}/32", "dev", netns.BRIDGE, check=False)
            self.addresses.discard(ip)
        for listener in table:
            if listener in self.servers or ipaddress.ip_address(listener[0]) not in SERVICE_NET:
                continue
            await self._listen(listener)

    async def _listen(self, listener: services.Listener) -> None:
        ip, port = listener
        if ip not in self.addresses:
            await netns.ip("addr", "replace", f"{ip}/32", "dev", netns.BRIDGE, check=False)
            self.addresses.add(ip)

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self._handle(listener, r, w)

        try:
            self.servers[listener] = await asyncio.start_server(
                handle, ip, port, reuse_address=True
            )
        except OSError as exc:
            log.warning("cannot listen on %s:%s: %s", ip, port, exc)

    async def close(self) -> None:
        """Stop listening and remove the addresses this proxy added (and only those)."""
        for server in self.servers.values():
            server.close()
        self.servers.clear()
        for ip in sorted(self.addresses):
            await netns.ip("addr", "del", f"{ip}/32", "dev", netns.BRIDGE, check=False)
        self.addresses.clear()


async def remove_service_addresses() -> None:
    """Delete every 198.19.0.0/16 address from the bridge (ours by construction)."""
    out = await netns.ip("-o", "-4", "addr", "show", "dev", netns.BRIDGE, check=False)
    for line in out.splitlines():
        fields = line.split()
        if "inet" not in fields:
            continue
        cidr = fields[fields.index("inet") + 1]
        if ipaddress.ip_interface(cidr).ip in SERVICE_NET:
            await netns.ip("addr", "del", cidr, "dev", netns.BRIDGE, check=False)
