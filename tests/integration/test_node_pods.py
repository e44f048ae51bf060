"""Pod features of the process node a user relies on: config, init containers, identity, limits."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from localcluster import node_testing as nt
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.integration
Obj = dict[str, Any]


def get_pod(cluster: Cluster, namespace: str, name: str) -> Obj:
    pod: Obj = cluster.kubectl_json("get", "pod", name, "-n", namespace)
    return pod


def pod_events(cluster: Cluster, namespace: str, name: str) -> set[tuple[str, str]]:
    """(type, reason) of the Events about a pod, as `kubectl describe` would list them."""
    selector = f"involvedObject.kind=Pod,involvedObject.name={name}"
    items = cluster.kubectl_json("get", "events", "-n", namespace, "--field-selector", selector)[
        "items"
    ]
    return {(e["type"], e["reason"]) for e in items}


def phase(cluster: Cluster, namespace: str, name: str) -> str:
    return str(get_pod(cluster, namespace, name).get("status", {}).get("phase", ""))


REPORT = """
import json, os
print(json.dumps({
    "env": {k: os.environ.get(k) for k in ("GREETING", "FROM_SECRET", "CFG_mode", "POD_NAME",
                                           "POD_NS", "POD_IP", "NODE", "ARG_ECHO")},
    "config": open("/etc/app/mode").read(),
    "init": open("/data/init-was-here").read(),
    "uid": os.getuid(),
    "cwd": os.getcwd(),
}), flush=True)
"""


def test_init_containers_config_and_downward_api_reach_the_container(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"mode": "fast"}},
                  namespace=namespace)  # fmt: skip
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"}, "stringData": {"token": "s3cret"}},
                  namespace=namespace)  # fmt: skip

    def field(path: str) -> Obj:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    spec = {
        "restartPolicy": "Never",
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
        "initContainers": [nt.container("init", ["sh", "-c", "echo done > /data/init-was-here"],
                                        volumeMounts=[{"name": "work", "mountPath": "/data"}])],
        "containers": [nt.container(
            "app", ["python", "-c", REPORT, "$(GREETING)"], workingDir="/data",
            env=[{"name": "GREETING", "value": "hello"},
                 {"name": "ARG_ECHO", "value": "$(GREETING)-again"},
                 {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
                 {"name": "POD_NAME", **field("metadata.name")}, {"name": "POD_NS", **field("metadata.namespace")},
                 {"name": "POD_IP", **field("status.podIP")}, {"name": "NODE", **field("spec.nodeName")}],
            envFrom=[{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            volumeMounts=[{"name": "work", "mountPath": "/data"},
                          {"name": "cfg", "mountPath": "/etc/app", "readOnly": True}],
        )],
        "volumes": [{"name": "work", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}],
    }  # fmt: skip
    cluster.apply(nt.pod("report", spec), namespace=namespace)
    nt.wait_until(
        lambda: phase(cluster, namespace, "report") == "Succeeded", timeout=60, what="Succeeded"
    )

    pod = get_pod(cluster, namespace, "report")
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert nt.container_status(pod, "app")["state"]["terminated"]["exitCode"] == 0
    logs = cluster.kubectl("logs", "report", "-c", "app", "-n", namespace).stdout
    report = json.loads(logs.strip().splitlines()[-1])
    assert report["env"] == {
        "GREETING": "hello", "FROM_SECRET": "s3cret", "CFG_mode": "fast", "POD_NAME": "report",
        "POD_NS": namespace, "POD_IP": pod["status"]["podIP"], "NODE": pod["spec"]["nodeName"],
        "ARG_ECHO": "hello-again",
    }  # fmt: skip
    assert report["config"] == "fast" and report["init"] == "done\n"
    assert report["uid"] == 1000 and report["cwd"] == "/data"


LIST_PODS = """
import time
from kubernetes import client, config
config.load_incluster_config()
api = client.CoreV1Api()
while True:
    try:
        api.list_namespaced_pod(open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read())
        print("ALLOWED", flush=True)
    except client.ApiException as exc:
        print("DENIED", exc.status, flush=True)
    time.sleep(1)
"""


def test_service_account_token_lists_pods_only_when_rbac_allows(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}},
        namespace=namespace,
    )
    spec = {
        "serviceAccountName": "robot",
        "containers": [nt.container("app", ["python", "-c", LIST_PODS])],
    }
    cluster.apply(nt.pod("lister", spec), namespace=namespace)

    def log_lines() -> list[str]:
        done = cluster.kubectl("logs", "lister", "-n", namespace, check=False)
        return done.stdout.splitlines() if done.returncode == 0 else []

    nt.wait_until(lambda: "DENIED 403" in log_lines(), timeout=60, what="403 before RBAC")
    assert "ALLOWED" not in log_lines()
    cluster.kubectl(
        "create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", namespace
    )
    cluster.kubectl("create", "rolebinding", "robot-reads", "--role=pod-reader",
                    f"--serviceaccount={namespace}:robot", "-n", namespace)  # fmt: skip
    # The authorizer's RBAC cache follows a watch: seconds, longer on a loaded 2-core machine.
    nt.wait_until(
        lambda: "ALLOWED" in log_lines(), timeout=90, what="ALLOWED after the RoleBinding"
    )


def test_pod_asking_for_more_gpus_than_the_node_has_stays_pending(
    cluster: Cluster, namespace: str
) -> None:
    node = cluster.kubectl_json("get", "nodes")["items"][0]
    have = int(node["status"]["allocatable"]["nvidia.com/gpu"])
    sleeper = ["python", "-c", "import time; time.sleep(600)"]

    def gpu_pod(name: str, count: int) -> Obj:
        limits = {"resources": {"limits": {"nvidia.com/gpu": str(count)}}}
        return nt.pod(name, {"containers": [nt.container("app", sleeper, **limits)]})

    cluster.apply(gpu_pod("greedy", have + 1), namespace=namespace)
    cluster.apply(gpu_pod("modest", have), namespace=namespace)
    nt.wait_until(
        lambda: phase(cluster, namespace, "modest") == "Running", timeout=40, what="modest Running"
    )
    greedy = get_pod(cluster, namespace, "greedy")
    scheduled = next(c for c in greedy["status"]["conditions"] if c["type"] == "PodScheduled")
    assert greedy["status"]["phase"] == "Pending" and not greedy["spec"].get("nodeName")
    assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"
    assert "nvidia.com/gpu" in scheduled["message"]


def test_an_image_without_a_mapping_backs_off_like_a_failed_pull(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(
        nt.pod("nowhere", {"containers": [{"name": "app", "image": "nginx:1.27"}]}),
        namespace=namespace,
    )

    def reason() -> str:
        state = nt.container_status(get_pod(cluster, namespace, "nowhere"), "app").get("state", {})
        return str(state.get("waiting", {}).get("reason", ""))

    nt.wait_until(
        lambda: reason() in ("ErrImagePull", "ImagePullBackOff"), timeout=30, what="ErrImagePull"
    )
    nt.wait_until(lambda: reason() == "ImagePullBackOff", timeout=30, what="ImagePullBackOff")
    assert phase(cluster, namespace, "nowhere") == "Pending"
    assert ("Warning", "Failed") in pod_events(cluster, namespace, "nowhere")


def test_a_crashing_container_enters_crash_loop_back_off(cluster: Cluster, namespace: str) -> None:
    spec = {"containers": [nt.container("app", ["sh", "-c", "echo boom; exit 3"])]}
    cluster.apply(nt.pod("crasher", spec), namespace=namespace)

    def backing_off() -> Obj | None:
        st = nt.container_status(get_pod(cluster, namespace, "crasher"), "app")
        waiting = st.get("state", {}).get("waiting", {})
        return st if waiting.get("reason") == "CrashLoopBackOff" else None

    st = nt.wait_until(backing_off, timeout=40, what="CrashLoopBackOff")
    assert st["restartCount"] >= 1
    assert st["lastState"]["terminated"]["exitCode"] == 3
    assert phase(cluster, namespace, "crasher") == "Running"
    assert cluster.kubectl("logs", "crasher", "-n", namespace, "--previous").stdout == "boom\n"


WRITE_ONCE = "import os; p='/data/count'; n=int(open(p).read()) if os.path.exists(p) else 0; open(p,'w').write(str(n+1)); print(n+1)"


def test_a_claim_is_bound_and_its_data_outlives_the_pod(cluster: Cluster, namespace: str) -> None:
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}  # fmt: skip
    cluster.apply(claim, namespace=namespace)
    spec = {
        "restartPolicy": "Never",
        "containers": [nt.container("app", ["python", "-c", WRITE_ONCE],
                                    volumeMounts=[{"name": "d", "mountPath": "/data"}])],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
    }  # fmt: skip

    def succeeded(name: str) -> bool:
        return phase(cluster, namespace, name) == "Succeeded"

    for name, expected in (("first", "1\n"), ("second", "2\n")):
        cluster.apply(nt.pod(name, spec), namespace=namespace)
        nt.wait_until(functools.partial(succeeded, name), timeout=40, what=f"{name} Succeeded")
        assert cluster.kubectl("logs", name, "-n", namespace).stdout == expected
    pvc = cluster.kubectl_json("get", "pvc", "data", "-n", namespace)
    assert pvc["status"]["phase"] == "Bound"


def test_failing_liveness_probe_restarts_the_container(cluster: Cluster, namespace: str) -> None:
    alive = {
        "exec": {"command": ["test", "-f", "/state/alive"]},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    started = {"tcpSocket": {"port": 8000}, "periodSeconds": 1, "failureThreshold": 30}
    script = "touch /state/alive && exec python -m http.server 8000"
    ctr = nt.container("app", ["sh", "-c", script], livenessProbe=alive, startupProbe=started,
                       volumeMounts=[{"name": "state", "mountPath": "/state"}])  # fmt: skip
    spec = {"containers": [ctr], "volumes": [{"name": "state", "emptyDir": {}}]}
    cluster.apply(nt.pod("sickly", spec), namespace=namespace)

    def started_ok() -> Obj | None:
        pod = get_pod(cluster, namespace, "sickly")
        return pod if nt.container_status(pod, "app").get("started") else None

    pod = nt.wait_until(started_ok, timeout=40, what="started by its startup probe")
    assert nt.container_status(pod, "app")["restartCount"] == 0
    done = nt.in_pod(pod, "nsenter", "-t", str(nt.pid_of(pod, "app")), "-m", "rm", "/state/alive")
    assert done.returncode == 0, done.stderr

    def restarted() -> Obj | None:
        st = nt.container_status(get_pod(cluster, namespace, "sickly"), "app")
        return st if st.get("restartCount") == 1 and st.get("started") else None

    st = nt.wait_until(restarted, timeout=40, what="restarted after failing liveness")
    assert st["lastState"]["terminated"]["exitCode"] in (137, 143)
    seen = pod_events(cluster, namespace, "sickly")
    assert {("Warning", "Unhealthy"), ("Normal", "Killing"), ("Normal", "Started")} <= seen


TRY_WRITES = """
import json, os
def attempt(path):
    try:
        with open(path, "w") as out:
            out.write("x")
        return "wrote"
    except OSError as exc:
        return exc.strerror
print(json.dumps({"volume": attempt("/data/file"), "root": attempt(f"/tmp/llmop-ro-{os.getpid()}")}))
"""


def test_read_only_root_filesystem_leaves_only_volumes_writable(
    cluster: Cluster, namespace: str
) -> None:
    ctr = nt.container("app", ["python", "-c", TRY_WRITES],
                       securityContext={"runAsUser": 1000, "readOnlyRootFilesystem": True},
                       volumeMounts=[{"name": "d", "mountPath": "/data"}])  # fmt: skip
    spec = {
        "restartPolicy": "Never",
        "containers": [ctr],
        "volumes": [{"name": "d", "emptyDir": {}}],
    }
    cluster.apply(nt.pod("readonly", spec), namespace=namespace)
    nt.wait_until(
        lambda: phase(cluster, namespace, "readonly") == "Succeeded", timeout=40, what="Succeeded"
    )
    report = json.loads(cluster.kubectl("logs", "readonly", "-n", namespace).stdout)
    assert report == {"volume": "wrote", "root": "Read-only file system"}
