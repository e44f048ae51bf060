"""The rollout's part of the spec: steps, analysis limits, smoke prompts, traffic routing.

Spelled as `llm_operator.spec` explains (it re-exports every public name here).
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, Self

from llm_runtime.api import contract
from pydantic import ConfigDict, Field, model_validator

from llm_operator import admission
from llm_operator.spec_base import (
    Duration,
    InconclusivePolicy,
    PositiveDuration,
    Strategy,
    _checked,
    _item,
    _Model,
    _rules,
    parse_duration,
)


class Pause(_Model):
    """A pause without a duration waits for a manual promote (rollout.llm-operator.io/promote)."""

    duration: Duration | None = Field(
        default=None, description="A duration such as 30s, 5m or 1h30m."
    )


class Step(_Model):
    """One canary step; without `pause` the rollout moves on as soon as the step passed."""

    model_config = _item("One canary step.")

    weight: int = Field(
        ge=1,
        le=100,
        description="Percent of the replicas the canary runs during this step (1 to 100).",
    )
    pause: Pause | None = Field(
        default=None,
        description="How long to stay at this step once its pods are Ready and an analysis "
        "passed. Without this field the rollout moves on at once; with a pause that has no "
        "duration (`pause: {}`) it waits for a manual promote (annotation "
        "rollout.llm-operator.io/promote).",
    )

    @property
    def pause_seconds(self) -> float | None:
        """0 without `pause` (move on once passed, Argo Rollouts' reading); None for `pause: {}`
        (wait for a manual promote); else the pause's duration in seconds."""
        if self.pause is None:
            return 0.0
        return None if self.pause.duration is None else parse_duration(self.pause.duration)


class MetricLimits(_Model):
    max_error_ratio: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Highest tolerated share of requests failed by the server (UNAVAILABLE, "
        "INTERNAL, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED...), 0 to 1.",
    )
    max_ttft_p95_seconds: float | None = Field(
        default=None,
        alias="maxTTFTp95Seconds",
        ge=0,
        description="Highest tolerated 95th percentile time to first token, in seconds.",
    )
    max_tpot_p95_seconds: float | None = Field(
        default=None,
        alias="maxTPOTp95Seconds",
        ge=0,
        description="Highest tolerated 95th percentile time per output token, in seconds.",
    )


class RelativeLimits(_Model):
    max_error_ratio_increase: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Highest tolerated canary error ratio minus the stable one (0 to 1).",
    )
    max_ttft_p95_ratio: float | None = Field(
        default=None,
        alias="maxTTFTp95Ratio",
        ge=1,
        description="Highest tolerated canary TTFT p95 divided by the stable one (e.g. 1.5).",
    )
    max_tpot_p95_ratio: float | None = Field(
        default=None,
        alias="maxTPOTp95Ratio",
        ge=1,
        description="Highest tolerated canary TPOT p95 divided by the stable one.",
    )


class SmokeProtocol(enum.StrEnum):
    """Which of the runtime's two ways in a smoke prompt takes (the request metrics' values)."""

    GRPC = contract.PROTOCOL_GRPC  # Runtime.Generate on the gRPC port (spec.service.port)
    HTTP = contract.PROTOCOL_HTTP  # POST /v1/chat/completions on the OpenAI-compatible port


class SmokePrompt(_Model):
    """A prompt every canary pod must answer matching `expect` (a regex) within `timeout`."""

    model_config = _item("One smoke test.")

    prompt: str = Field(
        min_length=1,
        max_length=4096,
        description="The user message, sent through the model's chat template (greedy).",
    )
    expect: Annotated[str, _checked(admission.regex_problem)] = Field(
        min_length=1,
        max_length=1024,
        description="A regular expression searched for in the reply (RE2 syntax: no "
        "backreferences or lookarounds), e.g. (?i)paris.",
        json_schema_extra=_rules(admission.REGEX_RULE),
    )
    timeout: PositiveDuration = Field(
        default="30s", description="The reply's latency budget, e.g. 30s (not zero)."
    )
    protocol: SmokeProtocol = Field(
        default=SmokeProtocol.GRPC,
        description="How the prompt reaches the pod. grpc (default): Runtime.Generate on the "
        "gRPC port (service.port). http: POST /v1/chat/completions on the OpenAI-compatible "
        f"HTTP port {contract.RUNTIME_HTTP_PORT} (model: model.name), which checks that this "
        "endpoint answers too.",
    )

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout)


class AnalysisSpec(_Model):
    """How the canary is judged: a 10 s window, Argo-like failureLimit, limits, smoke prompts."""

    interval: PositiveDuration = Field(
        default="10s",
        description="The analysis window (not zero): metrics and smoke prompts are evaluated this often "
        "while a canary runs. Startup failures (crash loops, restarts, OOM kills, not Ready within "
        "startupBudgetSeconds) abort at once, without waiting.",
    )
    failure_limit: int = Field(
        default=1,
        ge=0,
        le=100,
        description="Failed analyses tolerated: the canary is rolled back when failed windows "
        "exceed it (like Argo Rollouts). 1 rolls back on the second failed window, so within two "
        "intervals; 0 on the first.",
    )
    min_requests: int = Field(
        default=1,
        ge=1,
        le=1000000,
        description="Canary requests a window needs for its metric limits to be judged; fewer "
        "makes the window inconclusive (handled by `inconclusive`).",
    )
    inconclusive: InconclusivePolicy = Field(
        default=InconclusivePolicy.HOLD,
        description="What a window without enough traffic to judge counts as: hold (neither; the "
        "step waits for a conclusive window), pass, or rollback (a failure, counted against "
        "failureLimit).",
    )
    metrics: MetricLimits = Field(
        default=MetricLimits(),
        description="Absolute limits on the canary's own metrics; absent fields are not checked.",
    )
    relative_to_stable: RelativeLimits = Field(
        default=RelativeLimits(),
        description="Limits relative to the stable revision over the same window; skipped when "
        "the stable served nothing in the window.",
    )
    smoke_prompts: tuple[SmokePrompt, ...] = Field(
        default=(),
        max_length=20,
        description="Prompts the operator sends to every Ready canary pod over gRPC or HTTP "
        "(each prompt's protocol; once per pod, until it passes); a reply that errs, is late or "
        "does not match fails the window.",
    )

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)


DEFAULT_STEPS = (
    Step(weight=25, pause=Pause(duration="30s")),
    Step(weight=50, pause=Pause(duration="30s")),
)


_DEADLINE_RULE: dict[str, Any] = {
    "rule": "!has(self.analysis) || !has(self.analysis.interval) || "
    "!has(self.progressDeadlineSeconds) || "
    "duration(self.analysis.interval).getSeconds() < self.progressDeadlineSeconds",
    "message": "progressDeadlineSeconds must be longer than one analysis interval (a step "
    "needs one passed window before its deadline)",
    "fieldPath": ".progressDeadlineSeconds",
    "reason": "FieldValueInvalid",
}


class RolloutSpec(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.strategy) || self.strategy != 'Canary' || "
                    "!has(self.steps) || size(self.steps) > 0",
                    "message": "a Canary rollout needs at least one step",
                    "fieldPath": ".steps",
                    "reason": "FieldValueRequired",
                },
                _DEADLINE_RULE,
            ]
        }
    )

    strategy: Strategy = Field(
        default=Strategy.CANARY,
        description="Canary (default): the new revision runs beside the full-size stable one at "
        "each step's weight, is analysed, then promoted or rolled back. Recreate: the old pods "
        "stop before the new ones start; a new revision that fails to start brings the old one "
        "back.",
    )
    steps: tuple[Step, ...] = Field(
        default=DEFAULT_STEPS,
        max_length=20,
        description="The canary's steps, weights strictly increasing. A weight is a share of pods "
        "(no service mesh): the canary gets ceil(weight% x replicas) pods, at least one, beside "
        "the full stable; status.rollout.message states the real share. After the last step the "
        "canary is promoted.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.map(s, s.weight).isSorted() && "
                    "self.all(a, self.filter(b, b.weight == a.weight).size() == 1)",
                    "message": "step weights must be strictly increasing",
                    "reason": "FieldValueInvalid",
                }
            ]
        },
    )
    analysis: AnalysisSpec = Field(
        default=AnalysisSpec(),
        description="How the canary is judged against the stable revision.",
    )
    traffic_routing: Literal["Pods", "FrontDoor"] = Field(
        default="Pods",
        description="How a step's weight becomes traffic. Pods: both revisions' pods sit behind "
        "the Services, so the canary's share is its share of pods (per connection, as "
        "kube-proxy balances). FrontDoor: a small stateless gRPC proxy (NAME-frontdoor) takes "
        "the Services and splits every request by the weight, so a 10% step needs one canary "
        "pod and long-lived client channels still reach the canary; a request the canary "
        "refuses before its first token is retried on the stable.",
    )
    front_door_replicas: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Front door pods (trafficRouting: FrontDoor); a PodDisruptionBudget keeps "
        "all but one of them through voluntary disruptions.",
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=1,
        le=86400,
        description="How long a step may go, once its pods are Ready, without one conclusive "
        "(passed) analysis window, e.g. because no traffic reaches the canary. Past it the "
        "rollout is aborted (progressDeadlineAbort) or reported as stalled; a step paused for a "
        "manual promote is exempt. Longer than analysis.interval.",
    )
    progress_deadline_abort: bool = Field(
        default=True,
        description="true: a step past its progress deadline is rolled back with reason "
        "ProgressDeadlineExceeded, naming what was missing. false: it keeps waiting, marked "
        "stalled in status.rollout and by a RolloutStalled Event.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """The deadline rule, for the parser. The step rules stay the CRD's alone: the rollout
        core copes with any steps (its property tests walk unsorted and empty ones)."""
        if self.analysis.interval_seconds >= self.progress_deadline_seconds:
            raise ValueError(_DEADLINE_RULE["message"])
        return self
