"""The cluster's DNS: A records for Services and headless endpoints, on the node's address.

Pods on the real node resolve names the way a kubelet sets them up: `clusterDNS` in the
kubelet's config names this server, so a pod's resolv.conf searches `<ns>.svc.cluster.local`
and asks here. Answers come from the same Service and EndpointSlice watches as the proxy
(`services.dns_records`), so a headless Service resolves to its ready pods, the way gRPC's
`dns:///` resolver (the front door) needs. Nothing is forwarded: a name outside the cluster is
NXDOMAIN, so no pod's lookup ever leaves the machine. The process node's own pods use hosts
files (`services.hosts_text`) and never ask here.

The wire format (RFC 1035) is the small part a stub resolver uses: one question, A answers,
NODATA for other types of a known name, TC when a UDP answer would pass 512 bytes (the resolver
retries over TCP, which is served too).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

log = logging.getLogger("localcluster.dns")
PORT = 53
TTL = 5  # seconds, CoreDNS's default for cluster records: endpoints change often
UDP_LIMIT = 512
TYPE_A, TYPE_ANY, CLASS_IN = 1, 255, 1
NOERROR, FORMERR, NXDOMAIN, NOTIMP = 0, 1, 3, 4
_QR, _AA, _TC, _RD = 0x8000, 0x0400, 0x0200, 0x0100
_OPCODE = 0x7800


class FormatError(ValueError):
    """Not a DNS query this server can read."""


@dataclass(frozen=True)
class Query:
    ident: int
    flags: int
    name: str  # as asked (case kept, for the echoed question), no final dot
    qtype: int
    qclass: int
    question: bytes  # the question section's bytes, echoed in the answer


def parse_query(data: bytes) -> Query:
    """The header and the single question of a query; FormatError on anything else."""
    if len(data) < 12:
        raise FormatError("shorter than a DNS header")
    ident, flags, qdcount = struct.unpack("!HHH", data[:6])
    if flags & _QR or qdcount != 1:
        raise FormatError("not a query with one question")
    labels, pos = [], 12
    while True:
        if pos >= len(data):
            raise FormatError("name runs past the message")
        size = data[pos]
        if size == 0:
            pos += 1
            break
        if size & 0xC0:
            raise FormatError("compressed name in a question")
        labels.append(data[pos + 1 : pos + 1 + size].decode("ascii", "replace"))
        pos += 1 + size
    if pos + 4 > len(data):
        raise FormatError("question without type and class")
    qtype, qclass = struct.unpack("!HH", data[pos : pos + 4])
    return Query(ident, flags, ".".join(labels), qtype, qclass, data[12 : pos + 4])


def _header(query: Query, rcode: int, answers: int, truncated: bool = False) -> bytes:
    flags = _QR | _AA | (query.flags & (_OPCODE | _RD)) | rcode | (_TC if truncated else 0)
    return struct.pack("!HHHHHH", query.ident, flags, 1, answers, 0, 0)


def answer(query: Query, records: Mapping[str, list[str]], *, limit: int | None) -> bytes:
    """The reply to `query` from `records` (lower-case FQDN -> IPv4 addresses).

    A known name answers its A records (NODATA for other types, such as the AAAA lookups
    resolvers make too); an unknown one is NXDOMAIN. Past `limit` bytes (UDP) the answers are
    dropped and TC set. Only standard queries (opcode 0) in class IN are served."""
    if query.flags & _OPCODE:
        return _header(query, NOTIMP, 0) + query.question
    addresses = records.get(query.name.lower().rstrip("."))
    if addresses is None or query.qclass != CLASS_IN:
        return _header(query, NXDOMAIN, 0) + query.question
    ips = addresses if query.qtype in (TYPE_A, TYPE_ANY) else []
    rrs = b"".join(
        struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + ipaddress.IPv4Address(ip).packed
        for ip in ips
    )
    reply = _header(query, NOERROR, len(ips)) + query.question + rrs
    if limit is not None and len(reply) > limit:
        return _header(query, NOERROR, 0, truncated=True) + query.question
    return reply


def reply_to(data: bytes, records: Mapping[str, list[str]], *, limit: int | None) -> bytes | None:
    """The bytes to send back for one message, or None for one too broken to answer."""
    try:
        return answer(parse_query(data), records, limit=limit)
    except FormatError:
        if len(data) < 12:
            return None
        ident, flags = struct.unpack("!HH", data[:4])
        if flags & _QR:
            return None  # never answer an answer
        return struct.pack("!HHHHHH", ident, _QR | FORMERR, 0, 0, 0, 0)


class Server:
    """UDP and TCP on one address; `records` is replaced whenever Services change."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self, host: str, port: int = PORT) -> None:
        loop = asyncio.get_running_loop()
        server = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = cast(asyncio.DatagramTransport, transport)

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                reply = reply_to(data, server.records, limit=UDP_LIMIT)
                if reply is not None:
                    self.transport.sendto(reply, addr)

        transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=(host, port))
        self._udp = transport
        self._tcp = await asyncio.start_server(self._serve_tcp, host, port, reuse_address=True)
        log.info("cluster DNS on %s:%d (udp, tcp)", host, port)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
            while True:
                (size,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 30))
                reply = reply_to(await reader.readexactly(size), self.records, limit=None)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        writer.close()

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
