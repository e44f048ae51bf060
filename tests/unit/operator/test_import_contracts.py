"""The import contracts in pyproject.toml mean what they say: a copy of the code with one
forbidden import planted in it fails `lint-imports` on exactly that contract, and the list of
runtime modules the operator may not import covers every module but `llm_runtime.api`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{tree / 'operator'}:{tree / 'runtime'}"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _flat(report: str) -> str:
    """lint-imports wraps long contract names; one space between words reads them whole."""
    return " ".join(report.split())


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(
        ROOT / "operator" / "llm_operator", tree / "operator" / "llm_operator", ignore=ignore
    )
    shutil.copytree(
        ROOT / "runtime" / "llm_runtime", tree / "runtime" / "llm_runtime", ignore=ignore
    )
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_unmodified_code_keeps_every_contract(tmp_path: Path) -> None:
    done = _lint(_copy(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("rollout/plan.py", "import subprocess", "llm_operator.rollout is pure"),
        ("rollout/decide.py", "from llm_operator import kube", "llm_operator.rollout is pure"),
        (
            "podclient.py",
            "from llm_runtime import config",
            "The operator imports only llm_runtime.api from the runtime",
        ),
        ("spec.py", "from llm_operator import builders", "Layers inside the operator"),
        (
            "status.py",
            "import kubernetes",
            "Only llm_operator.kube talks to the API server (imports kubernetes)",
        ),
    ],
)
def test_a_planted_import_breaks_its_contract(
    tmp_path: Path, module: str, planted: str, contract: str
) -> None:
    tree = _copy(tmp_path)
    target = tree / "operator" / "llm_operator" / module
    target.write_text(target.read_text() + f"\n{planted}  # planted by the test\n")
    done = _lint(tree)
    assert done.returncode != 0
    assert f"{contract} BROKEN" in _flat(done.stdout), done.stdout


def test_torch_reached_indirectly_through_the_runtime_breaks_the_operator_contract(
    tmp_path: Path,
) -> None:
    """The real risk is an indirect import: the operator imports an api module that (one day)
    imports torch. The contract counts that chain."""
    tree = _copy(tmp_path)
    contract = tree / "runtime" / "llm_runtime" / "api" / "contract.py"
    contract.write_text(contract.read_text() + "\nimport torch  # planted by the test\n")
    done = _lint(tree)
    assert done.returncode != 0
    name = "The operator never imports torch or transformers, not even through another module"
    assert f"{name} BROKEN" in _flat(done.stdout), done.stdout


def test_the_forbidden_runtime_modules_are_every_module_but_the_api() -> None:
    (only_api,) = [
        c
        for c in _contracts()
        if c["name"] == "The operator imports only llm_runtime.api from the runtime"
    ]
    runtime = ROOT / "runtime" / "llm_runtime"
    modules = {
        f"llm_runtime.{p.stem if p.is_file() else p.name}"
        for p in runtime.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__")
        or (p.is_dir() and (p / "__init__.py").exists())
    }
    forbidden = only_api["forbidden_modules"]
    assert isinstance(forbidden, list)
    assert set(forbidden) == modules - {"llm_runtime.api"}
