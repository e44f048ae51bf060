"""The cluster DNS: the wire format it answers, and a real resolver (gRPC's c-ares `dns://`
resolver, what the front door uses) finding a Service through it on loopback."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from localcluster import dns
from loopback import free_port

pytestmark = pytest.mark.unit

RECORDS = {"chat-abc.team.svc.cluster.local": ["198.18.0.30", "198.18.0.31"]}


def query(name: str, qtype: int = dns.TYPE_A, ident: int = 7, flags: int = 0x0100) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return (
        struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )


def header(reply: bytes) -> tuple[int, int, int, int]:
    ident, flags, _qd, ancount = struct.unpack("!HHHH", reply[:8])
    return ident, flags, flags & 0xF, ancount


def test_a_query_for_a_headless_service_answers_every_ready_address() -> None:
    reply = dns.reply_to(query("Chat-ABC.team.svc.cluster.local"), RECORDS, limit=512)
    assert reply is not None
    ident, flags, rcode, count = header(reply)
    assert (ident, rcode, count) == (7, dns.NOERROR, 2)
    assert (
        flags & 0x8000 and flags & 0x0400 and flags & 0x0100
    )  # an answer, authoritative, RD echoed
    assert reply.endswith(socket.inet_aton("198.18.0.31"))
    assert socket.inet_aton("198.18.0.30") in reply


def test_unknown_names_are_nxdomain_and_other_types_of_known_names_nodata() -> None:
    missing = dns.reply_to(query("example.com"), RECORDS, limit=512)
    aaaa = dns.reply_to(query("chat-abc.team.svc.cluster.local", qtype=28), RECORDS, limit=512)
    assert missing is not None and header(missing)[2:] == (dns.NXDOMAIN, 0)
    assert aaaa is not None and header(aaaa)[2:] == (dns.NOERROR, 0)


def test_a_udp_answer_over_512_bytes_is_truncated_for_a_tcp_retry() -> None:
    many = {"big.team.svc.cluster.local": [f"198.18.1.{i}" for i in range(40)]}
    udp = dns.reply_to(query("big.team.svc.cluster.local"), many, limit=512)
    tcp = dns.reply_to(query("big.team.svc.cluster.local"), many, limit=None)
    assert udp is not None and header(udp)[1] & 0x0200 and header(udp)[3] == 0
    assert tcp is not None and header(tcp)[3] == 40


def test_broken_messages_get_formerr_and_answers_are_never_answered() -> None:
    assert dns.reply_to(b"\x00\x01", RECORDS, limit=512) is None
    two = bytearray(query("x"))
    two[5] = 2  # qdcount 2
    bad = dns.reply_to(bytes(two), RECORDS, limit=512)
    assert bad is not None and header(bad)[2] == dns.FORMERR
    assert dns.reply_to(query("x", flags=0x8000), RECORDS, limit=512) is None
    notimp = dns.reply_to(query("x", flags=0x2800), RECORDS, limit=512)  # opcode 5 (UPDATE)
    assert notimp is not None and header(notimp)[2] == dns.NOTIMP


@pytest.fixture
def dns_port() -> Iterator[tuple[int, dict[str, list[str]]]]:
    """The server on 127.0.0.1, its records editable, run on a loop in a thread."""
    loop = asyncio.new_event_loop()
    server = dns.Server()
    port = free_port()  # TCP-free; the UDP bind below fails loudly if that port is taken
    loop.run_until_complete(server.start("127.0.0.1", port))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield port, server.records
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_grpc_dns_resolver_finds_a_service_through_the_cluster_dns(
    dns_port: tuple[int, dict[str, list[str]]],
) -> None:
    port, records = dns_port
    backend = grpc.server(futures.ThreadPoolExecutor(2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), backend)
    grpc_port = backend.add_insecure_port("127.0.0.1:0")
    backend.start()
    records["chat-abc.team.svc.cluster.local"] = ["127.0.0.1"]
    target = f"dns://127.0.0.1:{port}/chat-abc.team.svc.cluster.local:{grpc_port}"
    try:
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            done = stub.Check(health_pb2.HealthCheckRequest(), timeout=10, wait_for_ready=True)
        assert done.status == health_pb2.HealthCheckResponse.SERVING
        with (
            grpc.insecure_channel(f"dns://127.0.0.1:{port}/nothere.team.svc.cluster.local:1") as ch,
            pytest.raises(grpc.RpcError) as failed,
        ):
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Domain name not found" in (failed.value.details() or ""), failed.value  # NXDOMAIN
    finally:
        backend.stop(None)
