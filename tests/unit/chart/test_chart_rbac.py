"""The RBAC table (llm_operator.rbac) is well-formed, and docs/rbac.md is generated from it.

The chart's rendered roles are compared with the same table in test_chart_render.py (helm). Fix
a stale page with:
    make docs
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gen_docs
import pytest
from llm_operator import rbac

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
FIX = "run `make docs` (hack/gen_docs.py)"


def test_docs_rbac_md_is_what_make_docs_writes() -> None:
    doc = ROOT / "docs" / "rbac.md"
    assert doc.is_file(), f"docs/rbac.md is missing: {FIX}"
    assert doc.read_text() == gen_docs.render_rbac(), f"docs/rbac.md is stale: {FIX}"


def test_gen_docs_check_passes() -> None:
    assert gen_docs.stale_files() == [], f"generated docs are stale: {FIX}"


def test_every_verb_says_why_and_names_a_caller_that_exists() -> None:
    for grant in rbac.RULES:
        names = [v.name for v in grant.verbs]
        assert len(names) == len(set(names)), (grant.resource, names)
        for verb in grant.verbs:
            assert verb.why, (grant.resource, verb.name)
            if verb.caller.startswith("llm_operator"):
                assert importlib.util.find_spec(verb.caller), verb.caller


def test_one_grant_per_resource() -> None:
    keys = [(g.api_group, g.resource) for g in rbac.RULES]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("clusterwide", [True, False])
def test_nothing_not_granted_is_granted(clusterwide: bool) -> None:
    cluster, namespaced = rbac.permissions(clusterwide=clusterwide)
    granted = {(p.api_group, p.resource, p.verb) for p in cluster | namespaced}
    for ng in rbac.NOT_GRANTED:
        for resource in ng.resource.split(", "):
            for p in granted:
                if p[:2] == (ng.api_group, resource):
                    assert "*" not in ng.verbs and p[2] not in ng.verbs, (ng, p)


def test_modes_split_the_peering_and_namespaces_rules() -> None:
    cluster, namespaced = rbac.permissions(clusterwide=True)
    assert not namespaced
    assert {p.resource for p in cluster} >= {"clusterkopfpeerings", "customresourcedefinitions"}
    assert not {"kopfpeerings", "namespaces"} & {p.resource for p in cluster}
    cluster, namespaced = rbac.permissions(clusterwide=False)
    assert {p.resource for p in cluster} == {"customresourcedefinitions", "namespaces"}
    assert "kopfpeerings" in {p.resource for p in namespaced}
    assert all(p.verb in {"get", "list", "watch"} for p in cluster)
