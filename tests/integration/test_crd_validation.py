"""`kubectl apply` refuses every invalid LLMDeployment with a message naming the field.

Needs only the apiserver: the CRD's OpenAPI schema and CEL rules do the refusing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
EXAMPLE = REPO / "examples" / "smollm2.yaml"


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    """The CRDs from crds/ installed (server-side, so re-running is idempotent) and Established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/llmdeployments.llm-operator.io",
    )  # fmt: skip
    return cluster


def _valid() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLE.read_text()))


def _with(path: str, value: Any) -> dict[str, Any]:
    """The example with one field (dotted path under the object) set, or removed when value is
    the sentinel `DELETE`."""
    obj = copy.deepcopy(_valid())
    *parents, last = path.split(".")
    node = obj
    for key in parents:
        node = node.setdefault(key, {})
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return obj


DELETE = object()


def _apply(cluster: Cluster, obj: dict[str, Any], namespace: str) -> tuple[int, str]:
    done = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)
    return done.returncode, done.stderr + done.stdout


def test_the_example_is_accepted_and_defaulted(crds: Cluster, namespace: str) -> None:
    code, out = _apply(crds, _valid(), namespace)
    assert code == 0, out
    got = crds.kubectl_json("get", "llmd", "smollm2", "-n", namespace)
    rollout = got["spec"]["rollout"]
    assert rollout["strategy"] == "Canary"
    assert [s["weight"] for s in rollout["steps"]] == [25, 50]
    assert (rollout["analysis"]["interval"], rollout["analysis"]["failureLimit"]) == ("10s", 1)
    assert got["spec"]["security"] == {"authTokenSecretName": "", "tlsSecretName": ""}
    assert got["spec"]["model"]["cacheClaimName"] == ""


INVALID = [
    pytest.param(_with("spec.model", DELETE), "spec.model", "Required value", id="no-model"),
    pytest.param(
        _with("spec.replicas", -1), "spec.replicas", "greater than or equal to 0",
        id="negative-replicas",
    ),
    pytest.param(
        _with("spec.model.source", "s3://bucket/model"), "spec.model.source",
        "unsupported model source 's3://bucket/model'", id="unknown-source-scheme",
    ),
    pytest.param(
        _with("spec.model.source", "hf://org/name"), "spec.model.source",
        "unsupported model source", id="hf-source-without-revision",
    ),
    pytest.param(
        _with("spec.model.dtype", "float8"), "spec.model.dtype", "Unsupported value: \"float8\"",
        id="bad-dtype",
    ),
    pytest.param(
        _with("spec.model.format", "onnx"), "spec.model.format", "Unsupported value", id="bad-format",
    ),
    pytest.param(
        _with("spec.model.name", "Bad Name"), "spec.model.name", "should match", id="bad-model-name",
    ),
    pytest.param(
        _with("spec.runtime.limits.maxBatchSize", 0), "spec.runtime.limits.maxBatchSize",
        "greater than or equal to 1", id="batch-size-zero",
    ),
    pytest.param(
        _with("spec.runtime.limits.maxBatchSize", 1000), "spec.runtime.limits.maxBatchSize",
        "less than or equal to 256", id="batch-size-too-large",
    ),
    pytest.param(
        _with("spec.runtime.limits.maxNewTokens", 100000), "spec.runtime.limits.maxNewTokens",
        "less than or equal to 32768", id="new-tokens-too-large",
    ),
    pytest.param(
        _with("spec.runtime.limits.maxWaiting", -5), "spec.runtime.limits.maxWaiting",
        "greater than or equal to 0", id="negative-waiting",
    ),
    pytest.param(
        _with("spec.runtime.limits", {"maxInputTokens": 131072, "maxNewTokens": 1000}),
        "spec.runtime.limits.maxNewTokens", "must not exceed 131072", id="context-overflow",
    ),
    pytest.param(
        _with("spec.startupBudgetSeconds", 1), "spec.startupBudgetSeconds",
        "greater than or equal to 10", id="startup-budget-too-small",
    ),
    pytest.param(
        _with("spec.service.port", 70000), "spec.service.port", "less than or equal to 65535",
        id="port-out-of-range",
    ),
    pytest.param(
        _with("spec.rollout", {"strategy": "Canary", "steps": []}), "spec.rollout.steps",
        "a Canary rollout needs at least one step", id="canary-without-steps",
    ),
    pytest.param(
        _with("spec.rollout", {"steps": [{"weight": 50}, {"weight": 50}]}),
        "spec.rollout.steps", "strictly increasing", id="canary-weights-repeated",
    ),
    pytest.param(
        _with("spec.rollout", {"steps": [{"weight": 0}]}), "spec.rollout.steps[0].weight",
        "greater than or equal to 1", id="canary-weight-zero",
    ),
    pytest.param(
        _with("spec.rollout", {"steps": [{"weight": 50, "pause": {"duration": "soon"}}]}),
        "spec.rollout.steps[0].pause.duration", "should match", id="bad-pause-duration",
    ),
    pytest.param(
        _with("spec.rollout", {"strategy": "BlueGreen"}), "spec.rollout.strategy",
        "Unsupported value", id="unknown-strategy",
    ),
    pytest.param(
        _with("spec.rollout.analysis", {"minRequests": 0}), "spec.rollout.analysis.minRequests",
        "greater than or equal to 1", id="min-requests-zero",
    ),
    pytest.param(
        _with("spec.rollout", {"strategy": "Canary", "steps": [{"weight": 50}, {"weight": 10}]}),
        "spec.rollout.steps", "strictly increasing", id="canary-weights-decreasing",
    ),
    pytest.param(
        _with("spec.rollout.analysis", {"metrics": {"maxErrorRatio": 2}}),
        "spec.rollout.analysis.metrics.maxErrorRatio", "less than or equal to 1",
        id="error-ratio-above-one",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("obj", "field", "message"), INVALID)
def test_invalid_spec_is_refused_naming_the_field(
    crds: Cluster, namespace: str, obj: dict[str, Any], field: str, message: str
) -> None:
    code, out = _apply(crds, obj, namespace)
    assert code != 0, f"accepted an invalid spec:\n{out}"
    assert f"{field}:" in out, out
    assert message in out, out
    missing = crds.kubectl("get", "llmd", "smollm2", "-n", namespace, check=False)
    assert missing.returncode != 0  # nothing was stored


def test_kubectl_explain_describes_the_model_fields(crds: Cluster) -> None:
    out = crds.kubectl("explain", "llmdeployment.spec.model").stdout
    assert "The model to serve and where its weights come from." in out
    for field in ("name", "source", "format", "dtype", "cacheClaimName"):
        assert field in out
    assert "hf://org/name@revision" in out


def test_scale_subresource_changes_spec_replicas(crds: Cluster, namespace: str) -> None:
    assert _apply(crds, _valid(), namespace)[0] == 0
    crds.kubectl("scale", "-n", namespace, "llmd", "smollm2", "--replicas", "3")
    got = crds.kubectl_json("get", "llmd", "smollm2", "-n", namespace)
    assert got["spec"]["replicas"] == 3
    refused = crds.kubectl(
        "scale", "-n", namespace, "llmd", "smollm2", "--replicas", "-1", check=False
    )
    assert refused.returncode != 0
