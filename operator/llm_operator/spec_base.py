"""The spec's building blocks: durations, the policy enums and the frozen camelCase base model.

Split from `llm_operator.spec` (which re-exports the public names) so the rollout's models
(`spec_rollout`) and the pod's (`spec`) share them without importing each other.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from llm_operator import admission

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
