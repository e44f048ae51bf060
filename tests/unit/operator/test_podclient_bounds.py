"""Scrapes are bounded: in bytes, in time (connect to last byte, however slowly a pod trickles),
and per tick across pods, which are scraped concurrently. Real HTTP servers on 127.0.0.1 play
the pods: a good one, one that trickles a byte at a time, one that sends 100 MB, one that sends
NaN."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from llm_operator import podclient, windows
from llm_operator.rollout.analysis import Verdict
from llm_runtime.api import contract

pytestmark = pytest.mark.unit

REQS = contract.METRIC_REQUESTS
GOOD = f'# TYPE {REQS} counter\n{REQS}{{code="OK"}} 7\n'.encode()
NAN = f'# TYPE {REQS} counter\n{REQS}{{code="OK"}} NaN\n'.encode()
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _head(length: int | None = None) -> bytes:
    size = "" if length is None else f"Content-Length: {length}\r\n"
    return f"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n{size}\r\n".encode()


async def _answer(w: asyncio.StreamWriter, body: bytes) -> None:
    w.write(_head(len(body)) + body)
    await w.drain()
    w.close()


def good(body: bytes = GOOD) -> Handler:
    async def h(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        await _answer(w, body)

    return h


async def trickle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """A byte every 50 ms, forever: each read is quick, the whole never ends."""
    await r.readuntil(b"\r\n\r\n")
    try:
        for b in _head() + GOOD * 10_000:
            w.write(bytes([b]))
            await w.drain()
            await asyncio.sleep(0.05)
    except (ConnectionError, OSError):
        pass


async def huge(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """100 MB of comment lines as fast as the reader takes them."""
    await r.readuntil(b"\r\n\r\n")
    line = b"# " + b"x" * 1022 + b"\n"
    try:
        w.write(_head(100 << 20))
        for _ in range(100 << 10):
            w.write(line)
            await w.drain()
    except (ConnectionError, OSError):
        pass


class Servers:
    """asyncio servers on 127.0.0.1 in a background loop; `port(handler)` starts one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def port(self, handler: Handler) -> int:
        async def start() -> int:
            srv = await asyncio.start_server(handler, "127.0.0.1", 0)
            return int(srv.sockets[0].getsockname()[1])

        return asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def servers() -> Iterator[Servers]:
    s = Servers()
    yield s
    s.close()


def test_a_good_pod_is_scraped(servers: Servers) -> None:
    got = podclient.scrape("127.0.0.1", port=servers.port(good()))
    assert got.failure is None and got.text == GOOD.decode()


def test_a_trickling_pod_fails_at_the_deadline_not_later(servers: Servers) -> None:
    start = time.monotonic()
    got = podclient.scrape("127.0.0.1", port=servers.port(trickle), timeout=0.6)
    assert time.monotonic() - start < 1.5
    assert got.text is None and got.failure is podclient.ScrapeFailure.TIMEOUT


def test_a_100_mb_body_stops_at_the_byte_bound(servers: Servers) -> None:
    start = time.monotonic()
    got = podclient.scrape("127.0.0.1", port=servers.port(huge), timeout=10)
    assert got.text is None and got.failure is podclient.ScrapeFailure.TOO_LARGE
    assert time.monotonic() - start < 5


def test_a_closed_port_is_a_connection_failure() -> None:
    got = podclient.scrape("127.0.0.1", port=9)
    assert got.text is None and got.failure is podclient.ScrapeFailure.CONNECTION


def _pod(name: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_one_slow_pod_does_not_delay_the_others_and_the_tick_has_a_budget(
    servers: Servers,
) -> None:
    """Eight good pods and two tricklers: the good ones are all parsed, the tricklers fail by
    name, and the whole takes about one scrape deadline, not the sum."""
    ports = {f"10.0.0.{i}": servers.port(good()) for i in range(8)}
    ports |= {"10.0.1.1": servers.port(trickle), "10.0.1.2": servers.port(trickle)}
    group = [_pod(f"pod-{ip}", ip) for ip in ports]

    def fetch(ip: str) -> podclient.Scraped:
        return podclient.scrape("127.0.0.1", port=ports[ip], timeout=0.8)

    start = time.monotonic()
    got = {g.pod: g for g in windows.scrape_all(group, budget=5, fetch=fetch)}
    elapsed = time.monotonic() - start
    assert elapsed < 2.5, elapsed  # sequential: two 0.8 s tricklers + 8 pods; bounded here
    slow = {n for n, g in got.items() if g.scrape is None}
    assert slow == {"pod-10.0.1.1", "pod-10.0.1.2"}
    for name in slow:
        problem = got[name].problem
        assert problem is not None and problem.reason == "ScrapeTimeout"
        assert problem.verdict is Verdict.INCONCLUSIVE and name in problem.message
    assert all(
        g.scrape is not None and g.scrape.get(REQS) == 7 for n, g in got.items() if n not in slow
    )


def test_the_ticks_budget_ends_the_wait_naming_the_pods_left(servers: Servers) -> None:
    ports = {f"10.0.2.{i}": servers.port(trickle) for i in range(6)}
    group = [_pod(f"p{i}", ip) for i, ip in enumerate(ports)]

    def fetch(ip: str) -> podclient.Scraped:
        return podclient.scrape("127.0.0.1", port=ports[ip], timeout=3)

    start = time.monotonic()
    got = windows.scrape_all(group, budget=0.5, fetch=fetch)
    assert time.monotonic() - start < 1.5
    assert {g.problem.reason for g in got if g.problem} == {"ScrapeBudgetExceeded"}
    assert len(got) == 6


def test_nan_and_oversized_bodies_fail_the_window_naming_pod_and_metric(
    servers: Servers,
) -> None:
    ports = {"10.0.3.1": servers.port(good(NAN)), "10.0.3.2": servers.port(huge)}
    group = [_pod("nan-pod", "10.0.3.1"), _pod("huge-pod", "10.0.3.2")]

    def fetch(ip: str) -> podclient.Scraped:
        return podclient.scrape("127.0.0.1", port=ports[ip], timeout=10)

    got = {g.pod: g.problem for g in windows.scrape_all(group, fetch=fetch)}
    nan, big = got["nan-pod"], got["huge-pod"]
    assert nan is not None and nan.verdict is Verdict.FAILED and nan.reason == "MetricNotFinite"
    assert f'pod nan-pod metric {REQS}{{code="OK"}} is nan' == nan.message
    assert big is not None and big.verdict is Verdict.FAILED and big.reason == "ScrapeTooLarge"
