"""Operating the OpenAI API beside gRPC: the same bearer token, the same TLS files, the same
request metrics, and prompts or outputs in the log only with payload logging on."""

from __future__ import annotations

import logging
import ssl
import subprocess
from pathlib import Path

import httpx
import openai
import pytest
from llm_runtime.api import contract

from tests.unit.runtime.openai_api.harness import Start

pytestmark = pytest.mark.unit


async def test_a_missing_or_wrong_bearer_token_is_a_401(start: Start, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    async with start(auth_token_file=token_file) as api:
        for key in ("wrong", "s3cre"):
            async with openai.AsyncOpenAI(base_url=api.base_url, api_key=key, max_retries=0) as c:
                with pytest.raises(openai.AuthenticationError) as info:
                    await c.completions.create(model=api.model, prompt="hi", max_tokens=1)
                assert info.value.code == "invalid_api_key"
                with pytest.raises(openai.AuthenticationError):
                    await c.models.list()
        async with httpx.AsyncClient() as raw:
            bare = await raw.post(f"{api.base_url}/completions", json={"model": api.model})
        assert bare.status_code == 401
        assert bare.headers["www-authenticate"] == "Bearer"
        assert bare.json()["error"]["type"] == "authentication_error"
        assert api.requests("Completions", "UNAUTHENTICATED") == 3
        async with openai.AsyncOpenAI(base_url=api.base_url, api_key="s3cret", max_retries=0) as c:
            # greedy: a sampled first token may be EOS, and the tiny model's answer would be empty
            done = await c.completions.create(
                model=api.model, prompt="hi", max_tokens=1, temperature=0
            )
        assert done.usage is not None
        assert done.usage.completion_tokens == 1


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=runtime"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_uses_the_grpc_certificate_and_refuses_plaintext(
    start: Start, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    async with start(tls_cert=cert, tls_key=key) as api:
        assert api.base_url.startswith("https://")
        verified = openai.DefaultAsyncHttpxClient(verify=ssl.create_default_context(cafile=cert))
        async with openai.AsyncOpenAI(
            base_url=api.base_url, api_key="x", max_retries=0, http_client=verified
        ) as c:
            models = await c.models.list()
        assert [m.id for m in models.data] == [api.model]
        async with httpx.AsyncClient() as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get(api.base_url.replace("https://", "http://") + "/models")


async def test_http_requests_are_counted_in_the_runtime_metrics(start: Start) -> None:
    async with start() as api, httpx.AsyncClient(timeout=60) as c:
        body = {"model": api.model, "prompt": "hi", "max_tokens": 3, "temperature": 0}
        assert (await c.post(f"{api.base_url}/completions", json=body)).status_code == 200
        bad = await c.post(f"{api.base_url}/completions", json=body | {"model": "other"})
        assert bad.status_code == 404
        assert api.requests("Completions", "OK") == 1
        assert api.requests("Completions", "NOT_FOUND") == 1
        labels = {"model": api.model, "revision": api.srv.state.serving.info.revision}  # type: ignore[union-attr]
        registry = api.srv.metrics.registry
        for protocol, tokens in ((contract.PROTOCOL_HTTP, 3), (contract.PROTOCOL_GRPC, 0)):
            mine = labels | {contract.LABEL_PROTOCOL: protocol}
            generated = registry.get_sample_value("llm_runtime_generation_tokens_total", mine)
            assert generated == tokens, protocol  # the label tells HTTP traffic from gRPC's


@pytest.mark.parametrize("log_payloads", [False, True])
async def test_prompts_and_outputs_are_logged_only_when_payload_logging_is_on(
    start: Start, caplog: pytest.LogCaptureFixture, log_payloads: bool
) -> None:
    secret = "my-card-number-4242"
    caplog.set_level(logging.DEBUG)
    async with start(log_payloads=log_payloads) as api, httpx.AsyncClient(timeout=60) as c:
        body = {"model": api.model, "max_tokens": 2, "stream": True}
        chat = body | {"messages": [{"role": "user", "content": secret}]}
        headers = {"x-request-id": "req-1"}
        await c.post(f"{api.base_url}/chat/completions", json=chat, headers=headers)
        bad = body | {"prompt": secret, "top_p": 7}
        await c.post(f"{api.base_url}/completions", json=bad, headers={"x-request-id": "req-2"})
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "req-1" in logged
    assert "req-2" in logged
    assert (secret in logged) is log_payloads
