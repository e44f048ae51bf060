"""Canary rollouts end to end: the chart-installed operator, real SmolLM2 runtime pods, real traffic.

One LLMDeployment (`chat`, SmolLM2, one replica, a model cache claim so new pods skip the fetch)
is made Ready once for the module; each test then changes what defines its pods and watches the
new revision go out as a canary and be promoted or rolled back - as a user would: `kubectl get
llmd`, `status.rollout`, `status.rollback`, conditions, Events, pods, and gRPC answers through the
ClusterIP Service. Tests run in file order; each starts from whatever revision the previous one
left serving (a rolled-back spec is simply moved on to a new revision).

Timing acceptance (the issue's numbers): a canary whose model cannot load is rolled back within
15 s of its first crash (container `finishedAt` -> `status.rollback.at`); a canary breaching a
metric limit within two judged analysis windows of its step becoming Ready (a window that could
not judge - too little canary traffic on a slow machine - is held by design and adds one).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from bench import canary_kit as kit
from bench import loadgen, podwatch
from bench.analysis_trail import Trail
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.e2e

RELEASE = "canary-e2e"
OPERATOR_DEPLOYMENT = f"{RELEASE}-llm-operator"
INTERVAL = kit.INTERVAL
LOAD_TIMEOUT = 600.0  # a SmolLM2 pod on two shared cores: load + warm-up (fetch cached)
CRASH_BUDGET = 15.0  # the issue: rolled back within 15 s of the first crash
# Two judged analysis windows after the step is Ready, each closed by a 2 s timer tick plus a
# scrape (the slack); a held window (inconclusive) adds one interval (analysis_trail.Trail).
METRIC_SLACK = 6.0
MANUAL_PAUSE = [{"weight": 50, "pause": {}}]  # a pause without duration waits for a promote


def assert_rolled_back_status(st: dict[str, Any], *, canary: str, stable: str) -> None:
    """What a user reads after any rollback: Degraded, the reason, the rejected revision."""
    rb, ro = st["rollback"], st["rollout"]
    assert (rb["from"], rb["to"]) == (canary, stable), rb
    assert rb["reason"] and rb["message"] and rb["at"], rb
    assert ro["stableRevision"] == stable
    assert ro.get("rejectedRevision") == canary
    assert st["phase"] == "Degraded"
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", rb["reason"]), degraded
    assert canary in degraded["message"], degraded


def assert_canary_removed_and_stable_serves(chat: kit.Target, *, stable: str) -> None:
    kit.wait_for(
        "only the stable revision's Deployment left, at full size",
        lambda: chat.deployments() == {f"{chat.name}-{stable}": 1},
        timeout=120,
    )
    assert {podwatch.revision(p) for p in chat.live_pods()} == {stable}
    report = burst(chat, seconds=2)
    assert report.failed == 0 and report.ok > 0, report.summary()


def burst(chat: kit.Target, *, seconds: float) -> loadgen.LoadReport:
    config = loadgen.LoadConfig(target=chat.service_target(), concurrency=1)
    with loadgen.BackgroundLoad(config) as load:
        time.sleep(seconds)
    assert load.report is not None
    return load.report


def load_config(chat: kit.Target) -> loadgen.LoadConfig:
    """Two streams, short answers, a breather between requests: pods still load meanwhile."""
    return loadgen.LoadConfig(target=chat.service_target(), concurrency=2, pause_seconds=0.2)


def kubectl_llmd(chat: kit.Target, command: str) -> str:
    """`kubectl llmd COMMAND chat -n NS`: kubectl finds the plugin (the venv's console script)."""
    env = chat.cluster.env
    env["PATH"] = f"{env['PATH']}{os.pathsep}{kit.REPO / '.venv' / 'bin'}"
    done = subprocess.run(
        [str(chat.cluster.bin_dir / "kubectl"), "llmd", command, chat.name, "-n", chat.namespace],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def wait_phase(chat: kit.Target, rev: str, phases: tuple[str, ...], *, timeout: float) -> Any:
    return kit.wait_for(
        f"{rev} in {phases}",
        lambda: (r := chat.rollout()).get("canaryRevision") == rev and r.get("phase") in phases,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    """The module's namespace; it must exist before the operator's Role is installed into it."""
    with kit.own_namespace(cluster, "canary") as name:
        yield name


@pytest.fixture(scope="module")
def operator_ns(cluster: Cluster, ns: str) -> Iterator[str]:
    """The chart installed under its own release, watching only `ns`; yields its namespace."""
    with kit.own_operator(cluster, ns, release=RELEASE, prefix="canary-op") as op_ns:
        yield op_ns


@pytest.fixture(scope="module")
def chat(cluster: Cluster, ns: str, operator_ns: str) -> Iterator[kit.Target]:
    """`chat` Ready 1/1 and Stable (its first revision is adopted without a canary). Deleted
    while the operator still runs: its finalizer would otherwise hold the namespace forever."""
    target = kit.Target(cluster, ns)
    cluster.apply(kit.cache_claim(), namespace=ns)
    target.apply(kit.spec_with())

    def serving() -> dict[str, Any] | None:
        st = target.status()
        ok = st.get("ready") == "1/1" and (st.get("rollout") or {}).get("phase") == "Stable"
        return st if ok else None

    kit.wait_for("chat Ready 1/1 and Stable", serving, timeout=LOAD_TIMEOUT, interval=3)
    yield target
    cluster.kubectl("delete", "llmd", target.name, "-n", ns, "--timeout=120s", check=False)


def test_first_revision_is_adopted_as_stable_and_kubectl_shows_the_columns(
    chat: kit.Target,
) -> None:
    st = chat.status()
    ro = st["rollout"]
    assert ro["stableRevision"] == st["currentRevision"]
    assert not ro.get("canaryRevision")
    assert chat.deployments() == {f"chat-{ro['stableRevision']}": 1}
    table = chat.cluster.kubectl("get", "llmd", "-n", chat.namespace).stdout
    header = table.splitlines()[0].split()
    for column in ("STABLE", "CANARY", "WEIGHT", "VERDICT"):
        assert column in header, table


def test_good_update_is_promoted_through_every_step_with_zero_failed_requests(
    chat: kit.Target,
) -> None:
    chat.settled()
    steps = [{"weight": 50, "pause": {"duration": "5s"}}, {"weight": 100}]
    phases: list[str] = []
    weights: set[int] = set()
    serving: list[str] = []  # status.ready (stable pods / replicas) while the canary runs

    def record() -> None:
        st = chat.status()
        ro = st.get("rollout") or {}
        if not phases or phases[-1] != ro.get("phase"):
            phases.append(str(ro.get("phase")))
        if ro.get("phase") == "Canary":
            weights.add(int(ro.get("weight") or 0))
            serving.append(str(st.get("ready")))

    with loadgen.BackgroundLoad(load_config(chat)) as load:
        chat.apply(kit.spec_with(env="good-1", rollout={"steps": steps}))
        rev = chat.new_revision()
        chat.promoted(rev, timeout=LOAD_TIMEOUT, on_poll=record)
        time.sleep(2)  # requests sent during the last drain finish inside the load window
    report = load.report
    assert report is not None
    print(f"good update under load: {report.summary()}; phases {phases}")
    assert report.failed == 0, report.summary()
    assert report.ok > 20, report.summary()
    assert {"Canary", "Draining"} <= set(phases), phases
    assert "RolledBack" not in phases, phases
    assert weights == {50, 100}, weights
    assert serving and set(serving) == {"1/1"}, serving  # the stable stayed at full size
    assert (chat.status().get("rollback") or {}).get("from") != rev
    kit.wait_for(
        "the old revision's Deployment removed",
        lambda: chat.deployments() == {f"chat-{rev}": 1},
        timeout=120,
    )
    assert chat.events("RolloutPromoted"), "no RolloutPromoted Event"


def test_canary_whose_model_cannot_load_is_rolled_back_within_15s_of_its_first_crash(
    chat: kit.Target,
) -> None:
    stable = chat.settled()
    bad = kit.corrupt_gguf_on_node(f"corrupt-{chat.namespace}")
    with chat.watch() as pods:
        start = pods.mark()
        chat.apply(kit.spec_with(model={"source": f"file://{bad}", "format": "gguf"}))
        rev = chat.new_revision()
        st = chat.rolled_back(rev, timeout=300)
        time.sleep(1)  # the watch catches up with the canary pod's last statuses
        crashed = podwatch.first_termination(pods.of_revision(rev))
        stable_floor = pods.min_ready(stable, after=start)
    assert crashed is not None, "no container of the canary terminated"
    rb = st["rollback"]
    delay = podwatch.seconds_between(crashed, rb["at"])
    print(f"model cannot load: first crash {crashed}, rolled back {rb['at']} ({delay:.0f} s)")
    assert delay <= CRASH_BUDGET, (crashed, rb)
    assert rb["reason"] in ("ContainerFailed", "CrashLoopBackOff", "ContainerRestarted"), rb
    assert_rolled_back_status(st, canary=rev, stable=stable)
    assert stable_floor == 1, "the stable revision must keep serving at full size"
    warnings = [e for e in chat.events("RolloutRolledBack") if e["type"] == "Warning"]
    assert any(rb["reason"] in e["message"] or rev in e["message"] for e in warnings), warnings
    assert_canary_removed_and_stable_serves(chat, stable=stable)

    # No flapping: the spec still asks for the rejected revision, and no canary pod comes back.
    with chat.watch(rev) as later:
        time.sleep(3 * INTERVAL)
        ro = chat.rollout()
    assert (ro["phase"], ro["rejectedRevision"]) == ("RolledBack", rev)
    alive = [p for p in later.versions if not p["metadata"].get("deletionTimestamp")]
    assert not alive, [p["metadata"]["name"] for p in alive]
    assert chat.get()["spec"]["model"]["source"] == f"file://{bad}"  # the spec as written


def test_canary_failing_its_smoke_prompt_is_rolled_back(chat: kit.Target) -> None:
    stable = chat.settled()
    tiny = kit.tiny_model_on_node(f"tiny-{chat.namespace}")
    paris = {"prompt": "What is the capital of France?", "expect": "(?i)paris", "timeout": "30s"}
    # The HTTP prompt first: the rollback names the first failure, so a mismatch over http (not an
    # error) proves the pod's OpenAI endpoint answered the operator, and the message says so.
    smoke = [{**paris, "protocol": "http"}, paris]
    chat.apply(
        kit.spec_with(
            model={"source": f"file://{tiny}", "format": "hf"},
            rollout={"analysis": {"interval": f"{INTERVAL}s", "smokePrompts": smoke}},
        )
    )
    rev = chat.new_revision()
    st = chat.rolled_back(rev, timeout=300)
    rb = st["rollback"]
    assert rb["reason"] == "SmokePromptMismatch", rb
    assert "paris" in rb["message"].lower(), rb
    assert "smoke prompt 0 over http answered" in rb["message"], rb
    assert_rolled_back_status(st, canary=rev, stable=stable)
    assert_canary_removed_and_stable_serves(chat, stable=stable)


def test_canary_breaching_a_metric_limit_is_rolled_back_within_two_analysis_intervals(
    chat: kit.Target,
) -> None:
    stable = chat.settled()
    limits = {"maxTTFTp95Seconds": 0.001}
    analysis = {"interval": f"{INTERVAL}s", "failureLimit": 1, "metrics": limits}
    trail = Trail()
    with loadgen.BackgroundLoad(load_config(chat)):
        chat.apply(kit.spec_with(env="slow-1", rollout={"analysis": analysis}))
        rev = chat.new_revision()
        st = chat.rolled_back(rev, timeout=LOAD_TIMEOUT, trail=trail)
    rb = st["rollback"]
    assert rb["reason"] == "TTFTp95AboveLimit", rb
    assert "ttft_p95" in rb["message"], rb
    trail.check_rolled_back(
        rb["at"], interval=INTERVAL, judged=2, slack=METRIC_SLACK, what="metric breach"
    )
    assert_rolled_back_status(st, canary=rev, stable=stable)
    assert_canary_removed_and_stable_serves(chat, stable=stable)


def test_operator_killed_mid_rollout_finishes_it_from_the_status(
    chat: kit.Target, operator_ns: str
) -> None:
    stable = chat.settled()
    steps = [{"weight": 50, "pause": {"duration": "20s"}}]
    chat.apply(kit.spec_with(env="restart-1", rollout={"steps": steps}))
    rev = chat.new_revision()
    before = kit.wait_for(
        "the canary step Ready (mid-pause)",
        lambda: (r := chat.rollout()).get("canaryRevision") == rev and r.get("stepReadyAt") and r,
        timeout=LOAD_TIMEOUT,
    )
    judged = {p["metadata"]["uid"] for p in chat.live_pods(rev)}
    cluster = chat.cluster
    cluster.kubectl("delete", "pod", "-n", operator_ns, "-l", kit.OPERATOR_SELECTOR)
    cluster.kubectl(
        "rollout", "status", f"deployment/{OPERATOR_DEPLOYMENT}", "-n", operator_ns,
        "--timeout=180s",
    )  # fmt: skip
    chat.promoted(rev, timeout=LOAD_TIMEOUT)
    assert (before["step"], before["stableRevision"]) == (0, stable)
    # The canary pod judged before the restart is the one promoted: the step was not restarted.
    assert judged and {p["metadata"]["uid"] for p in chat.live_pods(rev)} == judged
    assert (chat.status().get("rollback") or {}).get("from") != rev


def test_manual_promote_leaves_a_pause_without_duration(chat: kit.Target) -> None:
    chat.settled()
    chat.apply(kit.spec_with(env="manual-1", rollout={"steps": MANUAL_PAUSE}))
    rev = chat.new_revision()
    wait_phase(chat, rev, ("Paused",), timeout=LOAD_TIMEOUT)
    time.sleep(2 * INTERVAL)
    assert chat.rollout()["phase"] == "Paused"  # a pause without duration never times out
    assert "Paused" in kubectl_llmd(chat, "status")
    kubectl_llmd(chat, "promote")
    chat.promoted(rev, timeout=LOAD_TIMEOUT)


def test_manual_abort_rolls_back_and_retry_tries_again(chat: kit.Target, operator_ns: str) -> None:
    stable = chat.settled()
    metrics_before = kit.operator_metrics(chat.cluster, namespace=operator_ns, release=RELEASE)
    chat.apply(kit.spec_with(env="abort-1", rollout={"steps": MANUAL_PAUSE}))
    rev = chat.new_revision()
    wait_phase(chat, rev, ("Paused",), timeout=LOAD_TIMEOUT)
    kubectl_llmd(chat, "abort")
    st = chat.rolled_back(rev, timeout=60)
    assert st["rollback"]["reason"] == "ManualAbort", st["rollback"]
    assert_rolled_back_status(st, canary=rev, stable=stable)
    assert_canary_removed_and_stable_serves(chat, stable=stable)

    kubectl_llmd(chat, "retry")
    wait_phase(chat, rev, ("Canary", "Paused"), timeout=60)
    kubectl_llmd(chat, "promote-full")
    chat.promoted(rev, timeout=LOAD_TIMEOUT)
    assert chat.status()["phase"] == "Ready"

    # The operator counts what happened: a rollback by its reason, a promotion, a rollout.
    after = kit.operator_metrics(chat.cluster, namespace=operator_ns, release=RELEASE)

    def grew(name: str, **labels: str) -> float:
        return kit.sample(after, name, **labels) - kit.sample(metrics_before, name, **labels)

    assert grew("llm_operator_rollout_rollbacks_total", reason="ManualAbort") == 1, after
    assert grew("llm_operator_rollout_promotions_total") == 1, after
    assert grew("llm_operator_rollouts_total", strategy="Canary") >= 1, after
