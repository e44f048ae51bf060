"""The CRD files are generated, and the chart ships exactly what `crds/` holds.

`crds/llmdeployments.llm-operator.io.yaml` and its chart copy are written by `make crds` from the
pydantic models (operator/llm_operator/spec.py): a hand edit, or a model change without
regenerating, would install an API the operator does not parse. Helm installs
`charts/llm-operator/crds/` as they are, so the hand-kept CRDs (kopf's) must be copied there too;
`make crds` does that as well. Fix any failure here with:
    make crds
"""

from __future__ import annotations

from pathlib import Path

import gen_crd
import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "crds"
CHART_COPY = ROOT / "charts" / "llm-operator" / "crds"
FIX = "run: make crds"


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


@pytest.mark.parametrize("target", gen_crd.TARGETS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_crd_is_what_the_models_generate(target: Path) -> None:
    assert target.read_text() == gen_crd.render(), (
        f"{target.relative_to(ROOT)} differs from what operator/llm_operator/spec.py generates "
        f"(edit the models, not the YAML); {FIX}"
    )


def test_chart_crds_are_identical_copies_of_the_top_level_crds() -> None:
    source, copy = crd_files(SOURCE), crd_files(CHART_COPY)
    assert sorted(copy) == sorted(source), f"chart crds/ lists other files than crds/; {FIX}"
    drifted = [name for name in source if source[name] != copy[name]]
    assert not drifted, f"chart copies differ from crds/: {drifted}; {FIX}"
    assert gen_crd.stale_files() == [], FIX


def test_chart_ships_the_llmdeployment_and_kopf_peering_crds() -> None:
    names = crd_names(crd_files(CHART_COPY))
    assert {
        "llmdeployments.llm-operator.io",
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    } <= names
