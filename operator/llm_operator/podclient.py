"""Talking to runtime pods directly (pod IPs): scraping /metrics and sending smoke prompts.

The canary analysis needs each revision's own numbers and each canary pod's own answers, which a
Service (spreading requests over both revisions) cannot give; pod IPs are reachable from the
operator pod. Both calls are bounded by timeouts and never raise: a failure is data for the
analysis (a scrape that fails leaves the pod out of the window; a smoke prompt that fails fails
the window, naming the error).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from llm_runtime.api import client, contract
from llm_runtime.api.v1 import runtime_pb2

from llm_operator import spec
from llm_operator.rollout import analysis

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_SECONDS = 3.0  # one scrape, connect to last byte (not per socket read)
SCRAPE_MAX_BYTES = 4 << 20  # a runtime's /metrics is a few KiB; more is a broken or hostile pod
SMOKE_MAX_NEW_TOKENS = 48
_HEADER_MAX_BYTES = 64 << 10
_READ_CHUNK = 64 << 10


class ScrapeFailure(enum.StrEnum):
    """Why a pod's scrape gave no metrics: the reasons its window result names."""

    TIMEOUT = "ScrapeTimeout"  # no complete reply within the scrape's deadline
    TOO_LARGE = "ScrapeTooLarge"  # the body passed SCRAPE_MAX_BYTES: reading stopped there
    HTTP = "ScrapeHTTPError"  # a reply that is not a plain 200
    CONNECTION = "ScrapeConnectionFailed"  # refused, reset, unreachable
    BUDGET = "ScrapeBudgetExceeded"  # the tick's budget ran out before this pod was scraped


@dataclasses.dataclass(frozen=True)
class Scraped:
    """One pod's /metrics body, or why there is none (`failure` and a human-readable `error`)."""

    text: str | None
    failure: ScrapeFailure | None = None
    error: str = ""


def metrics_url(pod_ip: str, port: int = contract.RUNTIME_METRICS_PORT) -> str:
    return f"http://{pod_ip}:{port}/metrics"


class _ScrapeError(Exception):
    def __init__(self, failure: ScrapeFailure, error: str) -> None:
        super().__init__(error)
        self.failure = failure


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _ScrapeError(ScrapeFailure.TIMEOUT, "no complete reply before the scrape deadline")
    return left


def _read_reply(sock: socket.socket, *, deadline: float, max_bytes: int) -> bytes:
    """Everything the server sends until it closes, checking the deadline before every read
    (one recv returns what has arrived, so a trickling server cannot stretch it) and stopping
    once the reply is bigger than a body of `max_bytes` plus its headers may be."""
    cap = max_bytes + _HEADER_MAX_BYTES
    data = bytearray()
    while True:
        sock.settimeout(_remaining(deadline))
        try:
            chunk = sock.recv(_READ_CHUNK)
        except TimeoutError:
            _remaining(deadline)  # raises: the deadline has passed
            continue
        if not chunk:
            return bytes(data)
        data += chunk
        head_end = data.find(b"\r\n\r\n")
        body = len(data) - (head_end + 4) if head_end >= 0 else 0
        if body > max_bytes or len(data) > cap:
            raise _ScrapeError(ScrapeFailure.TOO_LARGE, f"reply exceeds {max_bytes} bytes; stopped")


def _body(reply: bytes) -> bytes:
    """The body of a plain HTTP/1.x 200 reply (no chunking: the request is HTTP/1.0)."""
    head, sep, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if not sep or len(status) < 2 or not status[0].startswith("HTTP/") or status[1] != "200":
        raise _ScrapeError(ScrapeFailure.HTTP, f"reply {lines[0][:80]!r}")
    headers = {
        k.strip().lower(): v.strip().lower() for k, _, v in (x.partition(":") for x in lines[1:])
    }
    if (
        headers.get("transfer-encoding", "identity") != "identity"
        or headers.get("content-encoding", "identity") != "identity"
    ):
        raise _ScrapeError(ScrapeFailure.HTTP, "an encoded reply to a plain HTTP/1.0 request")
    return body


def scrape(
    pod_ip: str,
    *,
    port: int = contract.RUNTIME_METRICS_PORT,
    timeout: float = SCRAPE_TIMEOUT_SECONDS,
    max_bytes: int = SCRAPE_MAX_BYTES,
) -> Scraped:
    """The pod's Prometheus text, bounded in time (connect to last byte) and in bytes.

    A plain socket and HTTP/1.0 rather than urllib: urllib's timeout applies to each socket read,
    so a pod sending a byte a second holds the caller forever, and `read()` has no size bound.
    Never raises: a failure is data for the window.
    """
    deadline = time.monotonic() + timeout
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip  # an IPv6 pod IP goes in brackets
    request = f"GET /metrics HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: text/plain\r\n\r\n"
    try:
        with socket.create_connection((pod_ip, port), timeout=_remaining(deadline)) as sock:
            sock.sendall(request.encode("ascii"))
            body = _body(_read_reply(sock, deadline=deadline, max_bytes=max_bytes))
    except _ScrapeError as e:
        log.info("scraping %s failed: %s: %s", pod_ip, e.failure, e)
        return Scraped(None, e.failure, str(e))
    except TimeoutError:
        return Scraped(None, ScrapeFailure.TIMEOUT, f"no connection in {timeout:g}s")
    except (OSError, UnicodeError) as e:
        log.info("scraping %s failed: %s", pod_ip, e)
        return Scraped(None, ScrapeFailure.CONNECTION, str(e))
    if len(body) > max_bytes:
        return Scraped(None, ScrapeFailure.TOO_LARGE, f"body exceeds {max_bytes} bytes")
    return Scraped(body.decode("utf-8", errors="replace"))


@dataclasses.dataclass(frozen=True)
class Access:
    """How to reach the runtime's gRPC port: TLS roots and server name, bearer token."""

    port: int
    ca_pem: bytes | None = None
    server_name: str | None = None
    token: str | None = None
    error: str | None = None  # why the pods cannot be called (e.g. a Secret that cannot be read)


def smoke_request(prompt: spec.SmokePrompt) -> runtime_pb2.GenerateRequest:
    """Greedy (temperature 0) so a pass or a failure is reproducible; few tokens, so the
    smoke test costs the pod little."""
    return client.build_request(
        messages=[("user", prompt.prompt)],
        max_new_tokens=SMOKE_MAX_NEW_TOKENS,
        temperature=0.0,
        request_id="llm-operator-smoke",
    )


def _connection(pod_ip: str, access: Access, ca_dir: Path) -> client.Connection:
    ca_file = None
    if access.ca_pem is not None:
        ca_file = ca_dir / "ca.pem"
        ca_file.write_bytes(access.ca_pem)
    return client.Connection(
        target=f"{pod_ip}:{access.port}",
        token=access.token,
        ca_file=ca_file,
        server_name=access.server_name,
    )


def smoke(
    *, pod: str, pod_ip: str, prompts: Sequence[spec.SmokePrompt], access: Access
) -> list[analysis.SmokeReply]:
    """Every prompt once to one pod; a gRPC error or timeout becomes a reply with `error`."""
    if access.error is not None:
        return [analysis.SmokeReply(pod, i, None, 0.0, access.error) for i in range(len(prompts))]
    replies = []
    with tempfile.TemporaryDirectory(prefix="llmop-smoke-") as tmp:
        conn = _connection(pod_ip, access, Path(tmp))
        with client.RuntimeClient(conn) as c:
            for i, prompt in enumerate(prompts):
                start = time.monotonic()
                try:
                    done = c.generate(smoke_request(prompt), deadline=prompt.timeout_seconds)
                    text, error = done.text, None
                except grpc.RpcError as e:
                    text, error = None, f"{e.code().name}: {e.details()}"
                replies.append(
                    analysis.SmokeReply(
                        pod=pod,
                        index=i,
                        text=text,
                        latency_seconds=time.monotonic() - start,
                        error=error,
                    )
                )
    return replies
