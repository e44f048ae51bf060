"""Pods and annotations -> what `decide` observes; the revision label matches the builders'."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from llm_operator import naming, spec
from llm_operator.rollout import decide, pods
from llm_operator.rollout.analysis import Verdict
from llm_operator.rollout.state import Command, CommandKind, RolloutPhase, RolloutStatus

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 29, 1, 0, 30, tzinfo=UTC)
SPEC = spec.LLMDeploymentSpec.model_validate(
    {"model": {"name": "m", "source": "builtin://m"}, "replicas": 2}
)
CANARY = RolloutStatus(
    phase=RolloutPhase.CANARY, stable_revision="s1", canary_revision="c2", weight=25
)


def _pod(name: str, revision: str, *, ready: bool, restarts: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {naming.LABEL_REVISION: revision}},
        "status": {
            "startTime": "2026-11-29T01:00:00Z",
            "conditions": [{"type": "Ready", "status": str(ready)}],
            "containerStatuses": [
                {
                    "name": "runtime",
                    "restartCount": restarts,
                    "lastState": {
                        "terminated": {"exitCode": 1, "finishedAt": "2026-11-29T01:00:20Z"}
                    }
                    if restarts
                    else {},
                }
            ],
        },
    }


def test_revision_label_is_the_one_the_builders_stamp() -> None:
    assert pods.REVISION_LABEL == naming.LABEL_REVISION


def test_observe_counts_canary_ready_old_pods_and_commands() -> None:
    seen = pods.observe(
        pods=[
            _pod("s-a", "s1", ready=True),
            _pod("s-b", "s1", ready=True),
            _pod("c-a", "c2", ready=True),
            _pod("o-a", "o0", ready=False),
        ],
        status=CANARY,
        spec=SPEC,
        desired_revision="c2",
        annotations={"rollout.llm-operator.io/abort": "t"},
        now=NOW,
    )
    assert seen == decide.Observed(
        desired_revision="c2",
        canary_ready=1,
        old_pods=1,
        startup=seen.startup,
        commands=(Command(CommandKind.ABORT, "t"),),
    )
    assert seen.startup is not None and seen.startup.verdict is Verdict.PASSED


def test_a_restarted_canary_pod_becomes_a_failed_startup_check() -> None:
    seen = pods.observe(
        pods=[_pod("c-a", "c2", ready=False, restarts=1)],
        status=CANARY,
        spec=SPEC,
        desired_revision="c2",
        annotations=None,
        now=NOW,
    )
    assert seen.startup is not None
    assert (seen.startup.reason, seen.startup.verdict) == ("ContainerRestarted", Verdict.FAILED)
    assert seen.startup.at == datetime(2026, 11, 29, 1, 0, 20, tzinfo=UTC)


def test_without_a_canary_there_is_no_startup_check() -> None:
    seen = pods.observe(
        pods=[_pod("s-a", "s1", ready=True)],
        status=RolloutStatus(stable_revision="s1"),
        spec=SPEC,
        desired_revision="s1",
        annotations={},
        now=NOW,
    )
    assert (seen.startup, seen.canary_ready, seen.old_pods) == (None, 0, 0)


def test_ready_names_skip_unready_and_terminating_pods() -> None:
    leaving = _pod("c-b", "c2", ready=True)
    leaving["metadata"]["deletionTimestamp"] = "2026-11-29T01:00:29Z"
    assert pods.ready_names(
        [_pod("c-a", "c2", ready=True), _pod("c-c", "c2", ready=False), leaving]
    ) == ("c-a",)
