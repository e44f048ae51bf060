"""REST paths and the retry policy of the API door (pure parts; the calls are integration-tested)."""

from __future__ import annotations

import pytest
from llm_operator import kube

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("api_version", "kind", "namespace", "name", "path"),
    [
        ("apps/v1", "Deployment", "ns", "d", "/apis/apps/v1/namespaces/ns/deployments/d"),
        ("v1", "Service", "ns", "s", "/api/v1/namespaces/ns/services/s"),
        ("v1", "Pod", "ns", None, "/api/v1/namespaces/ns/pods"),
        (
            "policy/v1",
            "PodDisruptionBudget",
            "ns",
            "p",
            "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/p",
        ),
        ("kopf.dev/v1", "ClusterKopfPeering", None, "x", "/apis/kopf.dev/v1/clusterkopfpeerings/x"),
    ],
)
def test_paths(
    api_version: str, kind: str, namespace: str | None, name: str | None, path: str
) -> None:
    assert kube.path_for(api_version=api_version, kind=kind, namespace=namespace, name=name) == path


@pytest.mark.parametrize(
    ("code", "retriable"),
    [(409, True), (429, True), (500, True), (503, True), (422, False), (403, False), (400, False)],
)
def test_only_transient_errors_are_retried(code: int, retriable: bool) -> None:
    assert kube.ApiError(status=code, reason="r", message="m").retriable is retriable


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/api/v1/namespaces/ns/pods", "pods"),
        ("/api/v1/namespaces/ns/services/chat", "services"),
        ("/apis/apps/v1/namespaces/ns/deployments/chat-abc", "deployments"),
        ("/apis/llm-operator.io/v1alpha1/namespaces/ns/llmdeployments/chat/status",
         "llmdeployments/status"),
        ("/apis/kopf.dev/v1/clusterkopfpeerings/op", "clusterkopfpeerings"),
        ("/api/v1/namespaces/ns/events?fieldSelector=type%3DWarning", "events"),
    ],
)  # fmt: skip
def test_the_request_metric_names_the_resource_of_a_path(path: str, resource: str) -> None:
    assert kube.resource_of(path) == resource
