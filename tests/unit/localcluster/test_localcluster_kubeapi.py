"""The process node's apiserver door: kubeconfig reading and watch-event parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from localcluster import kubeapi

pytestmark = pytest.mark.unit


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_inline_kubeconfig_credentials_become_files(tmp_path: Path) -> None:
    config = {
        "current-context": "local",
        "contexts": [{"name": "local", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443/",
                                               "certificate-authority-data": b64("CA")}}],
        "users": [{"name": "u", "user": {"client-certificate-data": b64("CERT"),
                                         "client-key": str(tmp_path / "key.pem")}}],
    }  # fmt: skip
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    creds = kubeapi.load_credentials(tmp_path / "kubeconfig", scratch=tmp_path / "scratch")
    assert creds.server == "https://127.0.0.1:6443"
    assert creds.ca_file.read_text() == "CA" and creds.cert_file.read_text() == "CERT"
    assert creds.key_file == tmp_path / "key.pem"


def test_watch_events_parse_and_errors_raise_with_their_code() -> None:
    event = {"type": "ADDED", "object": {"metadata": {"name": "p"}}}
    assert kubeapi.parse_event(json.dumps(event).encode()) == event
    gone = {"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}
    with pytest.raises(kubeapi.ApiError) as caught:
        kubeapi.parse_event(json.dumps(gone).encode())
    assert caught.value.status == 410


def test_paths() -> None:
    assert kubeapi.pod_path("ns", "p", "status") == "/api/v1/namespaces/ns/pods/p/status"
    assert kubeapi.namespaced_path("ns", "secrets", "s") == "/api/v1/namespaces/ns/secrets/s"
