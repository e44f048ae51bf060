"""The operator's pod client against a real runtime on loopback (real gRPC and HTTP servers, real
engine, tiny random model): a smoke prompt is answered and judged over either protocol, a silent
pod or a wrong model name is an error, and the scrape parses into the window the analysis reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from llm_operator import podclient, spec
from llm_operator.rollout import analysis, promtext
from llm_runtime import config, server
from llm_runtime.models import tiny
from loopback import free_port

from tests.unit.runtime.openai_api import harness

pytestmark = pytest.mark.unit

PARIS = spec.SmokePrompt(prompt="What is the capital of France?", expect="(?i)paris", timeout="30s")
PARIS_HTTP = PARIS.model_copy(update={"protocol": spec.SmokeProtocol.HTTP})
ANYTHING = r"[\s\S]*"
MODEL = harness.MODEL  # the name the operator gives the runtime (spec.model.name)


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
        http_port=free_port(),  # 0 turns the HTTP API off
        grace_seconds=1,
        model_name=MODEL,
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


def _access(
    srv: server.RuntimeServer, *, http_port: int | None = None, model: str = MODEL
) -> podclient.Access:
    """What the operator's windows.access gives, pointed at this runtime's ports."""
    port = srv.http_port if http_port is None else http_port
    return podclient.Access(port=srv.grpc_port, http_port=port, model=model)


async def _smoke(access: podclient.Access, *prompts: spec.SmokePrompt) -> list[analysis.SmokeReply]:
    return await asyncio.to_thread(
        podclient.smoke, pod="canary-0", pod_ip="127.0.0.1", prompts=prompts, access=access
    )


async def test_both_protocols_get_the_same_greedy_answer_and_are_judged_alike(
    runtime: server.RuntimeServer,
) -> None:
    replies = await _smoke(_access(runtime), PARIS, PARIS_HTTP)
    grpc_reply, http_reply = replies
    assert grpc_reply.error is None and http_reply.error is None, replies
    assert http_reply.text and http_reply.text == grpc_reply.text
    assert 0 < http_reply.latency_seconds < PARIS.timeout_seconds
    mismatch = analysis.check_smoke((PARIS, PARIS_HTTP), replies)
    assert [r.reason for r in mismatch] == ["SmokePromptMismatch"] * 2
    assert "smoke prompt 1 over http answered" in mismatch[1].message
    anything = [p.model_copy(update={"expect": ANYTHING}) for p in (PARIS, PARIS_HTTP)]
    passed = analysis.check_smoke(anything, replies)
    assert [r.reason for r in passed] == ["SmokePromptPassed"] * 2


async def test_an_http_prompt_for_another_model_or_to_another_server_is_an_error(
    runtime: server.RuntimeServer,
) -> None:
    prompt = PARIS_HTTP.model_copy(update={"expect": ANYTHING, "timeout": "5s"})
    (unknown,) = await _smoke(_access(runtime, model="not-served"), prompt)
    assert unknown.text is None and unknown.error is not None
    assert unknown.error.startswith("HTTP 404: ") and "not-served" in unknown.error
    (metrics,) = await _smoke(_access(runtime, http_port=runtime.metrics_port), prompt)
    assert metrics.text is None and metrics.error and metrics.error.startswith("HTTP ")
    (closed,) = await _smoke(_access(runtime, http_port=9), prompt)  # nothing listens on 9
    assert closed.text is None and closed.error and "connection failed" in closed.error
    results = analysis.check_smoke([prompt] * 3, [unknown, metrics, closed])
    assert {r.reason for r in results} == {"SmokePromptError"}
    assert all(" over http failed: " in r.message for r in results)


async def test_the_smoke_request_shows_in_the_scraped_window(
    runtime: server.RuntimeServer,
) -> None:
    first = await asyncio.to_thread(podclient.scrape, "127.0.0.1", port=runtime.metrics_port)
    assert first.text is not None, first.error
    before = promtext.parse(first.text)
    await _smoke(_access(runtime), PARIS, PARIS_HTTP)  # the window counts HTTP traffic too
    then = await asyncio.to_thread(podclient.scrape, "127.0.0.1", port=runtime.metrics_port)
    assert then.text is not None, then.error
    window = promtext.window_delta(before, promtext.parse(then.text), started_in_window=False)
    assert window is not None
    seen = analysis.window_metrics(window)
    assert (seen.requests, seen.errors) == (2, 0)
    assert seen.ttft_p95 is not None and seen.ttft_p95 > 0


def test_a_pod_that_does_not_answer_is_a_failed_smoke_and_a_missing_scrape() -> None:
    closed = podclient.Access(port=9)  # discard port: nothing listens on loopback
    quick = spec.SmokePrompt(prompt="hi", expect="x", timeout="2s")
    (reply,) = podclient.smoke(pod="p", pod_ip="127.0.0.1", prompts=(quick,), access=closed)
    assert reply.text is None and reply.error and "UNAVAILABLE" in reply.error
    (result,) = analysis.check_smoke((quick,), (reply,))
    assert result.reason == "SmokePromptError"
    assert podclient.scrape("127.0.0.1", port=9).failure is podclient.ScrapeFailure.CONNECTION
