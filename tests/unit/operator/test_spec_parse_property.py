"""spec.parse over generated bodies: whatever a stored object holds at whatever field, the
parser returns a model or raises spec.InvalidResourceError, never a TypeError or KeyError that
would crash a handler."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm_operator import spec

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "smollm2-canary.yaml"
BASE: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path in the example, down to its leaves and list items."""
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += _paths(child, (*prefix, i))
    return found


PATHS = _paths(BASE)[1:]


def _replaced(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    node: Any = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


def _parses_or_refuses(body: Any) -> None:
    with contextlib.suppress(spec.InvalidResourceError):
        spec.parse(body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=_json)
def test_any_value_at_any_field_parses_or_is_an_invalid_resource(
    path: tuple[str | int, ...], value: Any
) -> None:
    _parses_or_refuses(_replaced(path, value))


@settings(max_examples=200, deadline=None)
@given(body=st.dictionaries(st.sampled_from(["metadata", "spec", "status"]), _json, max_size=3))
def test_any_top_level_shape_parses_or_is_an_invalid_resource(body: dict[str, Any]) -> None:
    _parses_or_refuses(body)


def test_the_property_can_fail_on_a_refused_body() -> None:
    """The property is not vacuous: a broken field is refused, not silently accepted."""
    with pytest.raises(spec.InvalidResourceError):
        spec.parse(_replaced(("spec", "replicas"), "many"))
