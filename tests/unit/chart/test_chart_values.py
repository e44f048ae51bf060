"""values.yaml is the chart's documentation: every value carries a comment, and it declares the
same keys as values.schema.json, where each has a type and a description (prometheus-community's
habit). Pure text checks, no helm needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_runtime.api import contract

pytestmark = pytest.mark.unit

CHART = Path(__file__).resolve().parents[3] / "charts" / "llm-operator"

Doc = dict[str, Any]


def value_keys(text: str) -> Iterator[tuple[tuple[str, ...], bool]]:
    """Yield (key path, commented) for each `key:` line in a values.yaml; commented means the
    line just above it (blank lines end a comment) is a `#` comment."""
    stack: list[tuple[int, str]] = []
    previous = ""
    for line in text.splitlines():
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9_]*):", line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group(2)))
            yield tuple(k for _, k in stack), previous.lstrip().startswith("#")
        previous = line


def schema_node(schema: Doc, path: tuple[str, ...]) -> Doc | None:
    """The schema of a values path, or None inside free-form objects (their keys are data)."""
    node = schema
    for key in path:
        if "properties" not in node:
            return None
        node = node["properties"][key]
    return node


def schema_paths(node: Doc, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path the schema declares, down to free-form objects."""
    for key, child in node.get("properties", {}).items():
        yield (*prefix, key)
        yield from schema_paths(child, (*prefix, key))


def test_values_yaml_sets_every_value_the_schema_declares() -> None:
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    keys = {path for path, _ in value_keys((CHART / "values.yaml").read_text())}
    missing = set(schema_paths(schema)) - keys - {("global",)}
    assert not missing, f"declared in values.schema.json, absent from values.yaml: {missing}"


def test_every_value_is_commented_and_described_in_the_schema() -> None:
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    for path, commented in value_keys((CHART / "values.yaml").read_text()):
        node = schema_node(schema, path)
        if node is None:
            continue
        assert node.get("description"), f"{'.'.join(path)} has no description in the schema"
        if "properties" not in node:
            assert commented, f"{'.'.join(path)} has no comment in values.yaml"


def test_port_defaults_are_the_contracts() -> None:
    """Helm needs literal defaults; they must be the ports the operator itself defaults to."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["operator"]["metricsPort"] == contract.OPERATOR_METRICS_PORT
    assert values["operator"]["healthPort"] == contract.OPERATOR_HEALTH_PORT
    assert values["metricsService"]["port"] == contract.OPERATOR_METRICS_PORT
