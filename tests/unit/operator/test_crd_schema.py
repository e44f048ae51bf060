"""The CRD, as committed (generated from the spec models by `make crds`): it must document every
field, mirror the operator's spec models' defaults, and expose the columns and subresources users
rely on. These read the YAML the apiserver gets, so they check the generator's output too."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_operator import spec, spec_base
from llm_operator.rollout import report, state

pytestmark = pytest.mark.unit

CRD_PATH = Path(__file__).resolve().parents[3] / "crds" / "llmdeployments.llm-operator.io.yaml"


def _crd() -> dict[str, Any]:
    return dict(yaml.safe_load(CRD_PATH.read_text()))


def _version() -> dict[str, Any]:
    (version,) = _crd()["spec"]["versions"]
    return dict(version)


def _schema() -> dict[str, Any]:
    return dict(_version()["schema"]["openAPIV3Schema"])


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, child in (node.get("properties") or {}).items():
        yield f"{path}.{name}", child
        yield from _walk(child, f"{path}.{name}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")


def test_every_field_has_a_description_so_kubectl_explain_reads_well() -> None:
    undocumented = [
        path
        for path, node in _walk(_schema(), "")
        if path != ".metadata" and not node.get("description")
    ]
    assert undocumented == []


def test_names_group_and_short_name() -> None:
    crd = _crd()["spec"]
    assert crd["group"] == "llm-operator.io"
    assert crd["names"]["kind"] == "LLMDeployment"
    assert crd["names"]["plural"] == "llmdeployments"
    assert "llmd" in crd["names"]["shortNames"]
    assert _version()["name"] == "v1alpha1"


def test_status_and_scale_subresources_point_at_real_fields() -> None:
    sub = _version()["subresources"]
    assert "status" in sub
    assert sub["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    status_fields = _schema()["properties"]["status"]["properties"]
    assert {"replicas", "selector", "readyReplicas", "phase", "conditions"} <= set(status_fields)


def test_printer_columns_show_model_ready_phase_and_the_rollout() -> None:
    columns = [(c["name"], c["jsonPath"]) for c in _version()["additionalPrinterColumns"]]
    assert columns == [
        ("Model", ".spec.model.name"),
        ("Ready", ".status.ready"),
        ("Phase", ".status.phase"),
        ("Revision", ".status.currentRevision"),
        ("Stable", ".status.rollout.stableRevision"),
        ("Canary", ".status.rollout.canaryRevision"),
        ("Weight", ".status.rollout.weight"),
        ("Observed", ".status.rollout.observedShare"),
        ("Verdict", ".status.rollout.lastVerdict"),
        ("Age", ".metadata.creationTimestamp"),
    ]
    wide_only = {c["name"] for c in _version()["additionalPrinterColumns"] if c.get("priority")}
    # The default table fits 80 columns; the model, the spec's revision and the measured share
    # (beside WEIGHT) come with -o wide.
    assert wide_only == {"Model", "Revision", "Observed"}


def test_rollout_printer_columns_match_the_rollout_core() -> None:
    by_name = {c["name"]: c for c in _version()["additionalPrinterColumns"]}
    for column in report.PRINTER_COLUMNS:
        assert by_name[column["name"]]["jsonPath"] == column["jsonPath"]


def test_status_declares_every_rollout_field_the_core_writes() -> None:
    """The API server prunes undeclared status fields; the rollout state must survive."""
    status = _schema()["properties"]["status"]["properties"]
    written = state.to_status(state.RolloutStatus())
    assert set(written["rollout"]) <= set(status["rollout"]["properties"])
    rollback = state.Rollback("a", "b", "R", "m", datetime.now(UTC), signal_at=datetime.now(UTC))
    assert set(rollback.to_dict()) <= set(status["rollback"]["properties"])


def _defaults(node: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver's defaulting produces for an object given as {}."""
    out: dict[str, Any] = {}
    for name, child in (node.get("properties") or {}).items():
        if "default" in child:
            value = child["default"]
            out[name] = _defaults(child) if value == {} and child.get("properties") else value
    return out


def test_pydantic_defaults_match_the_crd_defaults() -> None:
    """An object read before defaulting must mean the same as after: the models repeat the
    CRD's defaults, and this fails when the two drift apart."""
    spec_schema = _schema()["properties"]["spec"]
    crd_defaults = _defaults(spec_schema)
    crd_defaults["model"] = {
        "name": "m",
        "source": "builtin://x",
        **_defaults(spec_schema["properties"]["model"]),
    }
    from_crd = spec.LLMDeploymentSpec.model_validate(crd_defaults)
    from_models = spec.LLMDeploymentSpec.model_validate(
        {"model": {"name": "m", "source": "builtin://x"}}
    )
    assert from_crd == from_models


def test_every_spec_field_in_the_models_exists_in_the_crd() -> None:
    crd_fields = {path for path, _ in _walk(_schema()["properties"]["spec"], "")}
    model_fields = set()

    def collect(model: type[spec_base._Model], prefix: str) -> None:
        for name, field in model.model_fields.items():
            alias = field.alias or name
            model_fields.add(f"{prefix}.{alias}")
            ann = field.annotation
            suffix = "[]" if typing.get_origin(ann) is tuple else ""
            for t in typing.get_args(ann) or (ann,):
                if isinstance(t, type) and issubclass(t, spec_base._Model):
                    collect(t, f"{prefix}.{alias}{suffix}")

    collect(spec.LLMDeploymentSpec, "")
    assert model_fields - crd_fields == set()


def test_cross_field_rules_are_cel_validations() -> None:
    s = _schema()["properties"]["spec"]["properties"]
    limits_rules = s["runtime"]["properties"]["limits"]["x-kubernetes-validations"]
    rollout_rules = s["rollout"]["x-kubernetes-validations"]
    assert any("maxInputTokens + self.maxNewTokens" in r["rule"] for r in limits_rules)
    assert any("Canary" in r["rule"] for r in rollout_rules)
