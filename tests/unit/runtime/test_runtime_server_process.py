"""`llm-runtime serve` as the container runs it: a real process, signals, exit codes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from llm_runtime.api import client
from llm_runtime.models import tiny

pytestmark = pytest.mark.unit

LONG = 450
_LISTENING = re.compile(r"listening: grpc [\d.]+:(\d+) \(\w+\), metrics :(\d+)/metrics")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.make_tiny_model(tmp_path_factory.mktemp("tiny"))


def _spawn(log: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "llm_runtime", "serve", "--host", "127.0.0.1", *args]
    # The health-only and HTTP ports off: several runtimes (and other test runs) share this machine.
    off = {"LLM_RUNTIME_HEALTH_PORT": "0", "LLM_RUNTIME_HTTP_PORT": "0"}
    full_env = {**os.environ, **off, **(env or {})}
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env)


def _grpc_port(proc: subprocess.Popen[bytes], log: Path, *, within: float = 120) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        match = _LISTENING.search(log.read_text())
        if match:
            return int(match.group(1))
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    pytest.fail(f"the server did not listen within {within}s:\n{log.read_text()}")


def _wait_serving(conn: client.RuntimeClient, *, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if conn.health(deadline=2) == "SERVING":
                return
        except grpc.RpcError as exc:  # a busy machine may answer late while the model loads
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        time.sleep(0.05)
    pytest.fail("never SERVING")


@pytest.fixture
def served(tiny_model: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = tmp_path / "serve.log"
    # Limits through the environment, as the operator sets them.
    env = {"LLM_RUNTIME_GRACE_SECONDS": "300", "LLM_RUNTIME_METRICS_PORT": "0"}
    proc = _spawn(log, "--model", str(tiny_model), "--grpc-port", "0", env=env)
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_drains_finishes_in_flight_and_exits_zero(
    served: tuple[subprocess.Popen[bytes], Path],
) -> None:
    proc, log = served
    port = _grpc_port(proc, log)
    with client.RuntimeClient(client.Connection(f"127.0.0.1:{port}")) as conn:
        _wait_serving(conn)
        stream = conn.generate_stream(client.build_request("a", max_new_tokens=LONG))
        chunks = [next(stream)]
        rest: list[object] = []
        reader = threading.Thread(target=lambda: rest.extend(stream))
        reader.start()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)  # the drain has begun: new calls are refused
        with pytest.raises(grpc.RpcError) as info:
            conn.generate(client.build_request("late", max_new_tokens=1), deadline=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        reader.join(timeout=300)
    done = client.completion_from_stream([*chunks, *rest])  # type: ignore[list-item]
    assert (done.finish_reason, done.completion_tokens) == ("length", LONG)
    assert proc.wait(timeout=300) == 0, log.read_text()
    assert "drained" in log.read_text()


def test_a_model_that_cannot_load_exits_one_with_the_reason(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc = _spawn(log, "--model", str(tmp_path / "nowhere"), "--grpc-port", "0",
                  "--metrics-port", "0")  # fmt: skip
    assert proc.wait(timeout=120) == 1
    assert "failed to load" in log.read_text()


def test_bad_settings_exit_two_before_anything_starts(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc = _spawn(log, "--max-batch-size", "0", "--tls-cert", str(tmp_path / "missing.pem"))
    assert proc.wait(timeout=60) == 2
    text = log.read_text()
    assert "max_batch_size must be >= 1" in text
    assert "tls_cert and tls_key go together" in text
