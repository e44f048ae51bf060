"""The client's pure helpers (building requests, folding responses) and its channel options."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import grpc
import pytest
from llm_runtime.api import client
from llm_runtime.api.v1 import runtime_pb2

pytestmark = pytest.mark.unit


def test_unset_sampling_fields_stay_unset_so_the_server_applies_its_defaults() -> None:
    req = client.build_request("hi")
    assert req.prompt == "hi"
    for field in ("max_new_tokens", "temperature", "top_p", "top_k", "seed"):
        assert not req.HasField(field), field


def test_zero_values_are_sent_as_set_fields() -> None:
    req = client.build_request(
        messages=[("user", "hi")], temperature=0.0, top_k=0, seed=0, stop=["\n"]
    )
    assert req.HasField("temperature") and req.temperature == 0.0
    assert req.HasField("seed") and req.seed == 0
    assert [(m.role, m.content) for m in req.messages] == [("user", "hi")]
    assert list(req.stop) == ["\n"]


def test_a_stream_folds_into_the_same_completion_as_the_unary_call() -> None:
    chunks = [
        runtime_pb2.GenerateStreamResponse(request_id="r", text="Par", token_ids=[1]),
        runtime_pb2.GenerateStreamResponse(request_id="r", text="is", token_ids=[2]),
        runtime_pb2.GenerateStreamResponse(
            request_id="r",
            finish_reason=runtime_pb2.FINISH_REASON_STOP,
            prompt_tokens=7,
            completion_tokens=2,
        ),
    ]
    unary = runtime_pb2.GenerateResponse(
        request_id="r",
        text="Paris",
        finish_reason=runtime_pb2.FINISH_REASON_STOP,
        prompt_tokens=7,
        completion_tokens=2,
    )
    expected = client.Completion("r", "Paris", "stop", 7, 2)
    assert client.completion_from_stream(chunks) == expected
    assert client.completion_from_response(unary) == expected


def test_an_empty_stream_is_an_error_not_an_empty_completion() -> None:
    with pytest.raises(ValueError, match="final message"):
        client.completion_from_stream([])


def _service_config() -> dict[str, Any]:
    options = dict(client.CHANNEL_OPTIONS)
    config: dict[str, Any] = json.loads(str(options["grpc.service_config"]))
    return config


def test_channels_balance_per_request_and_retry_unavailable() -> None:
    options = dict(client.CHANNEL_OPTIONS)
    assert options["grpc.enable_retries"] == 1
    config = _service_config()
    assert config == client.SERVICE_CONFIG
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": client.RUNTIME_SERVICE}]  # not Health: probes see truth
    policy = method["retryPolicy"]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]  # never RESOURCE_EXHAUSTED
    assert 3 <= policy["maxAttempts"] <= 5
    assert "retryThrottling" not in config  # a draining pod's failures would switch retries off


def test_every_channel_gets_the_options_and_a_tls_name_override_adds_to_them() -> None:
    plain = client._options(client.Connection("dns:///rt-headless:50051"))
    assert plain == list(client.CHANNEL_OPTIONS)
    named = client._options(client.Connection("10.0.0.7:50051", server_name="rt.ns.svc"))
    assert named == [*client.CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", "rt.ns.svc")]


def test_channels_with_the_options_are_accepted_by_grpc() -> None:
    # grpc answers every call of a channel whose service config it cannot parse INVALID_ARGUMENT
    # ("errors validating service config"); here the call fails for want of a server only.
    conn = client.Connection("127.0.0.1:9")  # the discard port: nothing listens on loopback
    with client.RuntimeClient(conn) as rt, pytest.raises(grpc.RpcError) as info:
        rt.model_info(deadline=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_readme_shows_the_client_options_as_they_are() -> None:
    root = next(d for d in Path(__file__).parents if (d / "pyproject.toml").is_file())
    readme = (root / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    (shown,) = [b for b in blocks if "SERVICE_CONFIG = {" in b]
    namespace: dict[str, Any] = {"json": json}
    exec(shown, namespace)  # the README's own literal, nothing else
    assert namespace["SERVICE_CONFIG"] == client.SERVICE_CONFIG
    assert namespace["CHANNEL_OPTIONS"] == client.CHANNEL_OPTIONS
