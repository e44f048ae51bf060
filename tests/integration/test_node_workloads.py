"""What a user sees when workloads run on the process node: Deployments, Services, restarts.

Each test gets a fresh namespace; pods are `python:3.11` containers, i.e. the venv's python
started in the pod's own network and mount namespaces.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from localcluster import netns
from localcluster import node_testing as nt
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.integration
Obj = dict[str, Any]


def pods_of(cluster: Cluster, namespace: str, app: str) -> list[Obj]:
    items: list[Obj] = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", f"app={app}")[
        "items"
    ]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def get_pod(cluster: Cluster, namespace: str, name: str) -> Obj:
    pod: Obj = cluster.kubectl_json("get", "pod", name, "-n", namespace)
    return pod


def ready_pod(cluster: Cluster, namespace: str, name: str) -> Obj | None:
    pod = get_pod(cluster, namespace, name)
    return pod if nt.is_ready(pod) else None


def available(cluster: Cluster, namespace: str, name: str) -> bool:
    dep = cluster.kubectl_json("get", "deployment", name, "-n", namespace)
    conditions = dep.get("status", {}).get("conditions", [])
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions) and (
        dep["status"].get("readyReplicas") == dep["spec"]["replicas"]
    )


def web_pod_spec(**readiness: Any) -> Obj:
    probe = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, **readiness}
    return {
        "containers": [nt.http_server(readiness=probe)],
        "volumes": [{"name": "www", "emptyDir": {}}],
        "terminationGracePeriodSeconds": 5,
    }


def fetch(client: Obj, url: str) -> str:
    """GET url from inside a pod's network namespace; the body or an error text."""
    code = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=5).status)"
    done = nt.in_pod(client, "python3", "-c", code)
    return done.stdout.strip() or done.stderr.strip()[-300:]


def test_deployment_becomes_available_and_answers_on_pod_ips_and_cluster_ip(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(nt.deployment("web", replicas=2, pod_spec=web_pod_spec()), namespace=namespace)
    cluster.apply(nt.service("web", port=80, target="http"), namespace=namespace)
    headless = nt.service("web", port=8000, target="http", headless=True)
    headless["metadata"]["name"] = "web-pods"
    cluster.apply(headless, namespace=namespace)
    client = nt.pod("client", {"containers": [nt.container("c", ["sleep", "600"])]})
    cluster.apply(client, namespace=namespace)
    nt.wait_until(lambda: available(cluster, namespace, "web"), timeout=60, what="web Available")

    web = pods_of(cluster, namespace, "web")
    ips = sorted(p["status"]["podIP"] for p in web)
    assert len(set(ips)) == 2 and all(ip.startswith("198.18.") for ip in ips)
    here: Obj = nt.wait_until(
        lambda: ready_pod(cluster, namespace, "client"), timeout=30, what="client Ready"
    )
    for ip in ips:  # from the host, straight to the pod IP
        assert urllib.request.urlopen(f"http://{ip}:8000/ready", timeout=5).status == 200
    svc = cluster.kubectl_json("get", "service", "web", "-n", namespace)
    assert svc["spec"]["clusterIP"].startswith("198.19.")
    # From another pod, through the ClusterIP, by every name a pod may use.
    for host in (
        svc["spec"]["clusterIP"],
        "web",
        f"web.{namespace}",
        f"web.{namespace}.svc.cluster.local",
    ):
        url = f"http://{host}/ready"

        def answered(u: str = url) -> bool:
            return fetch(here, u) == "200"

        nt.wait_until(answered, timeout=20, what=f"{url} from a pod")

    def headless_ips() -> list[str]:
        code = "import socket; print(' '.join(sorted(socket.gethostbyname_ex('web-pods')[2])))"
        return nt.in_pod(here, "python3", "-c", code).stdout.split()

    nt.wait_until(lambda: headless_ips() == ips, timeout=20, what="headless name -> both pod IPs")


def test_killed_container_is_restarted_and_counted(cluster: Cluster, namespace: str) -> None:
    cluster.apply(nt.pod("victim", web_pod_spec(), labels={"app": "victim"}), namespace=namespace)
    first: Obj = nt.wait_until(
        lambda: ready_pod(cluster, namespace, "victim"), timeout=40, what="victim Ready"
    )
    os.kill(nt.pid_of(first, "web"), signal.SIGKILL)

    def restarted() -> Obj | None:
        p = get_pod(cluster, namespace, "victim")
        st = nt.container_status(p, "web")
        return (
            p
            if st.get("restartCount") == 1 and "running" in st.get("state", {}) and nt.is_ready(p)
            else None
        )

    after: Obj = nt.wait_until(restarted, timeout=40, what="restartCount 1 and running again")
    last = nt.container_status(after, "web")["lastState"]["terminated"]
    assert last["exitCode"] == 137 and last["reason"] == "Error"
    assert nt.pid_of(after, "web") != nt.pid_of(first, "web")


def test_failing_readiness_probe_takes_the_pod_out_of_the_endpoint_slice(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(
        nt.deployment("web", replicas=2, pod_spec=web_pod_spec(failureThreshold=1)),
        namespace=namespace,
    )
    cluster.apply(nt.service("web", port=80, target="http"), namespace=namespace)
    nt.wait_until(lambda: available(cluster, namespace, "web"), timeout=60, what="web Available")
    sick, healthy = pods_of(cluster, namespace, "web")

    def ready_ips() -> set[str]:
        slices = cluster.kubectl_json("get", "endpointslices", "-n", namespace,
                                      "-l", "kubernetes.io/service-name=web")["items"]  # fmt: skip
        return {a for s in slices for e in s.get("endpoints") or []
                if e.get("conditions", {}).get("ready") for a in e["addresses"]}  # fmt: skip

    both = {sick["status"]["podIP"], healthy["status"]["podIP"]}
    nt.wait_until(lambda: ready_ips() == both, timeout=20, what="both pods in the slice")
    done = nt.in_pod(sick, "nsenter", "-t", str(nt.pid_of(sick, "web")), "-m", "rm", "/www/ready")
    assert done.returncode == 0, done.stderr
    nt.wait_until(lambda: ready_ips() == {healthy["status"]["podIP"]}, timeout=20,
                  what="only the healthy pod left ready in the slice")  # fmt: skip
    assert not nt.is_ready(get_pod(cluster, namespace, sick["metadata"]["name"]))


SIGTERM_RECORDER = """
import signal, sys, time
def on_term(signum, frame):
    print("got SIGTERM", flush=True)
    open("/out/sigterm", "w").write(str(time.time()))
signal.signal(signal.SIGTERM, on_term)  # and keep running: only SIGKILL ends us
print("started", flush=True)
while True:
    time.sleep(0.2)
"""


def test_pod_hooks_run_and_deletion_sends_sigterm_and_waits_the_grace_period(
    cluster: Cluster, namespace: str, tmp_path: Any
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    spec = {
        "terminationGracePeriodSeconds": 4,
        "containers": [nt.container("app", ["python", "-c", SIGTERM_RECORDER],
                                    volumeMounts=[{"name": "out", "mountPath": "/out"}],
                                    lifecycle={"preStop": {"exec": {"command": [
                                        "sh", "-c", "date +%s.%N > /out/prestop"]}},
                                               "postStart": {"exec": {"command": [
                                        "sh", "-c", "date +%s.%N > /out/poststart"]}}})],
        "volumes": [{"name": "out", "hostPath": {"path": str(out)}}],
    }  # fmt: skip
    cluster.apply(nt.pod("stubborn", spec), namespace=namespace)
    nt.wait_until(lambda: "running" in nt.container_status(get_pod(cluster, namespace, "stubborn"), "app").get("state", {}),
                  timeout=40, what="stubborn running")  # fmt: skip
    time.sleep(1)  # let python install its handler
    name = netns.netns_name(get_pod(cluster, namespace, "stubborn")["metadata"]["uid"])
    assert Path("/run/netns", name).exists()
    # What the node said about the pod (hook failures, restarts), for a failure message.
    events = cluster.kubectl_json("get", "events", "-n", namespace)["items"]
    seen = {
        "files": sorted(p.name for p in out.iterdir()),
        "events": [(e["reason"], e.get("message")) for e in events],
        "status": nt.container_status(get_pod(cluster, namespace, "stubborn"), "app"),
    }
    began, began_wall = time.monotonic(), time.time()
    cluster.kubectl("delete", "pod", "stubborn", "-n", namespace, "--wait=true", timeout=60)
    took = time.monotonic() - began
    assert (out / "poststart").exists(), f"the postStart hook did not run in the container: {seen}"
    assert (out / "prestop").exists(), "the preStop hook did not run in the container"
    assert (out / "sigterm").exists(), "the container never saw SIGTERM"
    assert float((out / "prestop").read_text()) <= float((out / "sigterm").read_text())
    assert 4 <= took < 12, f"deletion took {took:.1f}s for a 4s grace period"
    assert float((out / "sigterm").read_text()) - began_wall < 3, "SIGTERM came late"
    # Nothing of the pod stays on the host: its namespace and its /etc/netns files are gone.
    time.sleep(1)
    assert not Path("/run/netns", name).exists() and not Path("/etc/netns", name).exists()


def test_rolling_update_respects_max_surge_and_max_unavailable(
    cluster: Cluster, namespace: str
) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    dep = nt.deployment("roll", replicas=3, pod_spec=web_pod_spec(), strategy=strategy)
    cluster.apply(dep, namespace=namespace)
    nt.wait_until(lambda: available(cluster, namespace, "roll"), timeout=60, what="roll Available")
    dep["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "VERSION", "value": "2"}]
    cluster.apply(dep, namespace=namespace)

    most_pods, fewest_ready = 0, 3
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        d = cluster.kubectl_json("get", "deployment", "roll", "-n", namespace)
        st = d.get("status", {})
        items = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "app=roll")["items"]
        alive = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        most_pods = max(most_pods, len(alive))
        fewest_ready = min(fewest_ready, sum(1 for p in items if nt.is_ready(p)))
        done = (st.get("updatedReplicas") == 3 and st.get("availableReplicas") == 3
                and st.get("replicas") == 3 and st.get("observedGeneration") == d["metadata"]["generation"])  # fmt: skip
        if done:
            break
        time.sleep(0.3)
    else:
        raise AssertionError("rollout did not finish in 90s")
    assert most_pods <= 4, f"maxSurge 1 allows 4 pods, saw {most_pods}"
    assert fewest_ready >= 3, f"maxUnavailable 0 keeps 3 ready, saw {fewest_ready}"
    envs = [p["spec"]["containers"][0].get("env") for p in pods_of(cluster, namespace, "roll")]
    assert envs == [[{"name": "VERSION", "value": "2"}]] * 3
