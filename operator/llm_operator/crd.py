"""The LLMDeployment CustomResourceDefinition, built from the pydantic models (`make crds`).

The spec's schema is `llm_operator.spec` itself: its fields' types, defaults, descriptions and
constraints. This module adds what only the CRD has (names, printer columns, subresources, the
status the operator writes) and turns pydantic's JSON Schema into a Kubernetes structural schema.
`build()` is pure, so the generator (hack/gen_crd.py) and the drift test compare the same dict.

pydantic writes JSON Schema 2020-12; the apiserver wants OpenAPI v3 with Kubernetes' rules, so:
`$ref`s are inlined (a field's own keys, e.g. its description, win over the model's); `title`s are
dropped; `X | None` is written as X (a field the object may leave out), `nullable: true` only where
a model asks for it; `default: null` is dropped; a model's default is written `{}` (the apiserver
fills it from the nested defaults, so each default is stated once); a free-form `dict[str, Any]`
loses `additionalProperties: true` (structural schemas forbid it; such fields say
`x-kubernetes-preserve-unknown-fields` instead).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any, Literal

from llm_runtime.api import contract
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from llm_operator import admission, status
from llm_operator.rollout import report, state
from llm_operator.spec import LLMDeploymentSpec

GROUP = contract.GROUP
VERSION = "v1alpha1"
KIND = "LLMDeployment"
PLURAL = "llmdeployments"
NAME = f"{PLURAL}.{GROUP}"

NAMES: dict[str, Any] = {
    "kind": KIND,
    "listKind": f"{KIND}List",
    "plural": PLURAL,
    "singular": "llmdeployment",
    "shortNames": ["llmd"],
    "categories": ["all", "llm"],
}

SUBRESOURCES: dict[str, Any] = {
    "status": {},
    "scale": {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    },
}


def _column(
    name: str, type_: str, json_path: str, description: str, *, wide: bool = False
) -> dict[str, str | int]:
    col: dict[str, str | int] = {
        "name": name,
        "type": type_,
        "jsonPath": json_path,
        "description": description,
    }
    return {**col, "priority": 1} if wide else col


# What `kubectl get llmd` shows, kept to an 80-column terminal; MODEL, REVISION and OBSERVED
# only under `-o wide` (priority 1). Age last, as every built-in resource has it.
PRINTER_COLUMNS: tuple[dict[str, str | int], ...] = (
    _column("Model", "string", ".spec.model.name", "The name clients ask for.", wide=True),
    _column("Ready", "string", ".status.ready", "Ready replicas over desired replicas."),
    _column("Phase", "string", ".status.phase", "The summary state."),
    _column(
        "Revision",
        "string",
        ".status.currentRevision",
        "The revision the spec asks for (hash of everything that defines the pods); STABLE "
        "differs from it during a rollout and after a rollback.",
        wide=True,
    ),
    # STABLE, CANARY, WEIGHT, OBSERVED (-o wide), VERDICT: the rollout core owns its columns.
    *(dict(c) for c in report.PRINTER_COLUMNS),
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)

# The status fields the rollout core writes as null when unset: the apiserver keeps a null only
# where the schema says nullable (and prunes it elsewhere), so these are declared, the rest not.
_NULLABLE: dict[str, Any] = {"nullable": True}

# The phases are the status and rollout modules' own types: the CRD's enums cannot drift from
# what the operator writes.
DeploymentPhase = status.DeploymentPhase
RolloutPhase = state.RolloutPhase


class _Schema(BaseModel):
    """Status models describe what the operator writes; nothing parses them, they exist for the
    schema (the apiserver prunes status fields the CRD does not declare)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Condition(_Schema):
    model_config = ConfigDict(json_schema_extra={"description": "One observed condition."})

    type: str = Field(
        description="Available, Progressing, Degraded, Ready (the spec's revision serves at full "
        "size), Reconciling and Stalled (kstatus), or a problem the cluster must fix "
        "(e.g. NameConflict, SecretMissing)."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str | None = Field(default=None, description="A CamelCase machine-readable cause.")
    message: str | None = Field(default=None, description="A human-readable explanation.")
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation this condition was computed for."
    )
    last_transition_time: datetime | None = Field(
        default=None, description="When the status last changed."
    )


class RolloutState(_Schema):
    phase: RolloutPhase | None = Field(
        default=None,
        description="Stable (one revision serves), Canary (the canary runs at the step's weight "
        "and is analysed), Paused (waiting for a manual promote), Promoting (the canary scales to "
        "full size), Draining (the canary is the stable; the old revision stops), Recreating "
        "(Recreate strategy: the new revision starts alone), RolledBack (the canary was removed; "
        "its revision is rejected until the spec changes or a retry is asked).",
    )
    stable_revision: str | None = Field(
        default=None,
        description="The revision serving at full size.",
        json_schema_extra=_NULLABLE,
    )
    canary_revision: str | None = Field(
        default=None,
        description="The revision being judged, if any.",
        json_schema_extra=_NULLABLE,
    )
    old_revision: str | None = Field(
        default=None,
        description="The previous stable revision while it drains after a promotion.",
        json_schema_extra=_NULLABLE,
    )
    step: int | None = Field(
        default=None,
        description="The index of the current step in spec.rollout.steps (0 is the first).",
    )
    weight: int | None = Field(
        default=None,
        description="The current step's weight in percent (0 when no canary runs).",
    )
    message: str | None = Field(
        default=None,
        description='How the weight maps to pods, e.g. "weight 10% -> 1 canary pod beside 2 '
        'stable (33% of pods)".',
    )
    step_started_at: str | None = Field(
        default=None, description="When the current step began.", json_schema_extra=_NULLABLE
    )
    step_ready_at: str | None = Field(
        default=None,
        description="When the current step's canary pods were first all Ready.",
        json_schema_extra=_NULLABLE,
    )
    step_passes: int | None = Field(
        default=None, description="Passed analyses since the current step became Ready."
    )
    failures: int | None = Field(
        default=None,
        description="Failed analyses of this canary (compared with analysis.failureLimit).",
    )
    inconclusives: int | None = Field(
        default=None,
        description="Inconclusive analyses of this canary (too little traffic to judge).",
    )
    last_analysis_at: str | None = Field(
        default=None,
        description="When the last analysis window closed.",
        json_schema_extra=_NULLABLE,
    )
    last_verdict: str | None = Field(
        default=None,
        description="The last analysis verdict (Passed, Failed, Inconclusive) or transition.",
    )
    last_message: str | None = Field(
        default=None, description="What the last analysis saw, with values and limits."
    )
    smoked_pods: list[str] | None = Field(
        default=None,
        description="Canary pods that already answered every smoke prompt correctly.",
        json_schema_extra={"items": {"type": "string", "description": "A pod name."}},
    )
    rejected_revision: str | None = Field(
        default=None,
        description="A revision rolled back and not tried again until the spec changes or a retry.",
        json_schema_extra=_NULLABLE,
    )
    observed_share: int | None = Field(
        default=None,
        description="The canary's measured share of the requests both revisions' pods served in "
        "the last analysis window, in percent (their own request counters), to read next to "
        "weight; null before a window with traffic.",
        json_schema_extra=_NULLABLE,
    )
    observed_requests: int | None = Field(
        default=None, description="How many requests the last analysis window counted in all."
    )
    stalled: bool | None = Field(
        default=None,
        description="The step passed its progress deadline without a passed analysis and "
        "progressDeadlineAbort is false: it waits, and a RolloutStalled Event said why.",
    )
    handled_commands: dict[str, str] | None = Field(
        default=None,
        description="The last value of each rollout.llm-operator.io/* annotation acted on.",
        json_schema_extra={
            "additionalProperties": {
                "type": "string",
                "description": "The annotation value (token) handled.",
            }
        },
    )


class Rollback(_Schema):
    from_: str | None = Field(default=None, alias="from", description="The rejected revision.")
    to: str | None = Field(default=None, description="The revision serving again.")
    reason: str | None = Field(
        default=None,
        description="The failed check, e.g. CrashLoopBackOff, SmokePromptMismatch, "
        "TTFTp95AboveLimit, ManualAbort.",
    )
    message: str | None = Field(default=None, description="What the check saw, with the values.")
    at: str | None = Field(default=None, description="When the rollback was decided.")
    signal_at: str | None = Field(
        default=None,
        description="When the failing signal itself happened (e.g. the first crash), if known.",
    )


class StableTemplate(_Schema):
    """Kept so a stable Deployment deleted mid-canary can be rebuilt (llm_operator.stablespec)."""

    revision: str | None = Field(default=None, description="The stable revision it renders.")
    default_image: str | None = Field(
        default=None, description="The operator's default runtime image when it was recorded."
    )
    spec: str | None = Field(
        default=None,
        description="The spec as written when its revision was the stable one (JSON).",
    )


class LLMDeploymentStatus(_Schema):
    phase: DeploymentPhase | None = Field(
        default=None,
        description="Pending (nothing scheduled yet), Fetching (the init container is fetching "
        "the model), Loading (the runtime is loading the model, not ready yet), "
        "Ready (all replicas serve the current revision), Progressing (a new revision or replica "
        "count is rolling out), Degraded (replicas fail, see conditions), Failed (the operator "
        "cannot create the children; see lastError).",
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Available, Progressing and Degraded (the Deployment convention), Ready "
        "(`kubectl wait --for=condition=Ready`), Reconciling and Stalled (kstatus), and one per "
        "problem the cluster must fix.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the status describes."
    )
    replicas: int | None = Field(
        default=None, description="Runtime pods that exist (the scale subresource reads this)."
    )
    ready_replicas: int | None = Field(
        default=None, description="Runtime pods whose readiness probe passes."
    )
    ready: str | None = Field(
        default=None, description="readyReplicas/desired replicas, for `kubectl get`."
    )
    current_revision: str | None = Field(
        default=None,
        description="Hash of everything that defines the pods; pods carry it as a label.",
    )
    selector: str | None = Field(
        default=None,
        description="The label selector of the pods, for the scale subresource and HPAs.",
    )
    endpoint: str | None = Field(
        default=None,
        description="The in-cluster gRPC address (host:port) of the ClusterIP Service.",
    )
    last_error: str | None = Field(
        default=None,
        description="The most recent error the operator or a replica reported; empty when healthy.",
    )
    rollout: RolloutState | None = Field(
        default=None,
        description="Where the rollout of a new revision stands. All rollout state lives here, "
        "so an operator restarted mid-rollout continues where it was.",
    )
    rollback: Rollback | None = Field(
        default=None,
        description="The last rollback, kept as history after the spec moves on.",
        json_schema_extra=_NULLABLE,
    )
    stable_template: StableTemplate | None = Field(
        default=None,
        description="The stable revision's spec, so a stable Deployment deleted during a canary "
        "is rebuilt as it was, not from the spec (which then describes the canary).",
        json_schema_extra=_NULLABLE,
    )


# A CRD may restrict metadata.name and generateName, nothing else (no description either, so
# this model has no docstring): the rest of metadata is the apiserver's.
class Metadata(_Schema):
    name: str | None = Field(
        default=None,
        description="The LLMDeployment's name: every child's name is built from it "
        f"(NAME-<revision>, NAME-headless, NAME-frontdoor), so it is a DNS-1035 label of at most "
        f"{admission.MAX_NAME_LENGTH} characters.",
        json_schema_extra={"x-kubernetes-validations": [dict(r) for r in admission.NAME_RULES]},
    )


class LLMDeploymentResource(_Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "description": "LLMDeployment serves one language model over gRPC: the operator "
            "fetches the model into a volume, runs `llm-runtime serve` replicas behind a ClusterIP "
            "and a headless Service, and reports whether the model can really answer."
        }
    )

    api_version: str | None = Field(
        default=None,
        description=f"The versioned schema of this object ({GROUP}/{VERSION}).",
    )
    kind: str | None = Field(
        default=None, description=f"The REST resource this object represents ({KIND})."
    )
    metadata: Metadata | None = None
    spec: LLMDeploymentSpec = Field(
        description="What to serve, with what runtime, how many replicas and how to roll out "
        "changes."
    )
    status: LLMDeploymentStatus | None = Field(
        default=None, description="What the operator observed; written only by the operator."
    )


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One pydantic JSON Schema node as a Kubernetes structural schema node (see the module doc)."""
    out = dict(node)
    while True:
        if "$ref" in out:
            out = {**defs[_ref_name(out.pop("$ref"))], **out}
        elif "anyOf" in out and {"type": "null"} in out["anyOf"]:
            branches = [b for b in out.pop("anyOf") if b != {"type": "null"}]
            if len(branches) == 1:
                out = {**branches[0], **out}
            else:
                out["anyOf"] = branches
        else:
            break
    out.pop("title", None)
    if "default" in out and out["default"] is None:
        del out["default"]
    if out.get("additionalProperties") is True:
        del out["additionalProperties"]
    if "properties" in out and isinstance(out.get("default"), dict):
        out["default"] = {}
    if "properties" in out:
        out["properties"] = {k: _structural(v, defs) for k, v in out["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _structural(out[key], defs)
    if "anyOf" in out:
        out["anyOf"] = [_structural(b, defs) for b in out["anyOf"]]
    if "x-kubernetes-validations" in out:
        out["x-kubernetes-validations"] = [
            _ordered(rule, _RULE_KEY_ORDER) for rule in out["x-kubernetes-validations"]
        ]
    return _ordered(out, _KEY_ORDER)


# The order keys are written in, so the YAML reads like a hand-written CRD: what a field is first,
# its children last.
_KEY_ORDER = (
    "type",
    "format",
    "nullable",
    "description",
    "required",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "maxItems",
    "enum",
    "default",
    "anyOf",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
    "properties",
    "additionalProperties",
    "items",
)


# pydantic sorts keys alphabetically; a CEL rule reads best rule first.
_RULE_KEY_ORDER = ("rule", "message", "messageExpression", "fieldPath", "reason")


def _ordered(node: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    """`node` with the keys in `order` first, in that order, then any others alphabetically."""
    rank = {k: i for i, k in enumerate(order)}
    return dict(sorted(node.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def openapi_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the resource: the spec from `llm_operator.spec`, the status here."""
    raw = LLMDeploymentResource.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(raw, defs)


def build() -> dict[str, Any]:
    """The whole CustomResourceDefinition, as the YAML files under crds/ hold it (a fresh copy: a
    caller may change it without changing the module's constants)."""
    return copy.deepcopy(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": NAME, "labels": {"app.kubernetes.io/part-of": "llm-operator"}},
            "spec": {
                "group": GROUP,
                "scope": "Namespaced",
                "names": NAMES,
                "versions": [
                    {
                        "name": VERSION,
                        "served": True,
                        "storage": True,
                        "subresources": SUBRESOURCES,
                        "additionalPrinterColumns": [dict(c) for c in PRINTER_COLUMNS],
                        "schema": {"openAPIV3Schema": openapi_schema()},
                    }
                ],
            },
        }
    )
