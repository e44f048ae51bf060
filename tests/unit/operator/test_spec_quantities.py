"""Resource quantities as the apiserver reads them, and the Pod rules on requests and limits."""

from __future__ import annotations

import decimal

import pytest
from llm_operator import podfields

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("2Gi", str(2 * 1024**3)),
        ("1", "1"),
        (3, "3"),
        ("1e3", "1000"),
        ("1.5k", "1500"),
        ("-1", "-1"),
        ("2 Gi", None),
        ("Gi", None),
        ("1.5.2", None),
        ("", None),
    ],
)
def test_quantity(text: int | str, value: str | None) -> None:
    got = podfields.quantity(text)
    assert got == (None if value is None else decimal.Decimal(value))


@pytest.mark.parametrize(
    ("requests", "limits", "refused"),
    [
        ({}, {"nvidia.com/gpu": "0.5"}, True),
        ({"nvidia.com/gpu": 1}, {}, True),
        ({"nvidia.com/gpu": 1}, {"nvidia.com/gpu": 2}, True),
        ({"nvidia.com/gpu": "1"}, {"nvidia.com/gpu": 1}, False),
        ({"cpu": "2"}, {"cpu": "500m"}, True),
        ({"cpu": "500m"}, {"cpu": 1}, False),
        ({"memory": "-1"}, {}, True),
        ({}, {"gpu": 1}, True),
        ({"hugepages-2Mi": "1Gi"}, {"hugepages-2Mi": "1Gi"}, False),
    ],
)
def test_requests_and_limits(
    requests: dict[str, int | str], limits: dict[str, int | str], refused: bool
) -> None:
    problem = (
        podfields.amounts_problem(requests)
        or podfields.amounts_problem(limits)
        or podfields.requests_problem(requests, limits)
    )
    assert (problem is not None) is refused


@pytest.mark.parametrize(
    ("image", "policy", "ok"),
    [
        ("", "IfNotPresent", True),
        ("llm-runtime:1.2", "IfNotPresent", True),
        ("localhost:5000/llm-runtime", "IfNotPresent", False),
        ("localhost:5000/llm-runtime:dev", "IfNotPresent", True),
        ("llm-runtime:latest", "IfNotPresent", False),
        ("llm-runtime:latest", "Always", True),
        ("llm-runtime@sha256:" + "a" * 64, "IfNotPresent", True),
        ("LLM-runtime:1", "Always", False),
    ],
)
def test_images(image: str, policy: str, ok: bool) -> None:
    assert (podfields.image_problem(image, policy) is None) is ok
