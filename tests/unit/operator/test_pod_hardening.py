"""The runtime pod template is safe by construction: crash logs reach the status, the fetcher
alone writes the model cache (with the user's credentials), and no scratch volume is unbounded."""

from __future__ import annotations

from typing import Any

import pytest
from llm_operator import naming, pod, spec

pytestmark = pytest.mark.unit

IMAGE = "llm-operator/runtime:test"


def _d(**overrides: Any) -> spec.LLMDeployment:
    body: dict[str, Any] = {
        "metadata": {"name": "chat", "namespace": "team", "uid": "u-1", "generation": 1},
        "spec": {
            "model": {
                "name": "m",
                "source": "hf://org/gated@0123456789abcdef0123456789abcdef01234567",
            }
        },
    }
    body["spec"].update(overrides)
    return spec.parse(body)


def _pod_spec(d: spec.LLMDeployment) -> dict[str, Any]:
    template, _ = pod.pod_template(d, image=IMAGE)
    return dict(template["spec"])


def _containers(d: spec.LLMDeployment) -> dict[str, dict[str, Any]]:
    ps = _pod_spec(d)
    return {c["name"]: c for c in [*ps["initContainers"], *ps["containers"]]}


def _mount(container: dict[str, Any], volume: str) -> dict[str, Any]:
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume]
    return dict(mount)


def test_a_crashing_container_leaves_its_last_log_lines_in_the_pod_status() -> None:
    for container in _containers(_d()).values():
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError", container["name"]


def test_the_fetcher_gets_the_users_env_so_gated_models_and_proxies_work() -> None:
    token = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    proxy = {"name": "HTTPS_PROXY", "value": "http://proxy:3128"}
    fetch = _containers(_d(runtime={"env": [token, proxy]}))[pod.FETCH_CONTAINER]
    assert token in fetch["env"]
    assert proxy in fetch["env"]


def test_only_the_fetcher_may_write_the_model_cache() -> None:
    for d in (
        _d(),
        _d(
            model={
                "name": "m",
                "source": "hf://o/m@0123456789abcdef0123456789abcdef01234567",
                "cacheClaimName": "cache",
            }
        ),
    ):
        containers = _containers(d)
        assert _mount(containers[pod.FETCH_CONTAINER], "model").get("readOnly") is not True
        assert _mount(containers[pod.RUNTIME_CONTAINER], "model")["readOnly"] is True


def test_the_serving_container_keeps_no_cache_on_the_read_only_model_volume() -> None:
    runtime = _containers(_d())[pod.RUNTIME_CONTAINER]
    hf_home = next(e["value"] for e in runtime["env"] if e["name"] == "HF_HOME")
    assert not hf_home.startswith(naming.MODEL_MOUNT)
    assert hf_home.startswith(_mount(runtime, "tmp")["mountPath"])


def test_every_empty_dir_is_bounded() -> None:
    volumes = _pod_spec(_d())["volumes"]
    empty_dirs = {v["name"]: v["emptyDir"] for v in volumes if "emptyDir" in v}
    assert set(empty_dirs) == {"model", "tmp"}
    assert empty_dirs["model"]["sizeLimit"] == pod.MODEL_CACHE_SIZE_LIMIT
    assert empty_dirs["tmp"]["sizeLimit"] == pod.TMP_SIZE_LIMIT


def test_the_model_cache_cap_follows_the_ephemeral_storage_limit() -> None:
    d = _d(runtime={"resources": {"limits": {"ephemeral-storage": "200Gi", "memory": "8Gi"}}})
    volumes = {v["name"]: v for v in _pod_spec(d)["volumes"]}
    assert volumes["model"]["emptyDir"] == {"sizeLimit": "200Gi"}


def test_a_cache_claim_has_no_size_limit_to_set() -> None:
    d = _d(
        model={
            "name": "m",
            "source": "hf://o/m@0123456789abcdef0123456789abcdef01234567",
            "cacheClaimName": "cache",
        }
    )
    volumes = {v["name"]: v for v in _pod_spec(d)["volumes"]}
    assert "emptyDir" not in volumes["model"]
