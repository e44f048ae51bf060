"""Every plausible spec mistake in admission_corpus/refused is refused by `kubectl apply`, and
the refusal names the field the manifest's `# Field:` line states; every manifest in
admission_corpus/valid and every example is accepted, so the rules cannot over-refuse.

Server-side dry runs: the apiserver validates (schema and CEL) and stores nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from localcluster import cp_testing
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "admission_corpus"
REFUSED = sorted((CORPUS / "refused").glob("*.yaml"))
ACCEPTED = sorted((CORPUS / "valid").glob("*.yaml")) + sorted((REPO / "examples").glob("*.yaml"))


def stated_field(manifest: Path) -> str:
    """The field a refused manifest's `# Field:` comment says the refusal must name."""
    for line in manifest.read_text().splitlines():
        if line.startswith("# Field:"):
            return line.removeprefix("# Field:").strip()
    raise AssertionError(f"{manifest.name} has no '# Field:' line")


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    """The CRDs from crds/ installed (server-side, idempotent) and Established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/llmdeployments.llm-operator.io",
    )  # fmt: skip
    return cluster


@pytest.fixture(scope="module")
def corpus_ns(crds: Cluster) -> Iterator[str]:
    """One namespace for the whole corpus: dry runs store nothing, so tests cannot interfere."""
    name = cp_testing.namespace_name("admission-corpus")
    crds.kubectl("create", "namespace", name)
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def _dry_run(cluster: Cluster, manifest: Path, namespace: str) -> tuple[int, str]:
    done = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(manifest), check=False
    )
    return done.returncode, done.stderr + done.stdout


def test_the_corpus_is_large_enough() -> None:
    assert len(REFUSED) >= 35
    assert all(stated_field(m) for m in REFUSED)


@pytest.mark.parametrize("manifest", REFUSED, ids=[m.stem for m in REFUSED])
def test_a_plausible_mistake_is_refused_naming_its_field(
    crds: Cluster, corpus_ns: str, manifest: Path
) -> None:
    code, out = _dry_run(crds, manifest, corpus_ns)
    assert code != 0, f"accepted {manifest.name}:\n{out}"
    assert f"{stated_field(manifest)}:" in out, out


@pytest.mark.parametrize("manifest", ACCEPTED, ids=[m.stem for m in ACCEPTED])
def test_a_legitimate_spec_is_accepted(crds: Cluster, corpus_ns: str, manifest: Path) -> None:
    code, out = _dry_run(crds, manifest, corpus_ns)
    assert code == 0, out
