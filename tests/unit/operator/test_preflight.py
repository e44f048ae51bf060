"""Problems that need the cluster, named from what the tick reads (pure; hand-made objects)."""

from __future__ import annotations

from typing import Any

import pytest
from llm_operator import preflight, spec, status

pytestmark = pytest.mark.unit

UID = "uid-1"


def owned(uid: str = UID, *, controller: bool = True) -> dict[str, Any]:
    ref = {"kind": "LLMDeployment", "name": "m", "uid": uid, "controller": controller}
    return {"metadata": {"name": "m", "ownerReferences": [ref]}}


def test_our_own_child_is_no_conflict() -> None:
    assert preflight.conflict(owned(), kind="Service", name="m", uid=UID) is None
    assert preflight.conflict(None, kind="Service", name="m", uid=UID) is None


def test_foreign_service_is_a_name_conflict_naming_its_manager() -> None:
    foreign = {"metadata": {"name": "m", "managedFields": [{"manager": "kubectl-create"}]}}
    p = preflight.conflict(foreign, kind="Service", name="m", uid=UID)
    assert p is not None and (p.type, p.reason, p.phase) == (
        "NameConflict",
        "NameConflict",
        "Failed",
    )
    assert "Service/m" in p.message and "kubectl-create" in p.message


def test_child_of_another_llmdeployment_names_that_owner() -> None:
    p = preflight.conflict(owned("other"), kind="Deployment", name="m", uid=UID)
    assert p is not None and "owned by LLMDeployment/m" in p.message


def test_a_non_controller_reference_does_not_make_it_ours() -> None:
    assert preflight.conflict(owned(controller=False), kind="Service", name="m", uid=UID)


def pod(name: str, waiting: str, message: str = "", image: str = "img:1") -> dict[str, Any]:
    c = {
        "name": "runtime",
        "image": image,
        "state": {"waiting": {"reason": waiting, "message": message}},
    }
    return {"metadata": {"name": name}, "status": {"containerStatuses": [c]}}


@pytest.mark.parametrize(
    ("reason", "phase"),
    [
        ("ErrImageNeverPull", "Failed"),
        ("InvalidImageName", "Failed"),
        ("ErrImagePull", "Degraded"),
        ("ImagePullBackOff", "Degraded"),
    ],
)
def test_image_problems_name_pod_image_and_reason(reason: str, phase: str) -> None:
    [p] = preflight.pod_problems([pod("p1", reason, "nope", image="bad:ref")])
    assert (p.type, p.reason, p.phase) == ("ImagePullFailed", reason, phase)
    assert "pod p1" in p.message and "bad:ref" in p.message


def test_still_creating_is_no_problem() -> None:
    assert preflight.pod_problems([pod("p1", "ContainerCreating")]) == []


def test_env_secret_key_ref_to_a_missing_secret() -> None:
    [p] = preflight.pod_problems(
        [pod("p1", "CreateContainerConfigError", 'secret "tok" not found')]
    )
    assert (p.type, p.reason) == ("SecretMissing", "SecretNotFound")
    assert "'tok'" in p.message and "pod p1" in p.message


def event(kind: str, name: str, reason: str, message: str) -> dict[str, Any]:
    return {"involvedObject": {"kind": kind, "name": name}, "reason": reason, "message": message}


def test_failed_mount_of_a_missing_secret_volume_is_secret_not_found() -> None:
    text = 'MountVolume.SetUp failed for volume "tls" : secret "my-tls" not found'
    evs = [event("Pod", "p1", "FailedMount", text), event("Pod", "gone", "FailedMount", text)]
    [p] = preflight.event_problems(evs, pods=["p1"], owners=[], short=False)
    assert (p.reason, p.message) == ("SecretNotFound", "Secret 'my-tls' not found")


def test_other_failed_mounts_degrade() -> None:
    evs = [event("Pod", "p1", "FailedMount", "timed out waiting for the condition")]
    [p] = preflight.event_problems(evs, pods=["p1"], owners=[], short=False)
    assert (p.reason, p.phase) == ("FailedMount", "Degraded")


def test_failed_create_counts_only_while_pods_are_missing() -> None:
    text = 'pods "m-abc-x" is forbidden: no PriorityClass with name gold was found'
    evs = [event("ReplicaSet", "m-abc-5d8f", "FailedCreate", text)]
    [p] = preflight.event_problems(evs, pods=[], owners=["m-abc"], short=True)
    assert (p.type, p.reason) == ("PriorityClassMissing", "PriorityClassNotFound")
    assert preflight.event_problems(evs, pods=[], owners=["m-abc"], short=False) == []
    assert preflight.event_problems(evs, pods=[], owners=["other"], short=True) == []


def deployment(*conds: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "m-abc"}, "status": {"conditions": list(conds)}}


def test_replica_failure_condition_names_the_priority_class() -> None:
    msg = 'pods "m-abc-1" is forbidden: no PriorityClass with name gold was found'
    d = deployment(
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": msg}
    )
    [p] = preflight.deployment_problems(d)
    assert p.reason == "PriorityClassNotFound" and "gold" in p.message and "m-abc" in p.message


def test_progress_deadline_exceeded_degrades() -> None:
    d = deployment({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"})
    [p] = preflight.deployment_problems(d)
    assert (p.reason, p.phase) == ("ProgressDeadlineExceeded", "Degraded")
    ok = deployment({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"})
    assert preflight.deployment_problems(ok) == [] and preflight.deployment_problems(None) == []


def on_node(name: str, node: str, claim: str) -> dict[str, Any]:
    vol = {"name": "model", "persistentVolumeClaim": {"claimName": claim}}
    return {"metadata": {"name": name}, "spec": {"nodeName": node, "volumes": [vol]}}


def test_read_write_once_claim_on_two_nodes() -> None:
    pods = [on_node("a", "n1", "cache"), on_node("b", "n2", "cache")]
    assert preflight.claims_wanted(pods) == {"cache"}
    rwo = {"cache": {"spec": {"accessModes": ["ReadWriteOnce"]}}}
    [p] = preflight.claim_problems(rwo, pods)
    assert p.reason == "ReadWriteOnceClaimShared" and "n1, n2" in p.message
    rwx = {"cache": {"spec": {"accessModes": ["ReadWriteMany"]}}}
    assert preflight.claim_problems(rwx, pods) == []
    same_node = [on_node("a", "n1", "cache"), on_node("b", "n1", "cache")]
    assert preflight.claims_wanted(same_node) == set()
    assert preflight.claim_problems(rwo, same_node) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("512Mi", 512 * 2**20),
        ("2Gi", 2 * 2**30),
        ("1G", 10**9),
        (1024, 1024),
        ("1.5Gi", 3 * 2**29),
        ("x", None),
    ],
)
def test_quantity_bytes(text: Any, value: int | None) -> None:
    assert preflight.quantity_bytes(text) == value


def smollm2(memory: str | None, **limits: int) -> spec.LLMDeploymentSpec:
    runtime: dict[str, Any] = {"limits": limits}
    if memory:
        runtime["resources"] = {"limits": {"memory": memory}}
    return spec.LLMDeploymentSpec.model_validate(
        {"model": {"name": "m", "source": "builtin://smollm2-135m-instruct"}, "runtime": runtime}
    )


def test_smollm2_kv_bytes_per_token() -> None:
    # 2 (K, V) x 30 layers x 3 kv heads x 64 dims x 2 bytes (bfloat16)
    shape = preflight.MODEL_SHAPES["builtin://smollm2-135m-instruct"]
    assert shape.kv_bytes_per_token(2) == 23040


def test_kv_cache_above_the_memory_limit_names_the_fields() -> None:
    # 64 x (8192 + 8192) x 23040 B = 22.5 GiB > 4Gi
    p = preflight.kv_cache_problem(
        smollm2("4Gi", max_batch_size=64, max_input_tokens=8192, max_new_tokens=8192)
    )
    assert p is not None and p.reason == "KVCacheExceedsMemoryLimit" and p.phase is None
    for field in ("maxBatchSize", "maxInputTokens", "maxNewTokens", "limits.memory", "4Gi"):
        assert field in p.message


def test_kv_cache_that_fits_or_cannot_be_judged_is_no_problem() -> None:
    assert preflight.kv_cache_problem(smollm2("4Gi")) is None  # 8 x 2560 x 23040 B = 450Mi
    assert preflight.kv_cache_problem(smollm2(None, max_batch_size=256)) is None


def test_merged_keeps_one_condition_per_type_and_events_only_for_news() -> None:
    a = preflight.Problem("ImagePullFailed", "ErrImageNeverPull", "pod a")
    b = preflight.Problem("ImagePullFailed", "ErrImageNeverPull", "pod b")
    [m] = preflight.merged([a, b, a])
    assert m.message == "pod a; pod b"
    [cond] = preflight.conditions([m])
    assert cond == {
        "type": "ImagePullFailed",
        "status": "True",
        "reason": "ErrImageNeverPull",
        "message": "pod a; pod b",
    }
    assert preflight.appeared([m], [cond]) == []
    assert preflight.appeared([m], [{**cond, "message": "pod a"}]) == [m]


def view(**kw: Any) -> status.ServingState:
    from llm_operator.observe import DeploymentView, PodView

    dep = DeploymentView(
        generation=1, observed_generation=1, replicas=1, updated_replicas=1, ready_replicas=0
    )
    pv = PodView(
        name="p",
        revision="r",
        ready=False,
        terminating=False,
        scheduled=True,
        unschedulable_message="",
        failure=None,
    )
    return status.ServingState(
        generation=1, desired=1, revision="r", deployment=dep, pods=(pv,), **kw
    )


def test_a_problem_that_never_loads_is_failed_not_loading() -> None:
    assert status.summarize(view()).phase == "Loading"
    never = preflight.Problem("SecretMissing", "SecretNotFound", "Secret 'tls' not found")
    v = status.summarize(view(problems=(never,)))
    assert (v.phase, v.reason, v.message) == ("Failed", "SecretNotFound", "Secret 'tls' not found")


def test_a_recoverable_problem_degrades_and_a_warning_keeps_the_phase() -> None:
    backoff = preflight.Problem("ImagePullFailed", "ImagePullBackOff", "m", "Degraded")
    assert status.summarize(view(problems=(backoff,))).phase == "Degraded"
    kv = preflight.Problem("KVCacheExceedsMemory", "KVCacheExceedsMemoryLimit", "m", None)
    assert status.summarize(view(problems=(kv,))).phase == "Loading"


def test_problems_are_conditions_of_the_status_body() -> None:
    never = preflight.Problem("NameConflict", "NameConflict", "Service/m already exists")
    body = status.status_body(
        view(problems=(never,)), selector="s", endpoint="e", previous={}, now="T"
    )
    cond = {c["type"]: c for c in body["conditions"]}
    assert (
        cond["NameConflict"]["status"] == "True"
        and cond["NameConflict"]["reason"] == "NameConflict"
    )
    assert cond["Degraded"]["reason"] == "NameConflict" and body["phase"] == "Failed"
    assert body["lastError"] == "Service/m already exists"


def test_a_crash_shows_its_termination_message_in_last_error() -> None:
    from llm_operator import observe

    crashed = {
        "name": "runtime",
        "restartCount": 2,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
        "lastState": {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "message": "FetchError: no such model\n",
            }
        },
    }
    raw = {"metadata": {"name": "p"}, "status": {"containerStatuses": [crashed]}}
    dep = observe.DeploymentView(
        generation=1, observed_generation=1, replicas=1, updated_replicas=1, ready_replicas=0
    )
    o = status.ServingState(
        generation=1, desired=1, revision="", deployment=dep, pods=(observe.pod_view(raw),)
    )
    body = status.status_body(o, selector="s", endpoint="e", previous={}, now="T")
    assert body["phase"] == "Degraded" and "FetchError: no such model" in body["lastError"]
