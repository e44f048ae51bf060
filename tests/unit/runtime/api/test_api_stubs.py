"""The generated stubs match the .proto, import as llm_runtime.api.v1, and stay torch-free."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from gen_proto import rewrite_imports
from llm_runtime.api.v1 import runtime_pb2

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[4]


def test_committed_stubs_match_a_fresh_generation_from_the_proto() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_generated_imports_are_rewritten_but_rpc_paths_are_not() -> None:
    generated = (
        "from llm.runtime.v1 import runtime_pb2 as llm_dot_runtime_dot_v1_dot_runtime__pb2\n"
        "x: llm.runtime.v1.runtime_pb2.GenerateRequest\n"
        "path = '/llm.runtime.v1.Runtime/Generate'\n"
    )
    assert rewrite_imports(generated) == (
        "from llm_runtime.api.v1 import runtime_pb2 as llm_dot_runtime_dot_v1_dot_runtime__pb2\n"
        "x: llm_runtime.api.v1.runtime_pb2.GenerateRequest\n"
        "path = '/llm.runtime.v1.Runtime/Generate'\n"
    )


def test_the_wire_names_are_the_versioned_proto_package() -> None:
    service = runtime_pb2.DESCRIPTOR.services_by_name["Runtime"]
    assert service.full_name == "llm.runtime.v1.Runtime"
    assert runtime_pb2.DESCRIPTOR.name == "llm/runtime/v1/runtime.proto"
    assert [m.name for m in service.methods] == ["Generate", "GenerateStream", "ModelInfo"]


def test_the_api_package_and_client_import_without_torch() -> None:
    code = (
        "import sys; import llm_runtime.api.client, llm_runtime.api.v1.runtime_pb2_grpc; "
        "bad = {'torch', 'transformers'} & set(sys.modules); print(sorted(bad)); "
        "sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
