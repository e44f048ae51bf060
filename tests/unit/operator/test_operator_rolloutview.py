"""What the status says during a rollout: the serving revision, Progressing, Degraded after a
rollback; and the stale-body guard of the rollout tick."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from llm_operator import naming, podclient, rolloutview, spec, status, tick, windows
from llm_operator.rollout import decide, promtext
from llm_operator.rollout.state import Rollback, RolloutPhase, RolloutStatus

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
READY = status.Summary("Ready", "ReplicasReady", "2/2 replicas serve the model")


def test_serving_revision_is_the_stable_except_while_recreating() -> None:
    assert rolloutview.serving_revision(RolloutStatus(), "r1") == "r1"
    canary_run = RolloutStatus(
        phase=RolloutPhase.CANARY, stable_revision="r1", canary_revision="r2"
    )
    assert rolloutview.serving_revision(canary_run, "r2") == "r1"
    recreate = RolloutStatus(
        phase=RolloutPhase.RECREATING, stable_revision="r1", canary_revision="r2"
    )
    assert rolloutview.serving_revision(recreate, "r2") == "r2"


def test_a_canary_in_flight_makes_a_ready_stable_progressing() -> None:
    r = RolloutStatus(
        phase=RolloutPhase.CANARY,
        stable_revision="r1",
        canary_revision="r2",
        weight=50,
        message="weight 50% -> 1 canary pod beside 2 stable (33% of pods)",
    )
    v = rolloutview.summarize(READY, r, now=NOW)
    assert (v.phase, v.reason) == ("Progressing", "RolloutCanary")
    assert "r2" in v.message and "33% of pods" in v.message


def test_a_rollback_makes_the_phase_degraded_with_the_failed_check() -> None:
    rb = Rollback("r2", "r1", "SmokePromptMismatch", "pod x answered 'hi'", NOW)
    r = RolloutStatus(
        phase=RolloutPhase.ROLLED_BACK, stable_revision="r1", rejected_revision="r2", rollback=rb
    )
    v = rolloutview.summarize(READY, r, now=NOW)
    assert (v.phase, v.reason) == ("Degraded", "SmokePromptMismatch")
    assert "r2 rolled back to r1" in v.message and "answered 'hi'" in v.message


def test_a_failing_stable_or_refused_apply_outranks_the_rollout() -> None:
    failed = status.Summary("Failed", "ApplyFailed", "422")
    r = RolloutStatus(phase=RolloutPhase.CANARY, stable_revision="r1", canary_revision="r2")
    assert rolloutview.summarize(failed, r, now=NOW) == failed


def test_stable_rollout_leaves_the_pod_verdict_alone() -> None:
    r = RolloutStatus(phase=RolloutPhase.STABLE, stable_revision="r1")
    assert rolloutview.summarize(READY, r, now=NOW) == READY


def test_a_body_older_than_our_last_write_is_read_with_that_write() -> None:
    """The watch may not have delivered the status written one tick ago; deciding again from
    the old one would replay a transition (a second rollback Event, a double count)."""
    cache = tick.Cache(based_on="41", written={"rollout": {"phase": "RolledBack"}})
    stale = {"metadata": {"resourceVersion": "41"}, "status": {"rollout": {"phase": "Canary"}}}
    fresh = {"metadata": {"resourceVersion": "42"}, "status": {"rollout": {"phase": "Stable"}}}
    assert tick.previous_status(stale, cache)["rollout"]["phase"] == "RolledBack"
    assert tick.previous_status(fresh, cache)["rollout"]["phase"] == "Stable"


def test_smoke_requests_are_greedy_and_short() -> None:
    req = podclient.smoke_request(
        spec.SmokePrompt(prompt="What is the capital of France?", expect="(?i)paris")
    )
    assert [(m.role, m.content) for m in req.messages] == [
        ("user", "What is the capital of France?")
    ]
    assert req.temperature == 0.0
    assert 0 < req.max_new_tokens <= 64


def test_smoke_without_access_fails_every_prompt_naming_why() -> None:
    prompts = (spec.SmokePrompt(prompt="a", expect="b"), spec.SmokePrompt(prompt="c", expect="d"))
    access = podclient.Access(port=50051, error="cannot read the Secret")
    replies = podclient.smoke(pod="p", pod_ip="198.18.0.9", prompts=prompts, access=access)
    assert [(r.index, r.error) for r in replies] == [(0, access.error), (1, access.error)]


def test_step_without_pause_moves_on_and_empty_pause_waits_for_promote() -> None:
    parsed = spec.RolloutSpec.model_validate(
        {"steps": [{"weight": 10}, {"weight": 50, "pause": {}}]}
    )
    assert [s.pause_seconds for s in parsed.steps] == [0.0, None]


def test_reverting_the_spec_after_a_rollback_clears_the_failed_verdict() -> None:
    rb = Rollback("r2", "r1", "CrashLoopBackOff", "crash", NOW)
    rolled_back = RolloutStatus(
        phase=RolloutPhase.ROLLED_BACK,
        stable_revision="r1",
        rejected_revision="r2",
        last_verdict="Failed",
        rollback=rb,
    )
    one = spec.LLMDeploymentSpec(model=spec.ModelSpec(name="m", source="builtin://m"))
    d = decide.decide(decide.Observed("r1"), rolled_back, one, NOW)
    assert (d.status.phase, d.status.last_verdict) == (RolloutPhase.STABLE, "Reverted")
    assert d.status.rollback == rb  # kept as history


def _pod(name: str, rev: str, *, ready: bool, ip: str = "198.18.0.7") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {naming.LABEL_REVISION: rev}},
        "status": {
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_only_ready_pods_with_an_ip_are_scraped_and_smoked() -> None:
    group = [
        _pod("a", "r2", ready=True),
        _pod("b", "r2", ready=False),
        _pod("c", "r2", ready=True, ip=""),
    ]
    assert [p["metadata"]["name"] for p in windows.ready_pods(group)] == ["a"]


def test_ready_column_and_phase_come_from_the_serving_revision_only() -> None:
    """A canary pod beside 2 stable ones must not make READY read 3/2."""
    d = spec.parse(
        {
            "metadata": {"name": "chat", "namespace": "ns", "generation": 4},
            "spec": {"model": {"name": "m", "source": "/m"}, "replicas": 2},
        }
    )
    deployments = [
        {"metadata": {"labels": {naming.LABEL_REVISION: rev}}, "status": {}} for rev in ("r1", "r2")
    ]
    pods = [
        _pod("s1", "r1", ready=True),
        _pod("s2", "r1", ready=True),
        _pod("c1", "r2", ready=True),
    ]
    gathered = tick.Gathered(
        d=d,
        previous={},
        before=RolloutStatus(),
        spec_revision="r1",
        all_pods=pods,
        groups={},
        deployments=deployments,
        annotations=None,
        resource_version="1",
        now=NOW,
        results=None,
        traffic=None,
        apply_error="",
    )
    seen = tick.serving_state(gathered, "r1")
    assert (seen.revision, seen.desired, len(seen.pods)) == ("r1", 2, 2)
    assert seen.deployment is not None


def test_scrapes_of_deleted_pods_are_forgotten() -> None:
    scrapes = {"a": promtext.Scrape(), "gone": promtext.Scrape()}
    windows.forget_gone_pods(scrapes, [_pod("a", "r1", ready=True)])
    assert set(scrapes) == {"a"}
