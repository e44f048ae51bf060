"""Talking to runtime pods directly (pod IPs): scraping /metrics and sending smoke prompts (over
gRPC, or HTTP to the OpenAI-compatible port, as each prompt says).

The canary analysis needs each revision's own numbers and each canary pod's own answers, which a
Service (spreading requests over both revisions) cannot give; pod IPs are reachable from the
operator pod. Both calls are bounded by timeouts and never raise: a failure is data for the
analysis (a scrape that fails leaves the pod out of the window; a smoke prompt that fails fails
the window, naming the error).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import logging
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from llm_runtime.api import client, contract
from llm_runtime.api.v1 import runtime_pb2

from llm_operator import spec
from llm_operator.rollout import analysis

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_SECONDS = 3.0  # one scrape, connect to last byte (not per socket read)
SCRAPE_MAX_BYTES = 4 << 20  # a runtime's /metrics is a few KiB; more is a broken or hostile pod
SMOKE_MAX_NEW_TOKENS = 48
SMOKE_MAX_BYTES = 1 << 20  # an HTTP smoke reply (48 tokens of JSON) is well under 1 KiB
SMOKE_REQUEST_ID = "llm-operator-smoke"  # both protocols: pod logs tell smoke from client requests
CHAT_PATH = "/v1/chat/completions"  # the runtime's OpenAI-compatible chat endpoint
_ERROR_MAX_CHARS = 200  # of an HTTP error's message, in the status and Events
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
        raise _ScrapeError(ScrapeFailure.TIMEOUT, "no complete reply before the deadline")
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


def split_reply(reply: bytes) -> tuple[int, bytes]:
    """The status code and body of a plain HTTP/1.x reply (no chunking: the request is
    HTTP/1.0); a reply that is not one raises _ScrapeError(HTTP)."""
    head, sep, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if not sep or len(status) < 2 or not status[0].startswith("HTTP/") or not status[1].isdigit():
        raise _ScrapeError(ScrapeFailure.HTTP, f"reply {lines[0][:80]!r}")
    headers = {
        k.strip().lower(): v.strip().lower() for k, _, v in (x.partition(":") for x in lines[1:])
    }
    if (
        headers.get("transfer-encoding", "identity") != "identity"
        or headers.get("content-encoding", "identity") != "identity"
    ):
        raise _ScrapeError(ScrapeFailure.HTTP, "an encoded reply to a plain HTTP/1.0 request")
    return int(status[1]), body


def http_request(
    *, method: str, host: str, port: int, path: str, headers: Mapping[str, str], body: bytes = b""
) -> bytes:
    """One HTTP/1.0 request (the server closes after its reply, which ends the read)."""
    where = f"[{host}]" if ":" in host else host  # an IPv6 pod IP goes in brackets
    length = {"Content-Length": str(len(body))} if body else {}
    fields = [
        f"{k}: {v}" for k, v in ({"Host": f"{where}:{port}"} | dict(headers) | length).items()
    ]
    return "\r\n".join([f"{method} {path} HTTP/1.0", *fields, "", ""]).encode("latin-1") + body


def _open(
    pod_ip: str, port: int, *, deadline: float, tls: ssl.SSLContext | None, server_name: str | None
) -> socket.socket:
    sock = socket.create_connection((pod_ip, port), timeout=_remaining(deadline))
    if tls is None:
        return sock
    try:
        return tls.wrap_socket(sock, server_hostname=server_name or pod_ip)
    except BaseException:
        sock.close()
        raise


def _call(
    pod_ip: str,
    port: int,
    request: bytes,
    *,
    timeout: float,
    max_bytes: int,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> tuple[int, bytes] | _ScrapeError:
    """One request's reply (status, body), bounded in time (connect to last byte) and in bytes,
    or why there is none: never raises.

    A plain socket and HTTP/1.0 rather than urllib: urllib's timeout applies to each socket read,
    so a pod sending a byte a second holds the caller forever, and `read()` has no size bound.
    """
    deadline = time.monotonic() + timeout
    try:
        with _open(pod_ip, port, deadline=deadline, tls=tls, server_name=server_name) as sock:
            sock.sendall(request)
            return split_reply(_read_reply(sock, deadline=deadline, max_bytes=max_bytes))
    except _ScrapeError as e:
        return e
    except TimeoutError:
        return _ScrapeError(ScrapeFailure.TIMEOUT, f"no connection in {timeout:g}s")
    except (OSError, UnicodeError) as e:
        return _ScrapeError(ScrapeFailure.CONNECTION, f"connection failed: {e}")


def scrape(
    pod_ip: str,
    *,
    port: int = contract.RUNTIME_METRICS_PORT,
    timeout: float = SCRAPE_TIMEOUT_SECONDS,
    max_bytes: int = SCRAPE_MAX_BYTES,
) -> Scraped:
    """The pod's Prometheus text, bounded in time (connect to last byte) and in bytes (`_call`).
    Never raises: a failure is data for the window."""
    request = http_request(
        method="GET", host=pod_ip, port=port, path="/metrics", headers={"Accept": "text/plain"}
    )
    got = _call(pod_ip, port, request, timeout=timeout, max_bytes=max_bytes)
    if isinstance(got, _ScrapeError):
        log.info("scraping %s failed: %s: %s", pod_ip, got.failure, got)
        return Scraped(None, got.failure, str(got))
    status, body = got
    if status != 200:
        return Scraped(None, ScrapeFailure.HTTP, f"reply status {status}")
    if len(body) > max_bytes:
        return Scraped(None, ScrapeFailure.TOO_LARGE, f"body exceeds {max_bytes} bytes")
    return Scraped(body.decode("utf-8", errors="replace"))


@dataclasses.dataclass(frozen=True)
class Access:
    """How to reach the runtime's gRPC and HTTP ports: TLS roots and server name, bearer token
    (both ports use the same), and the served model's name (an HTTP request must name it)."""

    port: int
    ca_pem: bytes | None = None
    server_name: str | None = None
    token: str | None = None
    error: str | None = None  # why the pods cannot be called (e.g. a Secret that cannot be read)
    http_port: int = contract.RUNTIME_HTTP_PORT
    model: str = ""


# What one prompt got: the reply's text, or the error that stands for it.
Answer = tuple[str | None, str | None]


def smoke_request(prompt: spec.SmokePrompt) -> runtime_pb2.GenerateRequest:
    """Greedy (temperature 0) so a pass or a failure is reproducible; few tokens, so the
    smoke test costs the pod little."""
    return client.build_request(
        messages=[("user", prompt.prompt)],
        max_new_tokens=SMOKE_MAX_NEW_TOKENS,
        temperature=0.0,
        request_id=SMOKE_REQUEST_ID,
    )


def chat_body(prompt: spec.SmokePrompt, *, model: str) -> dict[str, Any]:
    """`smoke_request` as an OpenAI chat completion: greedy, few tokens, not streamed."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt.prompt}],
        "temperature": 0.0,
        "max_tokens": SMOKE_MAX_NEW_TOKENS,
        "stream": False,
    }


def chat_request(prompt: spec.SmokePrompt, *, pod_ip: str, access: Access) -> bytes:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        contract.HEADER_REQUEST_ID: SMOKE_REQUEST_ID,
    }
    if access.token is not None:
        headers["Authorization"] = f"Bearer {access.token}"
    body = json.dumps(chat_body(prompt, model=access.model)).encode()
    return http_request(
        method="POST",
        host=pod_ip,
        port=access.http_port,
        path=CHAT_PATH,
        headers=headers,
        body=body,
    )


def _dig(doc: object, *path: str | int) -> object:
    """doc[path[0]][path[1]]..., or None where the JSON has another shape."""
    for key in path:
        if isinstance(key, int):
            doc = doc[key] if isinstance(doc, list) and len(doc) > key else None
        else:
            doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def _shorten(text: str, limit: int = _ERROR_MAX_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def chat_answer(status: int, body: bytes) -> Answer:
    """A chat completion's text, or its error: the HTTP status and the OpenAI error's message
    (the body itself, shortened, when it has none)."""
    try:
        doc: object = json.loads(body)
    except ValueError:  # not JSON (UnicodeDecodeError is one)
        doc = None
    raw = body.decode("utf-8", errors="replace")
    if status != 200:
        message = _dig(doc, "error", "message")
        return None, f"HTTP {status}: {_shorten(message if isinstance(message, str) else raw)}"
    text = _dig(doc, "choices", 0, "message", "content")
    if not isinstance(text, str):
        return None, f"HTTP 200 without choices[0].message.content: {_shorten(raw)}"
    return text, None


def _tls(access: Access) -> ssl.SSLContext | None:
    if access.ca_pem is None:
        return None
    return ssl.create_default_context(cadata=access.ca_pem.decode("ascii"))


def _ask_http(pod_ip: str, access: Access, prompt: spec.SmokePrompt) -> Answer:
    try:
        request = chat_request(prompt, pod_ip=pod_ip, access=access)
    except UnicodeError as e:  # a token that is not latin-1 cannot be a header
        return None, f"cannot build the request: {e}"
    got = _call(
        pod_ip,
        access.http_port,
        request,
        timeout=prompt.timeout_seconds,
        max_bytes=SMOKE_MAX_BYTES,
        tls=_tls(access),
        server_name=access.server_name,
    )
    return (None, str(got)) if isinstance(got, _ScrapeError) else chat_answer(*got)


def _ask_grpc(c: client.RuntimeClient, prompt: spec.SmokePrompt) -> Answer:
    try:
        return c.generate(smoke_request(prompt), deadline=prompt.timeout_seconds).text, None
    except grpc.RpcError as e:
        return None, f"{e.code().name}: {e.details()}"


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


def _timed(
    ask: Callable[[spec.SmokePrompt], Answer], *, pod: str, index: int, prompt: spec.SmokePrompt
) -> analysis.SmokeReply:
    start = time.monotonic()
    text, error = ask(prompt)
    return analysis.SmokeReply(
        pod=pod, index=index, text=text, latency_seconds=time.monotonic() - start, error=error
    )


def smoke(
    *, pod: str, pod_ip: str, prompts: Sequence[spec.SmokePrompt], access: Access
) -> list[analysis.SmokeReply]:
    """Every prompt once to one pod, each over its protocol; an error or timeout (a gRPC status,
    an HTTP status, a refused connection) becomes a reply with `error`."""
    if access.error is not None:
        return [analysis.SmokeReply(pod, i, None, 0.0, access.error) for i in range(len(prompts))]
    with (
        tempfile.TemporaryDirectory(prefix="llmop-smoke-") as tmp,
        client.RuntimeClient(_connection(pod_ip, access, Path(tmp))) as c,
    ):
        ask: dict[spec.SmokeProtocol, Callable[[spec.SmokePrompt], Answer]] = {
            spec.SmokeProtocol.GRPC: functools.partial(_ask_grpc, c),
            spec.SmokeProtocol.HTTP: functools.partial(_ask_http, pod_ip, access),
        }
        return [_timed(ask[p.protocol], pod=pod, index=i, prompt=p) for i, p in enumerate(prompts)]
