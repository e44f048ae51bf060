"""Per-object operator metrics (`llmdeployment_*`): each LLMDeployment is named, a phase or
revision change leaves no old label set behind, and an object that stops ticking (deleted, or
ticked by another replica) stops being exported. Read through a real registry's exposition."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from llm_operator import metrics, spec, tick
from llm_operator.rollout import decide, state
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.unit

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class FakeClock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _d(name: str = "chat", namespace: str = "team-a", replicas: int = 2) -> spec.LLMDeployment:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace, "uid": "u", "generation": 1},
        "spec": {
            "replicas": replicas,
            "model": {"name": "m", "source": "builtin://smollm2-135m-instruct"},
        },
    }
    return spec.parse(body)


def _status(phase: str = "Ready", revision: str = "r1", **rollout: Any) -> dict[str, Any]:
    return {
        "phase": phase,
        "currentRevision": revision,
        "readyReplicas": 2,
        "rollout": {"phase": "Stable", "stableRevision": revision, **rollout},
        "rollback": None,
    }


def _scrape(collector: metrics.ObjectMetrics) -> Samples:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _named(samples: Samples, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (name, labels), v in samples.items() if name == family}


def _info_labels(samples: Samples) -> list[dict[str, str]]:
    return [dict(labels) for labels in _named(samples, "llmdeployment_info")]


def test_info_names_the_object_with_its_phase_and_revision() -> None:
    objects = metrics.ObjectMetrics(clock=FakeClock())
    objects.observe(_d(), _status())
    assert _info_labels(_scrape(objects)) == [
        {"namespace": "team-a", "name": "chat", "phase": "Ready", "revision": "r1"}
    ]


def test_a_new_phase_or_revision_replaces_the_old_label_set() -> None:
    objects = metrics.ObjectMetrics(clock=FakeClock())
    objects.observe(_d(), _status(phase="Ready", revision="r1"))
    objects.observe(_d(), _status(phase="Progressing", revision="r2"))
    (info,) = _info_labels(_scrape(objects))
    assert (info["phase"], info["revision"]) == ("Progressing", "r2")


def test_objects_are_kept_apart_by_namespace_and_name() -> None:
    objects = metrics.ObjectMetrics(clock=FakeClock())
    objects.observe(_d("chat", "team-a"), _status())
    objects.observe(_d("chat", "team-b"), _status())
    objects.observe(_d("code", "team-a"), _status())
    pairs = {(i["namespace"], i["name"]) for i in _info_labels(_scrape(objects))}
    assert pairs == {("team-a", "chat"), ("team-b", "chat"), ("team-a", "code")}


def test_an_object_that_stops_ticking_disappears_after_the_ttl() -> None:
    clock = FakeClock()
    objects = metrics.ObjectMetrics(ttl_seconds=60, clock=clock)
    objects.observe(_d("gone"), _status())
    clock.now += 30
    objects.observe(_d("kept"), _status())
    clock.now += 31
    assert [i["name"] for i in _info_labels(_scrape(objects))] == ["kept"]
    for family in metrics.OBJECT_FAMILIES:  # no family keeps a series of the dropped object
        assert all(dict(labels)["name"] == "kept" for labels in _named(_scrape(objects), family))


def test_a_settled_object_ticked_once_per_drift_interval_stays_exported() -> None:
    clock = FakeClock()
    objects = metrics.ObjectMetrics(ttl_seconds=60, clock=clock)
    objects.keep_for(2 * 300 + 60)  # handlers.configure, at the default drift interval
    objects.observe(_d("idle"), _status())
    clock.now += 300  # the next idle re-check has not come yet
    assert [i["name"] for i in _info_labels(_scrape(objects))] == ["idle"]


def test_a_skipped_re_check_keeps_the_last_report_exported() -> None:
    clock = FakeClock()
    objects = metrics.ObjectMetrics(ttl_seconds=60, clock=clock)
    objects.observe(_d("idle"), _status())
    for _ in range(5):  # re-checks that found nothing changed, so ran no tick
        clock.now += 50
        objects.touch(namespace="team-a", name="idle")
    assert [i["name"] for i in _info_labels(_scrape(objects))] == ["idle"]
    objects.touch(namespace="team-a", name="never-seen")  # touching nothing exports nothing
    assert [i["name"] for i in _info_labels(_scrape(objects))] == ["idle"]


def test_forget_drops_an_object_at_once() -> None:
    objects = metrics.ObjectMetrics(clock=FakeClock())
    objects.observe(_d(), _status())
    objects.forget(namespace="team-a", name="chat")
    assert _info_labels(_scrape(objects)) == []


def test_rollout_phase_is_a_state_set_with_exactly_one_phase_at_one() -> None:
    objects = metrics.ObjectMetrics(clock=FakeClock())
    status = _status("Progressing", "r2", stableRevision="r1", canaryRevision="r2", weight=25)
    status["rollout"] |= {"phase": "Canary", "step": 1, "stalled": True}
    objects.observe(_d(), status)
    samples = _scrape(objects)
    phases = {
        dict(k)["phase"]: v for k, v in _named(samples, "llmdeployment_rollout_phase").items()
    }
    assert phases["Canary"] == 1.0
    assert sum(phases.values()) == 1.0
    assert set(phases) == {str(p) for p in state.RolloutPhase}
    one = (("name", "chat"), ("namespace", "team-a"))
    assert _named(samples, "llmdeployment_rollout_weight") == {one: 25.0}
    assert _named(samples, "llmdeployment_rollout_step") == {one: 1.0}
    assert _named(samples, "llmdeployment_rollout_stalled") == {one: 1.0}
    assert _named(samples, "llmdeployment_replicas_desired") == {one: 2.0}
    roles = {
        dict(k)["role"]: dict(k)["revision"] for k in _named(samples, "llmdeployment_revision_info")
    }
    assert roles == {"stable": "r1", "canary": "r2"}


def test_a_rollback_is_exported_with_its_time_reason_and_revisions() -> None:
    objects = metrics.ObjectMetrics(clock=FakeClock())
    rollback = {"from": "r2", "to": "r1", "reason": "ErrorRateAboveLimit", "message": "m",
                "at": "2026-01-02T03:04:05Z"}  # fmt: skip
    objects.observe(_d(), {**_status(), "rollback": rollback})
    ((labels, at),) = _named(_scrape(objects), "llmdeployment_rollback_timestamp_seconds").items()
    assert dict(labels) == {
        "namespace": "team-a",
        "name": "chat",
        "reason": "ErrorRateAboveLimit",
        "from_revision": "r2",
        "to_revision": "r1",
    }
    assert at == 1767323045.0


def test_no_rollback_series_without_a_rollback() -> None:
    objects = metrics.ObjectMetrics(clock=FakeClock())
    objects.observe(_d(), _status())
    assert _named(_scrape(objects), "llmdeployment_rollback_timestamp_seconds") == {}


def test_the_tick_report_step_exports_the_status_it_decided() -> None:
    """`tick.report` feeds `metrics.OBJECTS`, which the process registry (/metrics) exports."""
    d = _d("report-check")
    new_status = _status(phase="Loading", revision="r9")
    decision = decide.Decision(decide.Action.WAIT, state.from_status(new_status), "")
    gathered = SimpleNamespace(d=d)  # report reads only the parsed object of what was gathered
    decided = tick.Decided(decision=decision, new_status=new_status, phase_event=None, baseline=())
    tick.report(gathered, decided)  # type: ignore[arg-type]
    try:
        text = generate_latest(REGISTRY).decode()
        assert 'name="report-check",namespace="team-a",phase="Loading",revision="r9"' in text
    finally:
        metrics.OBJECTS.forget(namespace="team-a", name="report-check")
