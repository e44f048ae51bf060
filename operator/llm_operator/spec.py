"""Typed, frozen views of an LLMDeployment, parsed once per handler call.

The CRD (crds/llmdeployments.llm-operator.io.yaml) validates and defaults; these models mirror it so
handlers work with attributes instead of `.get()` chains. The defaults repeat the CRD's so that a
spec read before defaulting (unit tests, old objects) means the same thing; a unit test keeps the two
in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


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

    duration: str | None = None


class Step(_Model):
    """One canary step; without `pause` the rollout moves on as soon as the step passed."""

    weight: int
    pause: Pause | None = None


class MetricLimits(_Model):
    max_error_ratio: float | None = None
    max_ttft_p95_seconds: float | None = Field(default=None, alias="maxTTFTp95Seconds")
    max_tpot_p95_seconds: float | None = Field(default=None, alias="maxTPOTp95Seconds")


class RelativeLimits(_Model):
    max_error_ratio_increase: float | None = None
    max_ttft_p95_ratio: float | None = Field(default=None, alias="maxTTFTp95Ratio")
    max_tpot_p95_ratio: float | None = Field(default=None, alias="maxTPOTp95Ratio")


class SmokePrompt(_Model):
    prompt: str
    expect: str
    timeout: str = "30s"


class AnalysisSpec(_Model):
    interval: str = "10s"
    failure_limit: int = 1
    min_requests: int = 1
    inconclusive: Literal["hold", "pass", "rollback"] = "hold"
    metrics: MetricLimits = MetricLimits()
    relative_to_stable: RelativeLimits = RelativeLimits()
    smoke_prompts: tuple[SmokePrompt, ...] = ()


DEFAULT_STEPS = (
    Step(weight=25, pause=Pause(duration="30s")),
    Step(weight=50, pause=Pause(duration="30s")),
)


class RolloutSpec(_Model):
    strategy: Literal["Canary", "Recreate"] = "Canary"
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
