"""`kubectl llmd`: the annotation it writes and the summary it prints (pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from llm_operator import kubectl_plugin
from llm_operator.rollout import state
from llm_operator.rollout.state import CommandKind, RolloutPhase, RolloutStatus

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)


def test_promote_writes_the_annotation_the_operator_reads() -> None:
    args = kubectl_plugin.annotate_args(
        kind=CommandKind.PROMOTE, name="chat", namespace="team-a", token="2026-11-29T01:00:00Z"
    )
    assert args == [
        "kubectl",
        "annotate",
        "llmdeployments.llm-operator.io",
        "chat",
        "rollout.llm-operator.io/promote=2026-11-29T01:00:00Z",
        "--overwrite",
        "--namespace",
        "team-a",
    ]
    annotations = dict([args[4].split("=", 1)])
    assert state.pending_commands(annotations, RolloutStatus()) == (
        state.Command(CommandKind.PROMOTE, "2026-11-29T01:00:00Z"),
    )


def test_status_summary_names_revisions_step_and_rollback() -> None:
    status = RolloutStatus(
        phase=RolloutPhase.ROLLED_BACK,
        stable_revision="r1",
        rejected_revision="r2",
        last_verdict="Failed",
        last_message="ttft_p95 2.31s > limit 1.00s",
        failures=2,
        rollback=state.Rollback(
            "r2", "r1", "TTFTp95AboveLimit", "ttft_p95 2.31s > limit 1.00s", T0
        ),
    )
    text = kubectl_plugin.describe({"status": state.to_status(status)})
    assert "phase:    RolledBack" in text
    assert "verdict:  Failed ttft_p95 2.31s > limit 1.00s" in text
    assert "rollback: r2 -> r1 at 2026-11-29T01:00:00Z: TTFTp95AboveLimit:" in text
