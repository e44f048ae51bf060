"""The chart ships the top-level `crds/` byte for byte: they are one source of truth.

Helm installs `charts/llm-operator/crds/` as they are, so a copy that drifts from `crds/` would
install an API the operator does not speak. Fix a failure with:
    cp crds/*.yaml charts/llm-operator/crds/
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "crds"
CHART_COPY = ROOT / "charts" / "llm-operator" / "crds"
FIX = "run: cp crds/*.yaml charts/llm-operator/crds/"


def crd_files(folder: Path) -> dict[str, bytes]:
    """Map each YAML file name in `folder` to its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.yaml"))}


def crd_names(files: dict[str, bytes]) -> set[str]:
    """The metadata.name of every CustomResourceDefinition in the files."""
    names: set[str] = set()
    for text in files.values():
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                names.add(doc["metadata"]["name"])
    return names


def test_chart_crds_are_identical_copies_of_the_top_level_crds() -> None:
    source, copy = crd_files(SOURCE), crd_files(CHART_COPY)
    assert sorted(copy) == sorted(source), f"chart crds/ lists other files than crds/; {FIX}"
    drifted = [name for name in source if source[name] != copy[name]]
    assert not drifted, f"chart copies differ from crds/: {drifted}; {FIX}"


def test_chart_ships_the_llmdeployment_and_kopf_peering_crds() -> None:
    names = crd_names(crd_files(CHART_COPY))
    assert {
        "llmdeployments.llm-operator.io",
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    } <= names
