"""Every answer names the revision that served it (trailing metadata), so a client behind any
router can tell which side of a canary split answered; the load generator counts by it, over a
fresh channel per request or one long-lived channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bench import loadgen
from llm_runtime import config, server
from llm_runtime.models import tiny

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
async def runtime(tiny_model: Path) -> AsyncIterator[server.RuntimeServer]:
    settings = config.Settings(
        model=str(tiny_model),
        model_revision="rev-a",
        host="127.0.0.1",
        grpc_port=0,
        metrics_port=0,
        health_port=0,
        http_port=0,
        grace_seconds=1,
    )
    async with server.serving(settings) as srv:
        await srv.wait_ready()
        yield srv


@pytest.mark.parametrize("long_lived", [False, True])
async def test_answers_are_counted_under_the_revision_that_served_them(
    runtime: server.RuntimeServer, long_lived: bool
) -> None:
    cfg = loadgen.LoadConfig(
        target=f"127.0.0.1:{runtime.grpc_port}",
        concurrency=2,
        max_new_tokens=2,
        long_lived=long_lived,
    )
    stop = asyncio.Event()

    async def stop_after_requests() -> None:
        await asyncio.sleep(1.5)
        stop.set()

    report, _ = await asyncio.gather(loadgen.run(cfg, stop), stop_after_requests())
    assert report.failed == 0, report.errors
    assert report.ok > 0
    assert dict(report.by_revision) == {"rev-a": report.ok}
