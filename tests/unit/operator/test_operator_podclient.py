"""The operator's pod client against a real runtime on loopback (real gRPC server, real engine, tiny
random model): a smoke prompt is answered and judged, a silent pod is an error, and the scrape
parses into the window the analysis reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from llm_operator import podclient, spec
from llm_operator.rollout import analysis, promtext
from llm_runtime import config, server
from llm_runtime.models import tiny

pytestmark = pytest.mark.unit

PARIS = spec.SmokePrompt(prompt="What is the capital of France?", expect="(?i)paris", timeout="30s")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
async def runtime(tiny_model: Path) -> AsyncIterator[server.RuntimeServer]:
    settings = config.Settings(
        model=str(tiny_model),
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


async def test_a_random_model_answers_the_smoke_prompt_and_fails_its_regex(
    runtime: server.RuntimeServer,
) -> None:
    access = podclient.Access(port=runtime.grpc_port)
    replies = await asyncio.to_thread(
        podclient.smoke, pod="canary-0", pod_ip="127.0.0.1", prompts=(PARIS,), access=access
    )
    (reply,) = replies
    assert reply.error is None and reply.text is not None
    assert 0 < reply.latency_seconds < PARIS.timeout_seconds
    (result,) = analysis.check_smoke((PARIS,), replies)
    assert result.reason == "SmokePromptMismatch"  # random weights do not know Paris
    anything = spec.SmokePrompt(prompt=PARIS.prompt, expect=r"[\s\S]*")
    (ok,) = analysis.check_smoke((anything,), replies)
    assert ok.reason == "SmokePromptPassed"


async def test_the_smoke_request_shows_in_the_scraped_window(
    runtime: server.RuntimeServer,
) -> None:
    first = await asyncio.to_thread(podclient.scrape, "127.0.0.1", port=runtime.metrics_port)
    assert first.text is not None, first.error
    before = promtext.parse(first.text)
    access = podclient.Access(port=runtime.grpc_port)
    await asyncio.to_thread(
        podclient.smoke, pod="p", pod_ip="127.0.0.1", prompts=(PARIS,), access=access
    )
    then = await asyncio.to_thread(podclient.scrape, "127.0.0.1", port=runtime.metrics_port)
    assert then.text is not None, then.error
    window = promtext.window_delta(before, promtext.parse(then.text), started_in_window=False)
    assert window is not None
    seen = analysis.window_metrics(window)
    assert (seen.requests, seen.errors) == (1, 0)
    assert seen.ttft_p95 is not None and seen.ttft_p95 > 0


def test_a_pod_that_does_not_answer_is_a_failed_smoke_and_a_missing_scrape() -> None:
    closed = podclient.Access(port=9)  # discard port: nothing listens on loopback
    quick = spec.SmokePrompt(prompt="hi", expect="x", timeout="2s")
    (reply,) = podclient.smoke(pod="p", pod_ip="127.0.0.1", prompts=(quick,), access=closed)
    assert reply.text is None and reply.error and "UNAVAILABLE" in reply.error
    (result,) = analysis.check_smoke((quick,), (reply,))
    assert result.reason == "SmokePromptError"
    assert podclient.scrape("127.0.0.1", port=9).failure is podclient.ScrapeFailure.CONNECTION
