"""Prometheus text exposition → window deltas → error ratio and histogram quantiles.

The operator scrapes each runtime pod itself (no Prometheus server in the loop), so the
`increase()` and `histogram_quantile()` that a PromQL query would do happen here, on two scrapes
per pod: the previous one (start of the analysis window) and the current one. All pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from llm_runtime.api import contract
from prometheus_client import parser

Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]

# Only these families accumulate; gauges (and the `_created` gauges) make no sense as deltas.
_CUMULATIVE_TYPES = frozenset({"counter", "histogram", "summary"})
_CUMULATIVE_SUFFIXES = ("_total", "_bucket", "_count", "_sum")

# gRPC codes that mean the server failed the request. Client mistakes (INVALID_ARGUMENT,
# NOT_FOUND, CANCELLED by the caller...) would otherwise blame the canary for its callers.
SERVER_ERROR_CODES = frozenset(
    {
        "UNKNOWN",
        "INTERNAL",
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "DATA_LOSS",
        "UNIMPLEMENTED",
        "RESOURCE_EXHAUSTED",
    }
)


@dataclass(frozen=True)
class Scrape:
    """Cumulative samples of one pod (or a delta, or a sum over pods), keyed by name + labels."""

    samples: Mapping[SeriesKey, float] = field(default_factory=dict)

    def get(self, name: str, **labels: str) -> float:
        """The sum of every series called `name` whose labels include `labels`."""
        return sum(v for (n, ls), v in self.samples.items() if n == name and _matches(ls, labels))


def _matches(series_labels: Labels, wanted: Mapping[str, str]) -> bool:
    have = dict(series_labels)
    return all(have.get(k) == v for k, v in wanted.items())


class BadSampleError(ValueError):
    """A cumulative sample no process can have counted: NaN, ±Inf, or a negative count.

    One such value would turn every ratio and quantile of the window into NaN (which compares
    False with every limit, so a check would pass) or a negative rate; the window fails instead,
    naming the metric (the caller adds the pod).
    """

    def __init__(self, metric: str, labels: Labels, value: float) -> None:
        shown = ",".join(f'{k}="{v}"' for k, v in labels)
        self.metric = f"{metric}{{{shown}}}" if shown else metric
        self.value = value
        super().__init__(f"metric {self.metric} is {value!r}")


def check_sample(name: str, labels: Labels, value: float) -> float:
    """The value when it is finite (and, except a histogram's `_sum`, not negative)."""
    if not math.isfinite(value) or (value < 0 and not name.endswith("_sum")):
        raise BadSampleError(name, labels, value)
    return value


def parse(text: str) -> Scrape:
    """Keeps the cumulative samples (counters, histogram and summary parts) of one scrape.

    Raises `BadSampleError` for a non-finite or negative cumulative value, `ValueError` for text that
    is not the exposition format. Gauges are not kept, so their values are not judged.
    """
    samples: dict[SeriesKey, float] = {}
    for family in parser.text_string_to_metric_families(text):
        if family.type not in _CUMULATIVE_TYPES:
            continue
        for s in family.samples:
            if s.name.endswith(_CUMULATIVE_SUFFIXES) or family.type == "counter":
                labels = tuple(sorted(s.labels.items()))
                samples[(s.name, labels)] = check_sample(s.name, labels, float(s.value))
    return Scrape(samples)


def is_reset(previous: Scrape, current: Scrape) -> bool:
    """True when any cumulative series went down: the process restarted between the scrapes.

    Judged per pod, not per series, so a histogram's buckets never mix two processes.
    """
    return any(current.samples.get(k, 0.0) < v for k, v in previous.samples.items())


def delta(previous: Scrape, current: Scrape) -> Scrape:
    """What happened between two scrapes of one pod (Prometheus `increase()` without extrapolation).

    A series missing from `previous` counts from zero (labelled children such as a new error code
    appear on first use). After a reset the current values are the whole delta. Pass
    `Scrape()` as `previous` for a pod whose process started inside the window.
    """
    if is_reset(previous, current):
        return current
    return Scrape(
        {k: max(0.0, v - previous.samples.get(k, 0.0)) for k, v in current.samples.items()}
    )


def window_delta(
    previous: Scrape | None, current: Scrape, *, started_in_window: bool
) -> Scrape | None:
    """A pod's delta for the window, or None when it cannot be known yet.

    Without a previous scrape the delta is known only if the process started inside the window
    (its counters began at zero then); otherwise this scrape becomes the pod's baseline.
    """
    if previous is not None:
        return delta(previous, current)
    return current if started_in_window else None


def aggregate(scrapes: Iterable[Scrape]) -> Scrape:
    """Sums series with equal name and labels across pods (PromQL `sum by (all labels)`)."""
    total: dict[SeriesKey, float] = {}
    for scrape in scrapes:
        for key, value in scrape.samples.items():
            total[key] = total.get(key, 0.0) + value
    return Scrape(total)


@dataclass(frozen=True)
class Ratio:
    """errors / total over a window; `value` is None when there were no requests."""

    errors: float
    total: float

    @property
    def value(self) -> float | None:
        return None if self.total <= 0 else self.errors / self.total


def error_ratio(
    window: Scrape,
    *,
    metric: str = contract.METRIC_REQUESTS,
    code_label: str = "code",
    error_codes: frozenset[str] = SERVER_ERROR_CODES,
) -> Ratio:
    """The share of requests answered with a server-error gRPC code."""
    errors = 0.0
    total = 0.0
    for (name, labels), value in window.samples.items():
        if name != metric:
            continue
        total += value
        if dict(labels).get(code_label) in error_codes:
            errors += value
    return Ratio(errors=errors, total=total)


def buckets(window: Scrape, histogram: str, **labels: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) pairs summed over all series, sorted by bound."""
    by_bound: dict[float, float] = {}
    for (name, series_labels), value in window.samples.items():
        if name != f"{histogram}_bucket" or not _matches(series_labels, labels):
            continue
        le = dict(series_labels).get("le")
        if le is None:
            continue
        bound = float(le)
        by_bound[bound] = by_bound.get(bound, 0.0) + value
    return sorted(by_bound.items())


def bucket_quantile(q: float, pairs: list[tuple[float, float]]) -> float | None:
    """PromQL's `histogram_quantile` on (upper bound, cumulative count) pairs; None for NaN.

    Same rules as promql/quantile.go: the top bucket must be +Inf, counts are forced monotonic,
    linear interpolation inside the bucket (lower bound 0 for the first), and a quantile that
    lands in the +Inf bucket returns the highest finite bound (so it reads "at least").
    """
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if len(pairs) < 2 or not math.isinf(pairs[-1][0]):
        return None
    bounds = [b for b, _ in pairs]
    counts = _monotonic([c for _, c in pairs])
    observations = counts[-1]
    if observations <= 0:
        return None
    rank = q * observations
    b = next(i for i, c in enumerate([*counts[:-1], math.inf]) if c >= rank)
    if b == len(counts) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0 if b == 0 else bounds[b - 1]
    below = 0.0 if b == 0 else counts[b - 1]
    if counts[b] <= below:  # only when q == 0 and the first bucket is empty: 0/0 in PromQL
        return None
    return start + (bounds[b] - start) * ((rank - below) / (counts[b] - below))


def _monotonic(counts: list[float]) -> list[float]:
    """The running maximum: PromQL's `ensureMonotonic` envelope."""
    out: list[float] = []
    top = -math.inf
    for c in counts:
        top = max(top, c)
        out.append(top)
    return out


def histogram_quantile(q: float, window: Scrape, histogram: str, **labels: str) -> float | None:
    """`histogram_quantile(q, sum by (le) (increase(<histogram>_bucket[window])))`."""
    return bucket_quantile(q, buckets(window, histogram, **labels))
