"""The one parser of an LLMDeployment, and the one source of its CRD schema.

Typed, frozen models, parsed once per tick; the rollout core reads them (durations as seconds
through the properties below) instead of parsing dicts of its own. Every default, description and
constraint is written here and only here: `llm_operator.crd` turns these models into the CRD's
openAPIV3Schema (`make crds`), so what the apiserver validates and defaults cannot drift from what
the operator parses.

How the CRD is spelled here:
- `description=` on a field is what `kubectl explain` shows; a model's docstring is for readers of
  this code. An object that is a list's item gets its description from `model_config`.
- `= value` puts `default: value` in the CRD; `default_factory=` keeps the default out of the CRD
  (the apiserver then stores nothing), and a model default is written as `default: {}`, which the
  apiserver fills from the model's own fields' defaults.
- `ge`/`le`/`min_length`/`max_length`/`pattern` are enforced here too (the apiserver already
  refused anything else); `json_schema_extra` carries what is the apiserver's alone: CEL rules
  (`x-kubernetes-validations`), `x-kubernetes-*` markers, and the duration pattern (the parser
  keeps reading "1.5s" for callers that pass it).

The rollout's models live in `spec_rollout`, the shared primitives in `spec_base`; both are
re-exported here, so callers keep writing `spec.AnalysisSpec` or `spec.parse_duration`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

import pydantic
from llm_runtime.api import contract
from pydantic import AfterValidator, ConfigDict, Field, model_validator

from llm_operator import admission, podfields
from llm_operator.spec_base import (
    _INT_OR_STRING,
    _PRESERVE_UNKNOWN,
    DURATION_PATTERN,
    ClaimName,
    Duration,
    InconclusivePolicy,
    PriorityClassName,
    SecretName,
    Strategy,
    _checked,
    _item,
    _Model,
    _raise,
    _rules,
    parse_duration,
)
from llm_operator.spec_rollout import (
    DEFAULT_STEPS,
    AnalysisSpec,
    MetricLimits,
    Pause,
    RelativeLimits,
    RolloutSpec,
    SmokePrompt,
    SmokeProtocol,
    Step,
)

__all__ = [
    "DEFAULT_STEPS",
    "DURATION_PATTERN",
    "AnalysisSpec",
    "Duration",
    "EnvVar",
    "InconclusivePolicy",
    "InvalidResourceError",
    "LLMDeployment",
    "LLMDeploymentSpec",
    "LimitsSpec",
    "MetricLimits",
    "ModelSpec",
    "Owner",
    "Pause",
    "RelativeLimits",
    "ResourcesSpec",
    "RolloutSpec",
    "RuntimeSpec",
    "SchedulingSpec",
    "SecuritySpec",
    "ServiceSpec",
    "SmokePrompt",
    "SmokeProtocol",
    "Step",
    "Strategy",
    "Toleration",
    "parse",
    "parse_duration",
]


class ModelSpec(_Model):
    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$",
        description="The served model name: clients ask for it, and metrics carry it as the "
        "`model` label. Lower-case letters, digits, '.', '_' and '-'.",
    )
    source: Annotated[str, _checked(admission.source_problem)] = Field(
        min_length=1,
        max_length=1024,
        description="Where the weights come from: `file:///abs/path` or `/abs/path` (a path on "
        "the node, mounted read-only as a hostPath: a .gguf file, or a folder for the other "
        "formats; Pod Security's baseline level refuses hostPath, use pvc:// there), "
        "`pvc://claim/path/in/claim` (a PersistentVolumeClaim in the same namespace, "
        "mounted read-only), `hf://org/name@revision` (the Hugging Face Hub, revision pinned) or "
        "`builtin://smollm2-135m-instruct` (the model packaged with the runtime image). An hf:// "
        "revision is a commit (40 hex digits), optionally followed by one /file.gguf.",
        json_schema_extra=_rules(*admission.SOURCE_RULES),
    )
    format: Literal["auto", "hf", "gguf", "converted"] = Field(
        default="auto",
        description="The weight format: `auto` detects it from the files, `hf` is a transformers "
        "folder (safetensors), `gguf` a single GGUF file (dequantised on load), `converted` a "
        "folder written by the runtime's own converter.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="The dtype to compute in. `auto` lets the runtime choose (bfloat16 where the "
        "CPU or GPU supports it).",
    )
    cache_claim_name: ClaimName = Field(
        default="",
        max_length=253,
        description="A PersistentVolumeClaim to keep fetched weights in, shared across restarts "
        "and revisions. Empty means an emptyDir per pod (the model is fetched again by every new "
        "pod).",
    )


# maxLength bounds the CEL rules' cost (a quantity is a few characters).
_QUANTITY: dict[str, Any] = {
    **_INT_OR_STRING,
    "maxLength": 64,
    **_rules(*podfields.QUANTITY_RULES),
}
_Request = Annotated[
    int | str, Field(description="A quantity such as 500m, 2Gi or 1.", json_schema_extra=_QUANTITY)
]
_Limit = Annotated[
    int | str,
    Field(
        description="A quantity such as 2, 4Gi or 1 (for nvidia.com/gpu).",
        json_schema_extra=_QUANTITY,
    ),
]
_AMOUNTS = _rules(*podfields.AMOUNTS_RULES)


class ResourcesSpec(_Model):
    model_config = ConfigDict(json_schema_extra=_rules(*podfields.RESOURCES_RULES))

    requests: dict[str, _Request] = Field(
        default_factory=dict,
        max_length=8,
        description="The minimum resources the scheduler reserves. An extended resource "
        "(nvidia.com/gpu) needs the same value in limits.",
        json_schema_extra=_AMOUNTS,
    )
    limits: dict[str, _Limit] = Field(
        default_factory=dict,
        max_length=8,
        description="The most the container may use; accelerators go here (whole numbers).",
        json_schema_extra=_AMOUNTS,
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _raise(podfields.amounts_problem(self.requests) or podfields.amounts_problem(self.limits))
        _raise(podfields.requests_problem(self.requests, self.limits))
        return self


class LimitsSpec(_Model):
    # has(): the apiserver checks the `{}` default before the nested defaults apply.
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.maxInputTokens) || !has(self.maxNewTokens) || "
                    "self.maxInputTokens + self.maxNewTokens <= 131072",
                    "message": "maxInputTokens + maxNewTokens must not exceed 131072 tokens",
                    "fieldPath": ".maxNewTokens",
                    "reason": "FieldValueInvalid",
                }
            ]
        }
    )

    max_batch_size: int = Field(
        default=8, ge=1, le=256, description="Requests decoded together in one step."
    )
    max_waiting: int = Field(
        default=64,
        ge=0,
        le=10000,
        description="Requests queued beyond the batch before new ones are refused with "
        "RESOURCE_EXHAUSTED.",
    )
    max_input_tokens: int = Field(
        default=2048, ge=1, le=131072, description="The longest prompt accepted, in tokens."
    )
    max_new_tokens: int = Field(
        default=512, ge=1, le=32768, description="The most tokens one request may generate."
    )


class EnvVar(_Model):
    model_config = _item("One environment variable.", *admission.ENV_RULES)

    name: Annotated[str, _checked(admission.env_name_problem)] = Field(
        min_length=1,
        max_length=256,
        pattern=admission.ENV_NAME,
        description="The variable's name: letters, digits, '_', '-' and '.', not starting with a "
        "digit. Not one the operator sets (HOME, HF_HOME, LLM_MODEL_*, the LLM_RUNTIME_* "
        "settings it derives from the spec); other LLM_RUNTIME_* names must be settings of "
        "llm-runtime serve.",
    )
    value: str | None = Field(default=None, description="A literal value.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        min_length=1,
        max_length=1,
        description="One source for the value (secretKeyRef, configMapKeyRef, fieldRef, "
        "resourceFieldRef), as in a Pod's EnvVar; not together with value.",
        json_schema_extra=_PRESERVE_UNKNOWN,
    )

    @model_validator(mode="after")
    def _one_value(self) -> Self:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env {self.name}: set either value or valueFrom, not both")
        return self


class RuntimeSpec(_Model):
    model_config = ConfigDict(json_schema_extra=_rules(*podfields.IMAGE_RULES))

    image: str = Field(
        default="",
        max_length=512,
        pattern=f"^$|{podfields.IMAGE}",
        description="The runtime image; empty means the operator's default (its "
        "LLM_OPERATOR_RUNTIME_IMAGE setting). With imagePullPolicy IfNotPresent it must be "
        "pinned: a tag other than latest, or a digest.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="When the kubelet pulls the image."
    )
    resources: ResourcesSpec = Field(
        default=ResourcesSpec(),
        description="CPU, memory and accelerator requests and limits of the runtime container, "
        "for example `limits: {nvidia.com/gpu: 1}`.",
    )
    limits: LimitsSpec = Field(
        default=LimitsSpec(),
        description="Admission and batching limits the runtime enforces per replica.",
    )
    env: tuple[EnvVar, ...] = Field(
        default_factory=tuple,
        max_length=64,
        description="Extra environment variables for the runtime container.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    args: tuple[
        Annotated[
            str,
            _checked(admission.arg_problem),
            Field(
                max_length=1024,
                description="One argument.",
                json_schema_extra=_rules(*admission.ARG_RULES),
            ),
        ],
        ...,
    ] = Field(
        default_factory=tuple,
        max_length=64,
        description="Extra command-line arguments appended to `llm-runtime serve`: flags of the "
        "settings the spec does not cover (" + ", ".join(admission.USER_FLAGS) + "), as "
        "`--flag value` or `--flag=value`. Flags the operator sets from the spec (ports, model, "
        "limits, TLS, auth) are refused.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _raise(podfields.image_problem(self.image, self.image_pull_policy))
        names = [e.name for e in self.env]
        if len(set(names)) != len(names):
            raise ValueError("env names must be unique")
        return self


class Toleration(_Model):
    model_config = _item("One toleration, as in a Pod spec.", *podfields.TOLERATION_RULES)

    key: str | None = Field(
        default=None,
        max_length=317,
        pattern=f"^$|{admission.QUALIFIED_NAME}",
        description="The taint key; empty with operator Exists matches all taints.",
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal."
    )
    value: str | None = Field(
        default=None,
        max_length=63,
        pattern=admission.LABEL_VALUE,
        description="The taint value when operator is Equal (empty with Exists).",
    )
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated (effect NoExecute only)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _raise(
            podfields.toleration_problem(
                key=self.key,
                operator=self.operator,
                value=self.value,
                effect=self.effect,
                seconds=self.toleration_seconds,
            )
        )
        return self


def _label_keys(selector: dict[str, str]) -> dict[str, str]:
    for key in selector:
        _raise(podfields.label_key_problem(key))
    return selector


_LabelValue = Annotated[
    str,
    Field(max_length=63, pattern=admission.LABEL_VALUE, description="The label's required value."),
]


class SchedulingSpec(_Model):
    node_selector: Annotated[dict[str, _LabelValue], AfterValidator(_label_keys)] = Field(
        default_factory=dict,
        max_length=32,
        description="Node labels a node must carry to run a replica (label keys and values).",
        json_schema_extra=_rules(podfields.NODE_SELECTOR_RULE),
    )
    tolerations: tuple[Toleration, ...] = Field(
        default_factory=tuple,
        max_length=32,
        description="Taints the replicas tolerate (for example GPU node taints).",
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="Node and pod (anti-)affinity, as in a Pod spec.",
        json_schema_extra=_PRESERVE_UNKNOWN,
    )
    priority_class_name: PriorityClassName = Field(
        default="",
        max_length=253,
        description="The PriorityClass of the replicas; empty means the cluster default.",
    )


class ServiceSpec(_Model):
    port: Annotated[int, _checked(admission.port_problem)] = Field(
        default=contract.RUNTIME_GRPC_PORT,
        ge=1,
        le=65535,
        description="The gRPC port of the Services (and of the container); not one the runtime "
        f"already uses ({contract.RUNTIME_METRICS_PORT} metrics, {contract.RUNTIME_HEALTH_PORT} "
        "health).",
        json_schema_extra=_rules(admission.PORT_RULE),
    )
    max_connection_age_seconds: int = Field(
        default=30,
        ge=0,
        le=86400,
        description="The runtime closes every client connection this long after it opened "
        "(gRPC GOAWAY, then the client reconnects), so long-lived channels re-resolve and "
        "reach new pods, a canary among them; 0 keeps connections for ever.",
    )
    max_connection_age_grace_seconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="How long calls still running on an aged connection may go on; a grace "
        "shorter than the longest generation cuts it.",
    )


class SecuritySpec(_Model):
    tls_secret_name: SecretName = Field(
        default="",
        max_length=253,
        description="A kubernetes.io/tls Secret (tls.crt, tls.key) the runtime serves gRPC with; "
        "empty means plaintext.",
    )
    auth_token_secret_name: SecretName = Field(
        default="",
        max_length=253,
        description="A Secret whose `token` key holds the bearer token clients must send; empty "
        "means no authentication.",
    )


# The operator reads no Secrets (least privilege, docs/rbac.md), so it cannot hold the TLS roots
# or the token a protected runtime asks of a smoke prompt: refused at apply rather than failing
# every rollout with SmokePromptError. It holds for both protocols of a smoke prompt: the HTTP port
# serves the gRPC port's certificate and asks for the same token.
_SMOKE_NEEDS_NO_SECRET_RULE: dict[str, Any] = {
    "rule": "!has(self.rollout) || !has(self.rollout.analysis) || "
    "!has(self.rollout.analysis.smokePrompts) || size(self.rollout.analysis.smokePrompts) == 0 "
    "|| !has(self.security) || ((!has(self.security.tlsSecretName) || "
    "self.security.tlsSecretName == '') && (!has(self.security.authTokenSecretName) || "
    "self.security.authTokenSecretName == ''))",
    "message": "smoke prompts cannot reach a runtime with security.tlsSecretName or "
    "security.authTokenSecretName: the operator reads no Secrets, so it has neither the TLS "
    "roots nor the token; judge such a canary by its metrics (analysis.metrics) instead",
    "fieldPath": ".rollout.analysis.smokePrompts",
    "reason": "FieldValueForbidden",
}


class LLMDeploymentSpec(_Model):
    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_SMOKE_NEEDS_NO_SECRET_RULE]}
    )

    model: ModelSpec = Field(description="The model to serve and where its weights come from.")
    runtime: RuntimeSpec = Field(
        default=RuntimeSpec(),
        description="The inference runtime container and its serving limits.",
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="How many runtime pods to run. The scale subresource points here, so "
        "`kubectl scale` and a HorizontalPodAutoscaler can change it.",
    )
    scheduling: SchedulingSpec = Field(
        default=SchedulingSpec(), description="Where runtime pods may run."
    )
    startup_budget_seconds: int = Field(
        default=900,
        ge=10,
        le=86400,
        description="How long a replica may take to fetch and load the model before the startup "
        "probe gives up and the container is restarted.",
    )
    drain_grace_period_seconds: int = Field(
        default=30,
        ge=0,
        le=3600,
        description="How long a stopping replica keeps finishing in-flight requests after it stops "
        "accepting new ones.",
    )
    service: ServiceSpec = Field(default=ServiceSpec(), description="How clients reach the model.")
    security: SecuritySpec = Field(
        default=SecuritySpec(), description="Transport security and client authentication."
    )
    rollout: RolloutSpec = Field(
        default=RolloutSpec(),
        description="How a change of anything that defines the pods (model, image, args, "
        "resources, env...) reaches the replicas. Canary runs the new revision beside the stable "
        "one, judges it and promotes or rolls it back on its own; Recreate replaces the pods (for "
        "clusters that cannot run both revisions at once, e.g. GPU-bound).",
    )

    @model_validator(mode="after")
    def _smoke_needs_no_secret(self) -> Self:
        """The CRD's smoke-prompt rule, for the parser."""
        sec = self.security
        if self.rollout.analysis.smoke_prompts and (
            sec.tls_secret_name or sec.auth_token_secret_name
        ):
            raise ValueError(str(_SMOKE_NEEDS_NO_SECRET_RULE["message"]))
        return self


class Owner(_Model):
    """The identity of the custom resource, needed for ownerReferences and names."""

    name: Annotated[str, _checked(admission.name_problem)]
    namespace: str
    uid: str
    generation: int = 0


class LLMDeployment(_Model):
    """One parsed custom resource: who it is and what it asks for."""

    owner: Owner
    spec: LLMDeploymentSpec


class InvalidResourceError(ValueError):
    """The body is not an LLMDeployment the operator can act on: no metadata.name, or a field
    the CRD would have refused (an object stored before a stricter CRD, or one not admitted
    through it). The message names the fields; a pydantic error, if any, is the cause."""


def parse(body: Mapping[str, Any]) -> LLMDeployment:
    """Parses a raw LLMDeployment body (as kopf or the API returns it) into typed models;
    InvalidResourceError for anything else."""
    meta = body.get("metadata") or {}
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
        raise InvalidResourceError("metadata.name: a string is required")
    try:
        owner = Owner(
            name=meta["name"],
            namespace=meta.get("namespace") or "default",
            uid=meta.get("uid") or "",
            generation=meta.get("generation") or 0,
        )
        return LLMDeployment(
            owner=owner, spec=LLMDeploymentSpec.model_validate(body.get("spec") or {})
        )
    except pydantic.ValidationError as e:
        raise InvalidResourceError(str(e)) from e
