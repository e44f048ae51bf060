"""The process node reports the image states a kubelet would (pure: reference, policy, mapping)."""

from __future__ import annotations

import pytest
from localcluster import images

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("ref", ["Bad/Image:1", "x::y", "a b", "-lead:1", ""])
def test_a_reference_that_does_not_parse_is_invalid_image_name(ref: str) -> None:
    failure = images.pull_failure(ref, policy="IfNotPresent", mapped=True)
    assert failure is not None and failure[0] == "InvalidImageName"


def test_never_pull_of_an_image_no_rule_maps_is_err_image_never_pull() -> None:
    failure = images.pull_failure("example.com/nope:1", policy="Never", mapped=False)
    assert failure is not None and failure[0] == "ErrImageNeverPull"
    assert "pull policy of Never" in failure[1]


def test_an_unmapped_image_under_another_policy_fails_its_pull() -> None:
    failure = images.pull_failure("example.com/nope:1", policy="IfNotPresent", mapped=False)
    assert failure is not None and failure[0] == "ErrImagePull"


@pytest.mark.parametrize(
    "ref", ["llm-operator/runtime:dev", "localhost:5000/a/b:1.2", "python", "a@sha256:" + "0" * 64]
)
def test_a_mapped_valid_image_starts_whatever_the_policy(ref: str) -> None:
    assert images.pull_failure(ref, policy="Never", mapped=True) is None


def test_the_shipped_rules_map_the_runtime_image_under_never() -> None:
    rule = images.resolve("llm-operator/runtime:dev", images.load_rules())
    assert (
        images.pull_failure("llm-operator/runtime:dev", policy="Never", mapped=bool(rule)) is None
    )
