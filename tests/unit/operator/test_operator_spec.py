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
                "model": {
                    "name": "m",
                    "source": "hf://o/m@0123456789abcdef0123456789abcdef01234567",
                    "cacheClaimName": "c",
                },
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


@pytest.mark.parametrize(
    "bad",
    [
        {"replicas": -1},
        {"startupBudgetSeconds": 5},
        {"model": {"name": "Upper", "source": "/x"}},
        {"model": {"name": "m", "source": ""}},
        {"rollout": {"steps": [{"weight": 0}]}},
        {"rollout": {"analysis": {"metrics": {"maxErrorRatio": 1.5}}}},
        {"scheduling": {"tolerations": [{"effect": "Sometimes"}]}},
    ],
)
def test_the_bounds_the_crd_enforces_are_enforced_by_the_models_too(bad: dict[str, object]) -> None:
    """The models are the CRD's source, so a spec the apiserver refuses cannot parse either."""
    body = {"model": {"name": "m", "source": "/x"}, **bad}
    with pytest.raises(pydantic.ValidationError):
        spec.LLMDeploymentSpec.model_validate(body)


def test_durations_keep_parsing_what_the_parser_always_read() -> None:
    """The CRD's duration pattern is the apiserver's alone: the parser still reads "1.5s"."""
    assert spec.SmokePrompt(prompt="p", expect="e", timeout="1.5s").timeout_seconds == 1.5
    with pytest.raises(pydantic.ValidationError):
        spec.AnalysisSpec(interval="soon")
