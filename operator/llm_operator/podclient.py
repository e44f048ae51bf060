"""Talking to runtime pods directly (pod IPs): scraping /metrics and sending smoke prompts.

The canary analysis needs each revision's own numbers and each canary pod's own answers, which a
Service (spreading requests over both revisions) cannot give; pod IPs are reachable from the
operator pod. Both calls are bounded by timeouts and never raise: a failure is data for the
analysis (a scrape that fails leaves the pod out of the window; a smoke prompt that fails fails
the window, naming the error).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import grpc
from llm_runtime.api import client, contract
from llm_runtime.api.v1 import runtime_pb2

from llm_operator import spec
from llm_operator.rollout import analysis

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_SECONDS = 3.0
SMOKE_MAX_NEW_TOKENS = 48


def metrics_url(pod_ip: str, port: int = contract.RUNTIME_METRICS_PORT) -> str:
    return f"http://{pod_ip}:{port}/metrics"


def scrape(pod_ip: str, *, port: int = contract.RUNTIME_METRICS_PORT) -> str | None:
    """The pod's Prometheus text, or None when it does not answer in time."""
    try:
        with urllib.request.urlopen(metrics_url(pod_ip, port), timeout=SCRAPE_TIMEOUT_SECONDS) as r:
            return bytes(r.read()).decode("utf-8", errors="replace")
    except (OSError, ValueError) as e:
        log.info("scraping %s failed: %s", pod_ip, e)
        return None


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
