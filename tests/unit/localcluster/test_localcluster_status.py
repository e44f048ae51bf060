"""The process node's pure status decisions: phase, conditions, back-off, probes' thresholds."""

from __future__ import annotations

import pytest
from localcluster import events, probes, status

pytestmark = pytest.mark.unit
AT = "2026-11-29T01:00:00Z"


def running(name: str = "app", *, ready: bool = True) -> status.Container:
    c = status.Container(name, "python:3.11")
    c.run(pid=42, at=AT)
    c.ready = ready
    return c


def exited(code: int, name: str = "app") -> status.Container:
    c = running(name)
    c.finish(exit_code=code, at=AT)
    return c


def test_a_new_container_waits_in_container_creating() -> None:
    c = status.Container("app", "python:3.11")
    assert status.container_status(c)["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert status.pod_phase([], [c], "Always") == "Pending"


def test_a_restarting_container_shows_crash_loop_and_its_last_exit() -> None:
    c = exited(1)
    c.wait("CrashLoopBackOff", "back-off 10s")
    c.restart_count = 1
    doc = status.container_status(c)
    assert doc["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert doc["lastState"]["terminated"]["exitCode"] == 1
    assert doc["lastState"]["terminated"]["reason"] == "Error"
    assert doc["restartCount"] == 1
    assert status.pod_phase([], [c], "Always") == "Running"


@pytest.mark.parametrize(
    ("codes", "policy", "phase"),
    [
        ([0], "Never", "Succeeded"),
        ([1], "Never", "Failed"),
        ([0, 1], "Never", "Failed"),
        ([0], "OnFailure", "Succeeded"),
        ([1], "OnFailure", "Running"),
        ([0], "Always", "Running"),
    ],
)
def test_phase_of_exited_containers_follows_restart_policy(
    codes: list[int], policy: str, phase: str
) -> None:
    assert status.pod_phase([], [exited(c, f"c{i}") for i, c in enumerate(codes)], policy) == phase


def test_pod_stays_pending_and_uninitialized_until_init_containers_succeed() -> None:
    init = running("init")
    main = status.Container("app", "python:3.11", "PodInitializing")
    assert status.pod_phase([init], [main], "Always") == "Pending"
    assert status.pod_conditions([init], [main], phase="Pending")["Initialized"] is False
    init.finish(exit_code=0, at=AT)
    assert status.pod_conditions([init], [main], phase="Pending")["Initialized"] is True


def test_a_failed_init_container_fails_a_never_restart_pod() -> None:
    assert status.pod_phase([exited(2, "init")], [status.Container("a", "x")], "Never") == "Failed"


def test_ready_needs_every_container_ready() -> None:
    conds = status.pod_conditions([], [running("a"), running("b", ready=False)], phase="Running")
    assert conds == {
        "PodScheduled": True,
        "Initialized": True,
        "ContainersReady": False,
        "Ready": False,
    }


def test_condition_transition_time_moves_only_when_status_flips() -> None:
    before = [{"type": "Ready", "status": "False", "lastTransitionTime": "old"},
              {"type": "Custom", "status": "True", "lastTransitionTime": "x"}]  # fmt: skip
    merged = status.merge_conditions(before, {"Ready": True, "Initialized": True}, at="new")
    by_type = {c["type"]: c for c in merged}
    assert by_type["Ready"]["lastTransitionTime"] == "new"
    assert (
        status.merge_conditions(merged, {"Ready": True}, at="later")[0]["lastTransitionTime"]
        == "new"
    )
    assert by_type["Custom"]["status"] == "True"


@pytest.mark.parametrize(
    ("restarts", "delay"), [(0, 0.0), (1, 10.0), (2, 20.0), (3, 40.0), (6, 300.0), (20, 300.0)]
)
def test_crash_loop_back_off_doubles_from_ten_seconds_up_to_the_cap(
    restarts: int, delay: float
) -> None:
    assert status.backoff_delay(restarts) == delay


def test_back_off_cap_is_configurable() -> None:
    assert status.backoff_delay(5, base=1, cap=4) == 4


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [("Always", 0, True), ("OnFailure", 0, False), ("OnFailure", 137, True), ("Never", 1, False)],
)
def test_restart_policy(policy: str, code: int, restart: bool) -> None:
    assert status.should_restart(policy, code) is restart


def test_pod_status_document_carries_ips_and_start_time() -> None:
    doc = status.pod_status(inits=[], mains=[running()], policy="Always", previous_conditions=[],
                            pod_ip="198.18.0.10", host_ip="198.18.0.1", start_time=AT, at=AT)  # fmt: skip
    assert doc["phase"] == "Running"
    assert doc["podIP"] == "198.18.0.10" and doc["podIPs"] == [{"ip": "198.18.0.10"}]
    assert doc["hostIP"] == "198.18.0.1" and doc["startTime"] == AT
    assert doc["containerStatuses"][0]["state"]["running"]["startedAt"] == AT


def test_probe_tracker_needs_consecutive_results_to_cross_thresholds() -> None:
    timing = probes.Timing(failure_threshold=3, success_threshold=2)
    t = probes.Tracker()
    for ok in (True, False, False):
        t = t.record(ok, timing)
    assert t.result is None
    t = t.record(False, timing)
    assert t.result is False
    t = t.record(True, timing)
    assert t.result is False
    assert t.record(True, timing).result is True


def test_probe_timing_defaults_match_kubernetes() -> None:
    assert probes.Timing.of({}) == probes.Timing(0, 10, 1, 3, 1)


def test_exec_probe_enters_the_containers_namespaces_as_its_user() -> None:
    argv = probes.exec_argv(["cat", "/tmp/ok"], pid=7, uid=1000, gid=None)
    assert argv == [
        "nsenter",
        "-t",
        "7",
        "-m",
        "-n",
        "-G",
        "1000",
        "-S",
        "1000",
        "--",
        "cat",
        "/tmp/ok",
    ]


def test_events_name_the_pod_and_container_from_the_kubelet() -> None:
    pod = {"metadata": {"name": "web-0", "namespace": "team", "uid": "u-1"}}
    ev = events.event_object(pod, reason="Unhealthy", message="Readiness probe failed", warning=True,
                             container="app", node="local-node", at="t")  # fmt: skip
    assert ev["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "team", "name": "web-0",
                                    "uid": "u-1", "fieldPath": "spec.containers{app}"}  # fmt: skip
    assert (ev["type"], ev["reason"], ev["source"]) == (
        "Warning",
        "Unhealthy",
        {"component": "kubelet", "host": "local-node"},
    )
    assert ev["metadata"]["namespace"] == "team" and ev["metadata"]["name"].startswith("web-0.")
