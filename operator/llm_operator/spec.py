"""The one parser of an LLMDeployment: typed, frozen models, parsed once per tick.

Every default is written here and only here; the rollout core reads these models (durations as
seconds through the properties below) instead of parsing dicts of its own. The CRD validates and
defaults the same shape; a unit test keeps its defaults equal to these.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds from "90s", "1m30s", "500ms", "2h" or a plain number (seconds)."""
    if isinstance(text, int | float):
        return float(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


class Strategy(enum.StrEnum):
    """Canary shifts traffic step by step; Recreate replaces (for clusters that cannot surge)."""

    CANARY = "Canary"
    RECREATE = "Recreate"


class InconclusivePolicy(enum.StrEnum):
    """What an analysis without enough traffic to judge counts as."""

    HOLD = "hold"  # neither a pass nor a failure: the step waits for a conclusive interval
    PASS = "pass"  # counts as a pass
    ROLLBACK = "rollback"  # counts as a failure (against failureLimit)


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


# A Go-style duration string ("30s", "1m30s"), kept as written (the CRD's shape) and checked here.
Duration = Annotated[str, AfterValidator(_check_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )


class ModelSpec(_Model):
    name: str
    source: str
    format: Literal["auto", "hf", "gguf", "converted"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    cache_claim_name: str = ""


class ResourcesSpec(_Model):
    requests: dict[str, int | str] = Field(default_factory=dict)
    limits: dict[str, int | str] = Field(default_factory=dict)


class LimitsSpec(_Model):
    max_batch_size: int = 8
    max_waiting: int = 64
    max_input_tokens: int = 2048
    max_new_tokens: int = 512


class EnvVar(_Model):
    name: str
    value: str | None = None
    value_from: dict[str, Any] | None = None


class RuntimeSpec(_Model):
    image: str = ""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    resources: ResourcesSpec = ResourcesSpec()
    limits: LimitsSpec = LimitsSpec()
    env: tuple[EnvVar, ...] = ()
    args: tuple[str, ...] = ()


class Toleration(_Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


class SchedulingSpec(_Model):
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    affinity: dict[str, Any] | None = None
    priority_class_name: str = ""


class ServiceSpec(_Model):
    port: int = 50051


class SecuritySpec(_Model):
    tls_secret_name: str = ""
    auth_token_secret_name: str = ""


class Pause(_Model):
    """A pause without a duration waits for a manual promote (rollout.llm-operator.io/promote)."""

    duration: Duration | None = None


class Step(_Model):
    """One canary step; without `pause` the rollout moves on as soon as the step passed."""

    weight: int = Field(ge=1, le=100)
    pause: Pause | None = None

    @property
    def pause_seconds(self) -> float | None:
        """0 without `pause` (move on once passed, Argo Rollouts' reading); None for `pause: {}`
        (wait for a manual promote); else the pause's duration in seconds."""
        if self.pause is None:
            return 0.0
        return None if self.pause.duration is None else parse_duration(self.pause.duration)


class MetricLimits(_Model):
    max_error_ratio: float | None = None
    max_ttft_p95_seconds: float | None = Field(default=None, alias="maxTTFTp95Seconds")
    max_tpot_p95_seconds: float | None = Field(default=None, alias="maxTPOTp95Seconds")


class RelativeLimits(_Model):
    max_error_ratio_increase: float | None = None
    max_ttft_p95_ratio: float | None = Field(default=None, alias="maxTTFTp95Ratio")
    max_tpot_p95_ratio: float | None = Field(default=None, alias="maxTPOTp95Ratio")


class SmokePrompt(_Model):
    """A prompt every canary pod must answer matching `expect` (a regex) within `timeout`."""

    prompt: str
    expect: str
    timeout: Duration = "30s"

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout)


class AnalysisSpec(_Model):
    """How the canary is judged: a 10 s window, Argo-like failureLimit, limits, smoke prompts."""

    interval: Duration = "10s"
    failure_limit: int = 1
    min_requests: int = 1
    inconclusive: InconclusivePolicy = InconclusivePolicy.HOLD
    metrics: MetricLimits = MetricLimits()
    relative_to_stable: RelativeLimits = RelativeLimits()
    smoke_prompts: tuple[SmokePrompt, ...] = ()

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)


DEFAULT_STEPS = (
    Step(weight=25, pause=Pause(duration="30s")),
    Step(weight=50, pause=Pause(duration="30s")),
)


class RolloutSpec(_Model):
    strategy: Strategy = Strategy.CANARY
    steps: tuple[Step, ...] = DEFAULT_STEPS
    analysis: AnalysisSpec = AnalysisSpec()


class LLMDeploymentSpec(_Model):
    model: ModelSpec
    runtime: RuntimeSpec = RuntimeSpec()
    replicas: int = 1
    scheduling: SchedulingSpec = SchedulingSpec()
    startup_budget_seconds: int = 900
    drain_grace_period_seconds: int = 30
    service: ServiceSpec = ServiceSpec()
    security: SecuritySpec = SecuritySpec()
    rollout: RolloutSpec = RolloutSpec()


class Owner(_Model):
    """The identity of the custom resource, needed for ownerReferences and names."""

    name: str
    namespace: str
    uid: str
    generation: int = 0


class LLMDeployment(_Model):
    """One parsed custom resource: who it is and what it asks for."""

    owner: Owner
    spec: LLMDeploymentSpec


def parse(body: Mapping[str, Any]) -> LLMDeployment:
    """Parses a raw LLMDeployment body (as kopf or the API returns it) into typed models."""
    meta = body.get("metadata") or {}
    owner = Owner(
        name=meta["name"],
        namespace=meta.get("namespace") or "default",
        uid=meta.get("uid") or "",
        generation=int(meta.get("generation") or 0),
    )
    return LLMDeployment(owner=owner, spec=LLMDeploymentSpec.model_validate(body.get("spec") or {}))
