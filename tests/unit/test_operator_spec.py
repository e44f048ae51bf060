"""Parsing the custom resource into frozen, typed models with camelCase aliases."""

from __future__ import annotations

import pydantic
import pytest
from llm_operator import spec

pytestmark = pytest.mark.unit


def test_parse_reads_identity_and_camel_case_fields() -> None:
    d = spec.parse(
        {
            "metadata": {"name": "chat", "namespace": "ns", "uid": "u", "generation": 2},
            "spec": {
                "model": {"name": "m", "source": "hf://o/m@r", "cacheClaimName": "c"},
                "startupBudgetSeconds": 60,
                "rollout": {
                    "strategy": "Canary",
                    "steps": [{"weight": 10, "pause": {"duration": "1m"}}],
                    "analysis": {
                        "metrics": {"maxTTFTp95Seconds": 0.5},
                        "smokePrompts": [{"prompt": "p", "expect": "Paris"}],
                    },
                },
            },
        }
    )
    assert d.owner == spec.Owner(name="chat", namespace="ns", uid="u", generation=2)
    assert d.spec.model.cache_claim_name == "c"
    assert d.spec.startup_budget_seconds == 60
    assert d.spec.rollout.steps[0].pause == spec.Pause(duration="1m")
    assert d.spec.rollout.analysis.metrics.max_ttft_p95_seconds == 0.5
    assert d.spec.rollout.analysis.smoke_prompts[0].timeout == "30s"


def test_models_are_frozen() -> None:
    d = spec.parse({"metadata": {"name": "a"}, "spec": {"model": {"name": "m", "source": "/x"}}})
    with pytest.raises(pydantic.ValidationError):
        d.spec.replicas = 3
    assert d.owner.namespace == "default"
