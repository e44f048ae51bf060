"""The OpenAI-compatible HTTP API end to end: the chart-installed operator (its own release,
watching only this module's namespace), one SmolLM2 LLMDeployment, and the clients users have.

- The official `openai` package, sync, async and streaming, through the ClusterIP Service and
  on a pod's IP, gets "Paris" for the capital of France.
- `curl -N` streams Server-Sent Events ending in `data: [DONE]`.
- Errors come in OpenAI's JSON shape with their HTTP codes (404 unknown model, 400 bad request).
- The pod's /metrics count those requests under `protocol="http"`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from bench import canary_kit as kit
from llm_runtime.api import contract
from localcluster import cp_testing
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.e2e

RELEASE = "llm-openai"
NAME = "chat"
MODEL = "smollm2"
QUESTION = "What is the capital of France?"
ASK: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "user", "content": QUESTION}],
    "max_tokens": 24,
    "temperature": 0.0,
}


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    """The module's namespace; it must exist before the operator's Role is installed into it."""
    name = cp_testing.namespace_name("openai")
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator_ns(cluster: Cluster, ns: str) -> Iterator[str]:
    op_ns = cp_testing.namespace_name("openai-op")
    kit.wait_for_no_foreign_operator(cluster, ns, RELEASE)
    done = kit.install_operator(cluster, namespace=op_ns, release=RELEASE, watch=ns)
    assert done.returncode == 0, done.stdout + done.stderr
    yield op_ns
    kit.uninstall_operator(cluster, namespace=op_ns, release=RELEASE)
    cluster.kubectl("delete", "namespace", op_ns, "--wait=false", check=False)


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@pytest.fixture(scope="module")
def pod_ip(cluster: Cluster, ns: str, operator_ns: str) -> str:
    """SmolLM2 deployed and serving; the IP of its Ready pod."""
    body = {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": NAME},
        "spec": {"model": {"name": MODEL, "source": "builtin://smollm2-135m-instruct"}},
    }
    cluster.apply(body, namespace=ns)
    selector = f"{contract.LABEL_INSTANCE}={NAME}"

    def ready_pod() -> dict[str, Any] | None:
        pods = cluster.kubectl_json("get", "pods", "-n", ns, "-l", selector)["items"]
        return next((p for p in pods if _ready(p)), None)

    pod = kit.wait_for("a Ready SmolLM2 pod", ready_pod, timeout=600, interval=2)
    return str(pod["status"]["podIP"])


@pytest.fixture(scope="module")
def service_url(cluster: Cluster, ns: str, pod_ip: str) -> str:
    """The ClusterIP Service's HTTP address, once its endpoints list the Ready pod."""
    svc = cluster.kubectl_json("get", "service", NAME, "-n", ns)
    (port,) = [p for p in svc["spec"]["ports"] if p["name"] == "http"]
    assert (port["port"], port["appProtocol"]) == (contract.RUNTIME_HTTP_PORT, "http")
    kit.wait_for(
        "the Service's endpoints",
        lambda: pod_ip in json.dumps(cluster.kubectl_json("get", "endpoints", NAME, "-n", ns)),
        timeout=60,
    )
    url = f"http://{svc['spec']['clusterIP']}:{port['port']}/v1"
    # The Endpoints object listing the pod does not mean the node's proxy has seen its
    # EndpointSlice yet (kube-proxy lags the same way): until it has, the ClusterIP closes
    # connections at once. CI once hit that window (connection reset on the first request).
    kit.wait_for("the ClusterIP to route to the pod", lambda: _answers(f"{url}/models"), timeout=60)
    return url


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _pod_url(pod_ip: str) -> str:
    return f"http://{pod_ip}:{contract.RUNTIME_HTTP_PORT}/v1"


def test_the_sync_client_gets_paris_through_the_service(service_url: str) -> None:
    with openai.OpenAI(base_url=service_url, api_key="unused", max_retries=0) as c:
        assert [m.id for m in c.models.list().data] == [MODEL]
        reply = c.chat.completions.create(**ASK)
    assert "Paris" in (reply.choices[0].message.content or ""), reply
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_the_async_client_streams_paris_through_the_service(service_url: str) -> None:
    async def stream() -> tuple[str, Any]:
        async with openai.AsyncOpenAI(base_url=service_url, api_key="x", max_retries=0) as c:
            chunks = await c.chat.completions.create(
                **ASK, stream=True, stream_options={"include_usage": True}
            )
            parts, usage = [], None
            async for chunk in chunks:
                parts += [ch.delta.content or "" for ch in chunk.choices]
                usage = chunk.usage or usage
            return "".join(parts), usage

    text, usage = asyncio.run(stream())
    assert "Paris" in text, text
    assert usage is not None and usage.completion_tokens > 0


def test_text_completions_and_errors_on_the_pod_ip(pod_ip: str) -> None:
    with openai.OpenAI(base_url=_pod_url(pod_ip), api_key="x", max_retries=0) as c:
        done = c.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=4)
        assert done.choices[0].text and done.choices[0].finish_reason in ("stop", "length")
        with pytest.raises(openai.NotFoundError) as missing:
            c.chat.completions.create(**{**ASK, "model": "gpt-4"})
        assert missing.value.status_code == 404
        with pytest.raises(openai.BadRequestError) as bad:
            c.chat.completions.create(**{**ASK, "temperature": -1})
        assert bad.value.status_code == 400
    assert isinstance(missing.value.body, dict) and missing.value.body.get("message"), missing


def test_curl_streams_server_sent_events_ending_in_done(service_url: str) -> None:
    proc = subprocess.run(
        [
            *("curl", "-sS", "-N", "--max-time", "120", f"{service_url}/chat/completions"),
            *("-H", "Content-Type: application/json", "-d", json.dumps({**ASK, "stream": True})),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    events = [line for line in proc.stdout.splitlines() if line]
    assert all(e.startswith("data: ") for e in events), events
    assert events[-1] == "data: [DONE]"
    deltas = [json.loads(e.removeprefix("data: "))["choices"] for e in events[:-1]]
    text = "".join(c[0]["delta"].get("content", "") for c in deltas if c)
    assert "Paris" in text, text


def test_the_pod_counts_http_requests_under_their_protocol(pod_ip: str) -> None:
    with openai.OpenAI(base_url=_pod_url(pod_ip), api_key="x", max_retries=0) as c:
        c.completions.create(model=MODEL, prompt="Hello", max_tokens=2)
    url = f"http://{pod_ip}:{contract.RUNTIME_METRICS_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    http_ok = [
        line
        for line in text.splitlines()
        if line.startswith(contract.METRIC_REQUESTS)
        and 'protocol="http"' in line
        and 'code="OK"' in line
        and not line.endswith(" 0.0")
    ]
    assert http_ok, "no HTTP request counted"
