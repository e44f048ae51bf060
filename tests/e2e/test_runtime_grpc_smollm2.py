"""The acceptance check of the runtime: `llm-runtime serve` with the packaged SmolLM2, driven by
grpcurl (as a person would) and by the Python client; no cluster needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from llm_runtime.api import client, contract

pytestmark = pytest.mark.e2e

QUESTION = "What is the capital of France?"
_LISTENING = re.compile(r"listening: grpc [\d.]+:(\d+) \(\w+\), metrics :(\d+)/metrics")


def _grpcurl() -> str:
    """grpcurl as `make setup` builds it into the tool cache."""
    cache = Path(os.environ.get("LLMOP_CACHE", Path.home() / ".cache" / "llm-operator"))
    found = sorted(cache.glob("bin/*/grpcurl"))
    assert found, f"grpcurl not built under {cache}/bin: run `make setup`"
    return str(found[-1])


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """(grpc port, metrics port) of a runtime serving the default model; SIGTERM at the end."""
    log = tmp_path_factory.mktemp("smollm2") / "serve.log"
    cmd = [sys.executable, "-m", "llm_runtime", "serve", "--host", "127.0.0.1"]
    env = {**os.environ, contract.env("grpc_port"): "0", contract.env("metrics_port"): "0"}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        ports = _ports(proc, log)
        with client.RuntimeClient(client.Connection(f"127.0.0.1:{ports[0]}")) as c:
            _wait_serving(c, proc, log)
        yield ports
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ports(proc: subprocess.Popen[bytes], log: Path) -> tuple[int, int]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = _LISTENING.search(log.read_text(errors="replace"))
        if match:
            return int(match.group(1)), int(match.group(2))
        assert proc.poll() is None, log.read_text()[-4000:]
        time.sleep(0.1)
    pytest.fail("the runtime did not open its ports")


def _wait_serving(c: client.RuntimeClient, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 600  # the GGUF is dequantised on load: slow on a busy CPU
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-4000:]
        try:
            if c.health(deadline=5) == "SERVING":
                return
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        time.sleep(0.5)
    pytest.fail("SmolLM2 never became SERVING")


def _run_grpcurl(*args: str) -> str:
    result = subprocess.run(
        [_grpcurl(), "-plaintext", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_grpcurl_lists_the_services_through_reflection(smollm2: tuple[int, int]) -> None:
    listed = _run_grpcurl(f"127.0.0.1:{smollm2[0]}", "list").split()
    assert "llm.runtime.v1.Runtime" in listed
    assert "grpc.health.v1.Health" in listed


def test_grpcurl_health_check_reports_serving(smollm2: tuple[int, int]) -> None:
    out = _run_grpcurl(f"127.0.0.1:{smollm2[0]}", "grpc.health.v1.Health/Check")
    assert json.loads(out) == {"status": "SERVING"}


def test_grpcurl_asks_smollm2_the_capital_of_france_and_gets_paris(
    smollm2: tuple[int, int],
) -> None:
    body = {"messages": [{"role": "user", "content": QUESTION}], "max_new_tokens": 32}
    out = _run_grpcurl(
        "-d", json.dumps(body), f"127.0.0.1:{smollm2[0]}", "llm.runtime.v1.Runtime/Generate"
    )
    answer = json.loads(out)
    assert "Paris" in answer["text"], answer
    assert answer["finish_reason"] == "FINISH_REASON_STOP"  # grpcurl keeps the proto names
    assert int(answer["prompt_tokens"]) > 0


def test_the_python_client_streams_paris_and_metrics_pass_promtool(
    smollm2: tuple[int, int],
) -> None:
    with client.RuntimeClient(client.Connection(f"127.0.0.1:{smollm2[0]}")) as c:
        info = c.model_info()
        request = client.build_request(messages=[("user", QUESTION)], max_new_tokens=32)
        done = client.completion_from_stream(list(c.generate_stream(request)))
    assert "SmolLM2" in info.name
    assert info.dtype in {"bfloat16", "float16", "float32"}
    assert "Paris" in done.text
    with urllib.request.urlopen(f"http://127.0.0.1:{smollm2[1]}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert 'code="OK",method="GenerateStream"' in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run `make setup`"
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
