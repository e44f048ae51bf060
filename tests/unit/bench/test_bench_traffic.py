"""The arrival-trace workload: a deterministic trace, and goodput as DistServe and vLLM count it."""

from __future__ import annotations

import itertools
import math

import pytest
from bench import traffic

pytestmark = pytest.mark.unit

SLO = traffic.SLO(ttft=1.0, tpot=0.1)


def _timing(arrival: float, first: float, last: float, tokens: int) -> traffic.RequestTiming:
    return traffic.RequestTiming(arrival=arrival, first=first, last=last, tokens=tokens)


def test_a_trace_is_the_same_for_a_seed_and_within_its_bounds() -> None:
    trace = traffic.make_trace(requests=200, seed=7, new_tokens=(16, 64))
    assert trace == traffic.make_trace(requests=200, seed=7, new_tokens=(16, 64))
    assert trace != traffic.make_trace(requests=200, seed=8, new_tokens=(16, 64))
    assert all(50 <= r.prompt_tokens <= 1500 for r in trace)
    assert {r.max_new_tokens for r in trace} == {16, 64}
    assert trace[0].offset == 0.0
    gaps = [b.offset - a.offset for a, b in itertools.pairwise(trace)]
    assert all(g >= 0 for g in gaps)
    assert 0.7 < sum(gaps) / len(gaps) < 1.3  # Poisson at 1/s: mean gap ~1 s


def test_prompt_words_are_deterministic_per_request() -> None:
    assert traffic.prompt_words(3, seed=0, count=5) == traffic.prompt_words(3, seed=0, count=5)
    assert traffic.prompt_words(3, seed=0, count=5) != traffic.prompt_words(4, seed=0, count=5)
    assert len(traffic.prompt_words(3, seed=0, count=5).split()) == 5


def test_each_request_meets_the_slo_on_its_own() -> None:
    assert _timing(0.0, 0.9, 0.9 + 9 * 0.1, 10).meets(SLO)
    assert not _timing(0.0, 1.1, 1.2, 2).meets(SLO)  # TTFT
    assert not _timing(0.0, 0.5, 0.5 + 9 * 0.11, 10).meets(SLO)  # TPOT
    assert _timing(0.0, 0.5, 0.5, 1).meets(SLO)  # one token: TPOT 0
    aborted = _timing(0.0, 0.5, 0.6, 2)
    aborted.ok = False
    assert not aborted.meets(SLO)
    assert math.isinf(traffic.RequestTiming(arrival=0.0).ttft)


def test_goodput_counts_good_requests_over_the_run_duration() -> None:
    timings = [
        _timing(0.0, 0.5, 1.0, 6),  # good
        _timing(1.0, 1.2, 1.5, 5),  # good
        _timing(2.0, 4.0, 5.0, 11),  # TTFT 2 s: not good; ends the run at 5 s
        _timing(3.0, 3.5, 4.0, 1),  # good
    ]
    result = traffic.summarize("engine", 1.0, timings, slo=SLO)
    assert result.good == 3
    assert result.duration == 5.0
    assert result.goodput == pytest.approx(0.6)
    assert result.attainment == 0.75
    assert result.ttft_p95 == 2.0  # nearest rank of 4: the worst
    assert not result.meets_slo_p95


def test_the_target_is_judged_at_the_highest_rate_meeting_the_slo() -> None:
    def result(design: str, rate: float, goodput: float, meets: bool) -> traffic.RateResult:
        return traffic.RateResult(
            design=design, rate=rate, requests=10, good=0, failed=0, duration=10.0,
            goodput=goodput, attainment=0.0, ttft_p50=0.1, ttft_p95=0.1, tpot_p50=0.05,
            tpot_p95=0.05, tok_s=1.0, meets_slo_p95=meets,
        )  # fmt: skip

    results = [
        result("engine", 0.5, 0.5, True),
        result("static", 0.5, 0.5, True),
        result("engine", 1.0, 0.9, True),
        result("static", 1.0, 0.2, False),
        result("engine", 2.0, 0.3, False),
        result("static", 2.0, 0.1, False),
    ]
    lines = traffic.verdict(results)
    assert "rate  1.00/s engine/static goodput =   4.50x" in lines
    assert lines[-1].endswith("at 1/s, the highest rate meeting the SLO (issue 14): PASS")
    lines = traffic.verdict([r for r in results if r.rate != 1.0])
    assert lines[-1].endswith("at 0.5/s, the highest rate meeting the SLO (issue 14): FAIL")
