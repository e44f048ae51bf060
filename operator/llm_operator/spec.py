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
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Self, TypeVar

import pydantic
from llm_runtime.api import contract
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from llm_operator import admission, podfields

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# What the CRD admits as a duration (whole numbers only).
DURATION_PATTERN = "^([0-9]+(ms|s|m|h))+$"


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
Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    Field(json_schema_extra={"pattern": DURATION_PATTERN, "maxLength": 32}),
]

_T = TypeVar("_T")


def _checked(problem: Callable[[_T], str | None]) -> AfterValidator:
    """A validator raising what `problem` (one of admission's checks) finds: the Python half of
    a CEL rule, so the parser refuses what the apiserver refuses."""

    def check(value: _T) -> _T:
        found = problem(value)
        if found is not None:
            raise ValueError(found)
        return value

    return AfterValidator(check)


def _raise(problem: str | None) -> None:
    if problem is not None:
        raise ValueError(problem)


def _rules(*rules: Mapping[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": [dict(r) for r in rules]}


def _name_of(what: str) -> tuple[AfterValidator, Any]:
    """A DNS-subdomain name of some object (or "" for none), checked both sides."""
    check = functools.partial(admission.subdomain_problem, what=what)
    return _checked(check), Field(json_schema_extra=_rules(admission.subdomain_rule(what)))


ClaimName = Annotated[str, *_name_of("PersistentVolumeClaim")]
SecretName = Annotated[str, *_name_of("Secret")]
PriorityClassName = Annotated[str, *_name_of("PriorityClass")]

# A duration that must not be zero (a timeout, an analysis window).
PositiveDuration = Annotated[
    Duration,
    _checked(lambda v: admission.positive_duration_problem(parse_duration(v))),
    Field(json_schema_extra=_rules(admission.POSITIVE_DURATION_RULE)),
]

# A Kubernetes resource quantity: the apiserver keeps 1 an integer and "500m" a string.
_INT_OR_STRING: dict[str, Any] = {"x-kubernetes-int-or-string": True}
_PRESERVE_UNKNOWN: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


def _item(description: str, *rules: Mapping[str, str]) -> ConfigDict:
    """The model_config of a list's item: its CRD description (the list's field has its own)
    and its CEL rules, if any."""
    extra: dict[str, Any] = {"description": description, **(_rules(*rules) if rules else {})}
    return ConfigDict(json_schema_extra=extra)


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )


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
        "the node), `pvc://claim/path/in/claim` (a PersistentVolumeClaim in the same namespace, "
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
        description="Prompts the operator sends over gRPC to every Ready canary pod (once per "
        "pod, until it passes); a reply that errs, is late or does not match fails the window.",
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


# The operator reads no Secrets (least privilege, docs/rbac.md), so it cannot hold the TLS roots
# or the token a protected runtime asks of a smoke prompt: refused at apply rather than failing
# every rollout with SmokePromptError.
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
