"""The contract module: torch-free, and its variable names come from the runtime's option table."""

from __future__ import annotations

import subprocess
import sys

import pytest
from llm_runtime.api import contract, options

pytestmark = pytest.mark.unit


def test_env_names_a_setting_by_its_field() -> None:
    # Pinned here once: these names are an interface (docs, users' own pod env).
    assert contract.env("grpc_port") == "LLM_RUNTIME_GRPC_PORT"
    assert contract.env("metrics_port") == "LLM_RUNTIME_METRICS_PORT"
    assert contract.env("model_name") == "LLM_MODEL_NAME"
    assert contract.env("model_revision") == "LLM_MODEL_REVISION"


def test_env_of_every_option_is_its_variable() -> None:
    for opt in options.OPTIONS:
        assert contract.env(opt.field) == opt.env_name
    assert len({opt.env_name for opt in options.OPTIONS}) == len(options.OPTIONS)


def test_an_unknown_field_is_a_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match="grpc_prot"):
        contract.env("grpc_prot")


def test_label_keys_are_pinned() -> None:
    # Deployment selectors are immutable: a changed key would orphan every running revision.
    labels = (contract.LABEL_DEPLOYMENT, contract.LABEL_REVISION)
    assert labels == ("llm-operator.io/deployment", "llm-operator.io/revision")
    assert all(key.startswith(f"{contract.GROUP}/") for key in labels)


def test_ports_are_valid_and_the_operators_two_endpoints_differ() -> None:
    runtime_ports = (
        contract.RUNTIME_GRPC_PORT,
        contract.RUNTIME_METRICS_PORT,
        contract.RUNTIME_HEALTH_PORT,
        contract.RUNTIME_HTTP_PORT,
    )
    ports = (*runtime_ports, contract.OPERATOR_HEALTH_PORT, contract.OPERATOR_METRICS_PORT)
    assert all(1 <= p <= 65535 for p in ports)
    assert len(set(runtime_ports)) == len(runtime_ports)  # one pod listens on all of them
    assert contract.OPERATOR_HEALTH_PORT != contract.OPERATOR_METRICS_PORT


def test_importing_the_contract_loads_no_torch_and_no_other_runtime_module() -> None:
    code = (
        "import sys; import llm_runtime.api.contract; "
        "bad = [m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers'} "
        "or (m.startswith('llm_runtime.') and not m.startswith('llm_runtime.api'))]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
