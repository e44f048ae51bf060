"""The product on a real node: the real kubelet, containerd and runc, and the project's own images.

What the process node cannot show, shown here with real containers and real cgroups:
- the Node registered by the kubelet built from k8s.io/kubernetes v1.37.2, on containerd 2.4.2;
- a container over its memory limit is killed by the kernel and reported `OOMKilled`;
- hack/kind-up.sh's steps on this node: the images built by `hack/imagebuild` from
  images/*.Dockerfile are loaded into containerd (kind's `kind load`), the chart is installed with
  the operator image, and an LLMDeployment serves SmolLM2 from the runtime image;
- `kubectl exec` and `kubectl port-forward` against that runtime pod (uid 65532, no capabilities,
  read-only root) and a greedy answer "Paris" through the forwarded port;
- a canary whose memory limit is too small is OOMKilled and rolled back with that reason.

The real node is tainted, so everything here asks for it (nodeSelector + toleration) and the
process node's tests are not disturbed.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from bench import canary_kit as kit
from llm_runtime.api import client as rtclient
from localcluster import cp_testing, rn_config, rn_node
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.e2e

RELEASE = "realnode-e2e"
NODE = rn_config.NODE_NAME
SCHEDULING: dict[str, Any] = {
    "nodeSelector": {"kubernetes.io/hostname": NODE},
    "tolerations": [{"key": rn_config.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
}
LOAD_TIMEOUT = 900.0  # first start on this node: fetch (GGUF -> safetensors) and load on 2 cores
# The stable revision's memory: torch, SmolLM2 in bf16 and the fetch's conversion fit in 3 GiB.
STABLE_RESOURCES = {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"memory": "3Gi"}}
# The canary's: torch alone does not fit in 160 MiB, so its first container is OOMKilled.
OOM_RESOURCES = {"requests": {"cpu": "100m", "memory": "160Mi"}, "limits": {"memory": "160Mi"}}
REAL_SPEC: dict[str, Any] = {
    "model": {"name": "smollm2-135m-instruct", "source": "builtin://smollm2-135m-instruct"},
    "replicas": 1,
    "runtime": {
        "limits": {"maxBatchSize": 4, "maxWaiting": 16, "maxNewTokens": 32},
        "resources": STABLE_RESOURCES,
    },
    "scheduling": SCHEDULING,
    "startupBudgetSeconds": 600,
    "drainGracePeriodSeconds": 5,
    "rollout": {
        "strategy": "Canary",
        "steps": [{"weight": 50}],
        "analysis": {"interval": f"{kit.INTERVAL}s"},
    },
}
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def real_node(cluster: Cluster) -> Iterator[str]:
    """containerd and the kubelet up, and the project's images loaded into containerd."""
    seconds = rn_node.up(cluster.layout)
    print(f"real node up in {seconds:.1f}s")
    loaded = rn_node.load_project_images(cluster.layout)
    print(f"images in containerd: {loaded}")
    yield NODE


def pod_on_node(name: str, *, command: list[str], memory: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            **SCHEDULING,
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
            "containers": [
                {
                    "name": "main",
                    "image": "llm-operator/runtime:0.1.0",
                    "imagePullPolicy": "Never",
                    "command": command,
                    "resources": {"limits": {"memory": memory}, "requests": {"memory": memory}},
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def terminated(cluster: Cluster, ns: str, name: str, *, timeout: float) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        pod = cluster.kubectl_json("get", "pod", name, "-n", ns)
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = (cs.get("state") or {}).get("terminated")
            if ended:
                return dict(ended)
        return None

    result: dict[str, Any] = kit.wait_for(f"{name} terminated", done, timeout=timeout)
    return result


def test_the_real_node_runs_the_real_kubelet_on_containerd(
    cluster: Cluster, real_node: str
) -> None:
    node = cluster.kubectl_json("get", "node", real_node)
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.37.2", info
    assert info["containerRuntimeVersion"].startswith("containerd://2."), info
    # Tainted, unless this session put every pod here (LLMOP_E2E_NODE=real, tests/conftest.py).
    tainted = cp_testing.e2e_node() != "real"
    assert (rn_config.TAINT in (node["spec"].get("taints") or [])) == tainted, node["spec"]
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == rn_config.NODE_IP


def test_a_container_over_its_memory_limit_is_oomkilled(
    cluster: Cluster, real_node: str, namespace: str
) -> None:
    hog = "b = []\nwhile True: b.append(bytearray(16 << 20))"
    cluster.apply(
        pod_on_node("hog", command=["python3", "-c", hog], memory="64Mi"), namespace=namespace
    )
    ended = terminated(cluster, namespace, "hog", timeout=180)
    assert ended["reason"] == "OOMKilled", ended
    assert ended["exitCode"] == 137, ended
    # The control: the same pod under the limit finishes normally.
    fits = "b = bytearray(8 << 20); print(len(b))"
    cluster.apply(
        pod_on_node("fits", command=["python3", "-c", fits], memory="64Mi"), namespace=namespace
    )
    ended = terminated(cluster, namespace, "fits", timeout=180)
    assert (ended["reason"], ended["exitCode"]) == ("Completed", 0), ended


@pytest.fixture(scope="module")
def ns(cluster: Cluster, real_node: str) -> Iterator[str]:
    with kit.own_namespace(cluster, "realnode") as name:
        yield name


@pytest.fixture(scope="module")
def operator_ns(cluster: Cluster, ns: str) -> Iterator[str]:
    """hack/kind-up.sh --localcluster: the images into the node's containerd, then the chart,
    its operator a real container from the operator image on the real node, watching `ns`."""
    op_ns = cp_testing.namespace_name("realnode-op")
    kit.wait_for_no_foreign_operator(cluster, ns, RELEASE)
    done = subprocess.run(
        ["bash", str(kit.REPO / "hack" / "kind-up.sh"), "--localcluster", "--no-example",
         "--namespace", op_ns, "--release", RELEASE, "--",
         "--set", f"operator.watchNamespaces={{{ns}}}", "--set", "operator.logFormat=text"],
        env=cluster.env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    print(done.stderr[-3000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    try:
        yield op_ns
    finally:
        kit.uninstall_operator(cluster, namespace=op_ns, release=RELEASE)
        cluster.kubectl("delete", "namespace", op_ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def chat(cluster: Cluster, ns: str, operator_ns: str) -> Iterator[kit.Target]:
    target = kit.Target(cluster, ns)
    target.apply(REAL_SPEC)

    def serving() -> dict[str, Any] | None:
        st = target.status()
        ok = st.get("ready") == "1/1" and (st.get("rollout") or {}).get("phase") == "Stable"
        return st if ok else None

    kit.wait_for("chat Ready 1/1 on the real node", serving, timeout=LOAD_TIMEOUT, interval=3)
    yield target
    cluster.kubectl("delete", "llmd", target.name, "-n", ns, "--timeout=120s", check=False)


def runtime_pods(chat: kit.Target) -> list[dict[str, Any]]:
    """The LLMDeployment's runtime pods (its front door, if any, has no `runtime` container)."""
    pods = chat.live_pods()
    return [p for p in pods if any(c["name"] == "runtime" for c in p["spec"]["containers"])]


def test_operator_and_runtime_run_as_real_containers_from_the_images(
    cluster: Cluster, operator_ns: str, chat: kit.Target
) -> None:
    ops = cluster.kubectl_json("get", "pods", "-n", operator_ns, "-l", kit.OPERATOR_SELECTOR)[
        "items"
    ]
    (runtime_pod,) = runtime_pods(chat)
    for pod in [*ops, runtime_pod]:
        assert pod["spec"]["nodeName"] == NODE, pod["metadata"]["name"]
        for cs in pod["status"]["containerStatuses"]:
            assert cs["containerID"].startswith("containerd://"), cs
            assert cs["imageID"].startswith("sha256:") or "@sha256:" in cs["imageID"], cs
    assert runtime_pod["status"]["podIP"].startswith("198.18."), runtime_pod["status"]
    assert int(runtime_pod["status"]["podIP"].split(".")[2]) >= 128, runtime_pod["status"]


def test_kubectl_exec_runs_inside_the_runtime_container(chat: kit.Target) -> None:
    (pod,) = runtime_pods(chat)
    name = pod["metadata"]["name"]
    probe = (
        "import os\n"
        "print('uid', os.getuid())\n"
        "print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1])\n"
        "try:\n    open('/etc/x', 'w')\nexcept OSError as e:\n    print('rootfs', e.errno)\n"
    )
    done = chat.cluster.kubectl(
        "exec", name, "-n", chat.namespace, "-c", "runtime", "--", "python3", "-c", probe
    )
    lines = done.stdout.split()
    assert lines[:2] == ["uid", "65532"], done.stdout
    assert lines[2] == "0000000000000000", done.stdout  # no effective capabilities
    assert lines[3:] == ["rootfs", "30"], done.stdout  # EROFS: the root filesystem is read-only


@contextlib.contextmanager
def port_forward(cluster: Cluster, ns: str, pod: str, port: int) -> Iterator[int]:
    """`kubectl port-forward` to a local port kubectl picks; yields it."""
    proc = subprocess.Popen(
        [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={cluster.kubeconfig}",
         "port-forward", "-n", ns, f"pod/{pod}", f":{port}", "--address", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cluster.env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+) -> \d+", line)
        assert found, f"kubectl port-forward said: {line!r}"
        yield int(found.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_kubectl_port_forward_reaches_the_runtime_and_it_answers_paris(chat: kit.Target) -> None:
    (pod,) = runtime_pods(chat)
    with port_forward(chat.cluster, chat.namespace, pod["metadata"]["name"], 50051) as local:
        conn = rtclient.Connection(target=f"127.0.0.1:{local}")
        with rtclient.RuntimeClient(conn) as rt:
            assert rt.health(deadline=30) == "SERVING"
            request = rtclient.build_request(
                messages=[("user", QUESTION)], max_new_tokens=24, temperature=0.0
            )
            answer = rt.generate(request, deadline=120)
    assert "Paris" in answer.text, answer.text


def test_a_canary_over_its_memory_limit_is_oomkilled_and_rolled_back(chat: kit.Target) -> None:
    stable = chat.settled()
    spec = {**REAL_SPEC, "runtime": {**REAL_SPEC["runtime"], "resources": OOM_RESOURCES}}
    chat.apply(spec)
    rev = chat.new_revision()
    st = chat.rolled_back(rev, timeout=600)
    rb, ro = st["rollback"], st["rollout"]
    assert (rb["from"], rb["to"], rb["reason"]) == (rev, stable, "OOMKilled"), rb
    assert "OOMKilled" in rb["message"], rb
    assert ro["stableRevision"] == stable and ro.get("rejectedRevision") == rev, ro
    kit.wait_for(
        "only the stable revision left",
        lambda: chat.deployments() == {f"{chat.name}-{stable}": 1},
        timeout=120,
    )
