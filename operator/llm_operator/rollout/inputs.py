"""The rollout's own input types, parsed from the LLMDeployment spec dict.

Kept separate from `llm_operator.spec` on purpose: the decision core depends only on these small
frozen dataclasses, so it can be tested (and reasoned about) without the rest of the operator.
`from_spec_dict` reads the same camelCase shape the CRD defines.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class Strategy(enum.StrEnum):
    """Canary shifts traffic step by step; Recreate replaces (for clusters that cannot surge)."""

    CANARY = "Canary"
    RECREATE = "Recreate"


class InconclusivePolicy(enum.StrEnum):
    """What an analysis without enough traffic to judge counts as."""

    HOLD = "hold"  # neither a pass nor a failure: the step waits for a conclusive interval
    PASS = "pass"  # counts as a pass
    ROLLBACK = "rollback"  # counts as a failure (against failureLimit)


@dataclass(frozen=True)
class Step:
    """One canary step: `weight` percent of traffic, then a pause (None waits for a promote)."""

    weight: int
    pause_seconds: float | None = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.weight <= 100:
            raise ValueError(f"step weight must be 1..100, got {self.weight}")


@dataclass(frozen=True)
class MetricLimits:
    """Absolute limits (None: not checked) and limits relative to stable over the same window."""

    max_error_ratio: float | None = None
    max_ttft_p95_seconds: float | None = None
    max_tpot_p95_seconds: float | None = None
    max_error_ratio_increase: float | None = None
    max_ttft_p95_ratio: float | None = None
    max_tpot_p95_ratio: float | None = None


@dataclass(frozen=True)
class SmokePrompt:
    """A prompt every canary pod must answer matching `expect` (a regex) within `timeout_seconds`."""

    prompt: str
    expect: str
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class AnalysisSpec:
    """How the canary is judged. Defaults follow the issue: a 10 s interval, Argo-like failureLimit."""

    interval_seconds: float = 10.0
    failure_limit: int = 1
    inconclusive: InconclusivePolicy = InconclusivePolicy.HOLD
    limits: MetricLimits = MetricLimits()
    smoke_prompts: tuple[SmokePrompt, ...] = ()
    min_requests: int = 1
    startup_budget_seconds: float = 900.0


@dataclass(frozen=True)
class RolloutSpec:
    """Everything `decide` needs from the spec: strategy, steps, analysis and the full size."""

    replicas: int = 1
    strategy: Strategy = Strategy.CANARY
    steps: tuple[Step, ...] = (
        Step(weight=25, pause_seconds=30.0),
        Step(weight=50, pause_seconds=30.0),
    )
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)


def parse_duration(text: str | float | int) -> float:
    """Seconds from "90s", "1m30s", "500ms", "2h" or a plain number (seconds)."""
    if isinstance(text, int | float):
        return float(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _optional_float(raw: Mapping[str, Any], key: str) -> float | None:
    value = raw.get(key)
    return None if value is None else float(value)


def _step(raw: Mapping[str, Any]) -> Step:
    """A step whose pause has no `duration` (`pause: {}`) waits for a manual promote (the
    issue's rule); a step without `pause` moves on as soon as it passed (Argo Rollouts' reading)."""
    if raw.get("pause") is None:
        return Step(weight=int(raw["weight"]), pause_seconds=0.0)
    duration = raw["pause"].get("duration")
    return Step(
        weight=int(raw["weight"]),
        pause_seconds=None if duration is None else parse_duration(duration),
    )


def _limits(analysis: Mapping[str, Any]) -> MetricLimits:
    absolute = analysis.get("metrics") or {}
    relative = analysis.get("relativeToStable") or {}
    return MetricLimits(
        max_error_ratio=_optional_float(absolute, "maxErrorRatio"),
        max_ttft_p95_seconds=_optional_float(absolute, "maxTTFTp95Seconds"),
        max_tpot_p95_seconds=_optional_float(absolute, "maxTPOTp95Seconds"),
        max_error_ratio_increase=_optional_float(relative, "maxErrorRatioIncrease"),
        max_ttft_p95_ratio=_optional_float(relative, "maxTTFTp95Ratio"),
        max_tpot_p95_ratio=_optional_float(relative, "maxTPOTp95Ratio"),
    )


def _analysis(raw: Mapping[str, Any], *, startup_budget: float) -> AnalysisSpec:
    defaults = AnalysisSpec()
    smoke = tuple(
        SmokePrompt(
            prompt=str(p["prompt"]),
            expect=str(p["expect"]),
            timeout_seconds=parse_duration(p.get("timeout", "30s")),
        )
        for p in raw.get("smokePrompts") or ()
    )
    return AnalysisSpec(
        interval_seconds=parse_duration(raw.get("interval", defaults.interval_seconds)),
        failure_limit=int(raw.get("failureLimit", defaults.failure_limit)),
        inconclusive=InconclusivePolicy(raw.get("inconclusive", defaults.inconclusive)),
        limits=_limits(raw),
        smoke_prompts=smoke,
        min_requests=int(raw.get("minRequests", defaults.min_requests)),
        startup_budget_seconds=startup_budget,
    )


def from_spec_dict(spec: Mapping[str, Any]) -> RolloutSpec:
    """Reads an LLMDeployment `spec` (camelCase, as the API returns it) into a RolloutSpec."""
    rollout = spec.get("rollout") or {}
    raw_steps = rollout.get("steps")
    steps = RolloutSpec().steps if not raw_steps else tuple(_step(s) for s in raw_steps)
    budget = float(spec.get("startupBudgetSeconds", AnalysisSpec().startup_budget_seconds))
    return RolloutSpec(
        replicas=int(spec.get("replicas", 1)),
        strategy=Strategy(rollout.get("strategy", Strategy.CANARY)),
        steps=steps,
        analysis=_analysis(rollout.get("analysis") or {}, startup_budget=budget),
    )
