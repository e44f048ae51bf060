"""A real runtime (gRPC server, engine, tiny random model) with the OpenAI HTTP API beside it on
loopback, as `llm-runtime serve` runs them: one serving state for both, the HTTP port opened and
closed by the runtime server itself. Shared by the
fixtures in conftest.py and the tests (by full name, as pyproject's pytest pythonpath allows)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from llm_runtime import config, metrics, server
from llm_runtime.api import contract
from loopback import free_port

MODEL = "tiny-chat"  # the served name (the operator's LLM_MODEL_NAME)


@dataclasses.dataclass
class Running:
    srv: server.RuntimeServer
    scheme: str = "http"

    @property
    def base_url(self) -> str:
        """The runtime's own HTTP port (`http_port`), which it opened beside gRPC."""
        assert self.srv.http_port, "started with http_port=0: no HTTP API"
        return f"{self.scheme}://127.0.0.1:{self.srv.http_port}/v1"

    @property
    def model(self) -> str:
        """The served model name, which requests must name."""
        assert self.srv.state.serving is not None
        return self.srv.state.serving.info.name

    def stats(self) -> tuple[int, int]:
        """(running, waiting) in the engine."""
        assert self.srv.state.serving is not None
        stats = self.srv.state.serving.engine.stats()
        return stats.running, stats.waiting

    def requests(self, method: str, code: str) -> float | None:
        """llm_runtime_requests_total for one method and code, as /metrics shows it."""
        assert self.srv.state.serving is not None
        info = self.srv.state.serving.info
        labels = {"method": method, "code": code, "model": info.name, "revision": info.revision}
        labels[contract.LABEL_PROTOCOL] = metrics.PROTOCOL_OF[method]
        return self.srv.metrics.registry.get_sample_value("llm_runtime_requests_total", labels)


def settings_for(model: Path, **overrides: Any) -> config.Settings:
    """Loopback, free ports (the HTTP API's included), a small batch; `overrides` replace
    settings fields."""
    base = config.Settings(
        model=str(model),
        model_name=MODEL,
        host="127.0.0.1",
        grpc_port=0,
        metrics_port=0,
        health_port=0,
        http_port=free_port(),
        max_batch_size=4,
        max_waiting=4,
        grace_seconds=10,
    )
    return dataclasses.replace(base, **overrides)


@contextlib.asynccontextmanager
async def started(
    model: Path,
    engine_factory: server.EngineFactory = server.load_engine,
    wait_ready: bool = True,
    **overrides: Any,
) -> AsyncIterator[Running]:
    """One runtime serving both protocols, as `llm-runtime serve` runs them; `overrides`
    replace settings fields."""
    settings = settings_for(model, **overrides)
    serving = server.serving(settings, engine_factory=engine_factory, wait_ready=wait_ready)
    async with serving as srv:
        yield Running(srv, "https" if settings.tls_cert else "http")


Start = Callable[..., contextlib.AbstractAsyncContextManager[Running]]


async def until(condition: Callable[[], bool], *, within: float = 30.0) -> None:
    """Poll `condition` until true; fail the test after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition still false after {within}s")
        await asyncio.sleep(0.01)
