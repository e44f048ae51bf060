"""Rendering the chart with the real helm binary, shared by the chart tests (no cluster needed)."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "llm-operator"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
RELEASE, NAMESPACE = "llmop", "llm-operator-system"
KUBE_VERSION = "1.37.2"

Doc = dict[str, Any]


@functools.cache
def helm() -> str:
    """The helm binary built by hack/tools/build.sh (or $HELM, for a helm of your own)."""
    if "HELM" in os.environ:
        return os.environ["HELM"]
    out = subprocess.run(
        ["bash", str(ROOT / "hack/tools/build.sh"), "--print-bindir"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    path = Path(out.stdout.strip()) / "helm"
    assert path.is_file(), f"{path} is missing: run `make setup` (hack/tools/build.sh builds it)"
    return str(path)


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run helm against the chart with the local cluster's Kubernetes version."""
    return subprocess.run(
        [helm(), *args, "--kube-version", KUBE_VERSION], capture_output=True, text=True, check=False
    )


@functools.cache
def render(scenario: str, *sets: str) -> tuple[Doc, ...]:
    """All objects `helm template` renders for a scenario values file plus `--set` overrides."""
    set_args = [arg for s in sets for arg in ("--set", s)]
    proc = run_helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "-f", str(CHART / "ci" / scenario), *set_args,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def of_kind(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    """The rendered objects of one kind."""
    return [d for d in docs if d["kind"] == kind]


def only(docs: tuple[Doc, ...], kind: str) -> Doc:
    """The single rendered object of one kind."""
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """A LabelSelector's verdict on a set of labels (matchLabels and the Exists operator)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "Exists", expression
        if expression["key"] not in labels:
            return False
    return True
