"""The arrival-trace workload of `traffic_bench.py` and its goodput, pure (no torch, no model).

A trace is `requests` requests with Poisson arrivals: exponential gaps drawn once from `seed` at
1 request/s and divided by the rate, so every rate replays the same requests in the same order,
only closer together. Each request has a prompt length drawn log-uniformly in
[`min_prompt`, `max_prompt`] tokens (short prompts are common, long ones rare but present) and a
`max_new_tokens` drawn uniformly from `new_tokens`; its text is words drawn from the same seed
(`prompt_words`), cut to length by the tokenizer in the script.

Goodput is the request-level definition of DistServe and vLLM's `benchmark_serving --goodput`:
the requests per second that met the SLO on their own, i.e. (requests whose TTFT <= `ttft` and
whose TPOT <= `tpot`) / the run's duration (first arrival to last completion). TTFT runs from a
request's arrival to its first token, queueing included; TPOT is its mean time per output token
after the first, (last - first) / (tokens - 1), 0 for a one-token answer. A request aborted at the
time limit, or that failed, meets nothing. The rate-level view is reported too: a rate "meets the
SLO" when TTFT p95 <= `ttft` and TPOT p95 <= `tpot` over all its requests.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence

_WORD_TEXT = (
    "the river city night market lantern train station winter garden mountain letter window "
    "bakery harbor storm island library clock bridge forest village music festival engine map "
    "teacher painter sailor doctor child friend stranger dog cat bird horse fox owl whale "
    "quiet bright old new small large early late slowly quickly often never always together "
    "walked found built opened remembered wrote carried watched followed waited answered asked"
)
WORDS = tuple(_WORD_TEXT.split(" "))


@dataclasses.dataclass(frozen=True)
class TraceRequest:
    index: int
    offset: float  # arrival at 1 request/s, seconds after the first; divide by the rate
    prompt_tokens: int
    max_new_tokens: int


@dataclasses.dataclass(frozen=True)
class SLO:
    ttft: float = 1.0  # seconds
    tpot: float = 0.1  # seconds per output token


def make_trace(
    *,
    requests: int,
    seed: int,
    min_prompt: int = 50,
    max_prompt: int = 1500,
    new_tokens: Sequence[int] = (16, 32, 64, 128),
) -> list[TraceRequest]:
    rng = random.Random(seed)
    trace, offset = [], 0.0
    for index in range(requests):
        length = math.exp(rng.uniform(math.log(min_prompt), math.log(max_prompt)))
        trace.append(
            TraceRequest(
                index=index,
                offset=offset,
                prompt_tokens=round(length),
                max_new_tokens=rng.choice(list(new_tokens)),
            )
        )
        offset += rng.expovariate(1.0)
    return trace


def prompt_words(index: int, *, seed: int, count: int) -> str:
    """`count` words for request `index`, the same for every run with this seed."""
    rng = random.Random(f"{seed}-{index}")
    return " ".join(rng.choice(WORDS) for _ in range(count))


@dataclasses.dataclass
class RequestTiming:
    """One request's clock: arrival, first and last token, tokens; `ok` False if it failed or
    was aborted at the time limit."""

    arrival: float
    first: float = 0.0
    last: float = 0.0
    tokens: int = 0
    ok: bool = True

    def token(self, count: int = 1) -> None:
        import time

        now = time.perf_counter()
        if self.tokens == 0:
            self.first = now
        self.last = now
        self.tokens += count

    @property
    def ttft(self) -> float:
        return self.first - self.arrival if self.tokens else math.inf

    @property
    def tpot(self) -> float:
        if not self.tokens:
            return math.inf
        return (self.last - self.first) / (self.tokens - 1) if self.tokens > 1 else 0.0

    def meets(self, slo: SLO) -> bool:
        return self.ok and self.tokens > 0 and self.ttft <= slo.ttft and self.tpot <= slo.tpot


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); inf entries (no token) count as the worst."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclasses.dataclass(frozen=True)
class RateResult:
    design: str
    rate: float  # offered requests per second
    requests: int
    good: int  # requests that met the SLO on their own
    failed: int  # aborted at the time limit or failed
    duration: float  # first arrival to last completion, seconds
    goodput: float  # good / duration
    attainment: float  # good / requests
    ttft_p50: float
    ttft_p95: float
    tpot_p50: float
    tpot_p95: float
    tok_s: float
    meets_slo_p95: bool  # rate-level: TTFT p95 and TPOT p95 both within the SLO


def summarize(
    design: str, rate: float, timings: Sequence[RequestTiming], *, slo: SLO
) -> RateResult:
    start = min(t.arrival for t in timings)
    end = max([t.last for t in timings if t.tokens] + [start])
    duration = max(end - start, 1e-9)
    good = sum(t.meets(slo) for t in timings)
    ttfts = [t.ttft if t.ok else math.inf for t in timings]
    tpots = [t.tpot if t.ok else math.inf for t in timings]
    ttft_p95, tpot_p95 = percentile(ttfts, 95), percentile(tpots, 95)
    return RateResult(
        design=design,
        rate=rate,
        requests=len(timings),
        good=good,
        failed=sum(not t.ok for t in timings),
        duration=duration,
        goodput=good / duration,
        attainment=good / len(timings),
        ttft_p50=percentile(ttfts, 50),
        ttft_p95=ttft_p95,
        tpot_p50=percentile(tpots, 50),
        tpot_p95=tpot_p95,
        tok_s=sum(t.tokens for t in timings) / duration,
        meets_slo_p95=ttft_p95 <= slo.ttft and tpot_p95 <= slo.tpot,
    )


def _ms(seconds: float) -> str:
    return "   inf" if math.isinf(seconds) else f"{seconds * 1000:6.0f}"


def table(results: Sequence[RateResult]) -> list[str]:
    lines = [
        f"{'design':<7} {'rate':>5} {'good':>7} {'goodput':>8} {'TTFT p50':>9} {'TTFT p95':>9} "
        f"{'TPOT p50':>9} {'TPOT p95':>9} {'tok/s':>7} {'p95 SLO':>7}"
    ]
    for r in results:
        lines.append(
            f"{r.design:<7} {r.rate:>5.2f} {r.good:>3}/{r.requests:<3} {r.goodput:>7.3f}/s "
            f"{_ms(r.ttft_p50)}ms {_ms(r.ttft_p95)}ms "
            f"{_ms(r.tpot_p50)}ms {_ms(r.tpot_p95)}ms {r.tok_s:>7.1f} "
            f"{'meets' if r.meets_slo_p95 else 'misses':>7}"
        )
    return lines


def ratio(engine: RateResult, static: RateResult) -> float:
    """engine / static goodput (inf when only the engine served anyone within the SLO)."""
    if static.goodput == 0:
        return math.inf if engine.goodput > 0 else math.nan
    return engine.goodput / static.goodput


def verdict(results: Sequence[RateResult], *, target: float = 3.0) -> list[str]:
    """Per rate the engine/static goodput ratio; issue 14's target at the highest rate where
    either design meets the SLO (rate-level, p95s)."""
    by = {(r.design, r.rate): r for r in results}
    rates = sorted({r.rate for r in results})
    lines = []
    for rate in rates:
        eng, static = by.get(("engine", rate)), by.get(("static", rate))
        if eng and static:
            lines.append(f"rate {rate:5.2f}/s engine/static goodput = {ratio(eng, static):6.2f}x")
    met = [rate for rate in rates if any(r.meets_slo_p95 for r in results if r.rate == rate)]
    if not met:
        return [*lines, "  target: no rate met the SLO at p95 for either design: FAIL"]
    top = max(met)
    eng, static = by.get(("engine", top)), by.get(("static", top))
    if eng is None or static is None:
        return lines
    ok = ratio(eng, static) >= target
    label = f"goodput >= {target:g}x static at {top:g}/s, the highest rate meeting the SLO"
    return [*lines, f"  target {label} (issue 14): {'PASS' if ok else 'FAIL'}"]
