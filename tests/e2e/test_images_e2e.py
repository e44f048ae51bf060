"""The images proven by running them: built from images/*.Dockerfile by hack/imagebuild (a warm
build reuses every layer), then run with podman as the operator's pods run them (read-only root,
uid 65532, no capabilities, no privilege escalation, only /tmp and the model volume writable).

- the runtime image fetches SmolLM2 into a model volume (the init container's job), serves it
  over gRPC and answers "Paris";
- the operator image reconciles an LLMDeployment on the local cluster to Ready.

Each test prints what it measured (cold start, start to first reconcile): `pytest -s` shows it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from bench import canary_kit as kit
from imagebuild import engine, podrun, recipe
from llm_runtime.api import client, contract
from localcluster.cp_testing import Cluster
from loopback import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]  # a cold build takes minutes

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "smollm2.yaml"
QUESTION = "What is the capital of France?"
MODEL_DIR = "/models/m"  # under the model volume, as the operator's pods lay it out
_LISTENING = re.compile(r"listening: grpc [\d.]+:(\d+) \(\w+\), metrics :(\d+)/metrics")
UID = 65532


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """{image name: podman name} of both images, built (or found up to date) by hack/imagebuild."""
    built = engine.build()
    for b in built:
        print(f"[measure] {b.ref}: {b.size / 1e6:.0f} MB, build {b.seconds:.1f} s")
    return {b.image.name: recipe.podman_name(b.ref) for b in built}


class ContainerExitedError(Exception):
    """The container under test stopped: waiting longer cannot help."""


def wait_for(what: str, probe: Any, *, timeout: float, container: podrun.Container) -> Any:
    """kit.wait_for that gives up at once, with the logs, when the container has exited."""

    def check() -> Any:
        if not container.running():
            raise ContainerExitedError(f"{container.name} exited:\n{container.logs()[-4000:]}")
        return probe()

    try:
        return kit.wait_for(what, check, timeout=timeout, interval=0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{container.name} logs:\n{container.logs()[-4000:]}") from None


def assert_hardened(container: podrun.Container) -> None:
    """Inside the container: uid/gid 65532, every capability set of PID 1 empty, no privilege
    escalation, and the root file system refuses writes (only /tmp takes them)."""
    script = (
        "import json, os\n"
        "status = dict(l.split(':\\t', 1) for l in open('/proc/1/status').read().splitlines()"
        " if ':\\t' in l)\n"
        "def writes(path):\n"
        "    try:\n"
        "        open(path, 'w').close()\n"
        "        return True\n"
        "    except OSError as e:\n"
        "        return e.strerror\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'root': writes('/x'),"
        " 'usr': writes('/opt/venv/x'), 'tmp': writes('/tmp/x'),"
        " **{k: status[k].strip() for k in ('CapEff', 'CapPrm', 'CapBnd', 'NoNewPrivs')}}))\n"
    )
    done = container.exec("python3", "-c", script)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert (seen["uid"], seen["gid"]) == (UID, UID), seen
    assert seen["CapEff"] == seen["CapPrm"] == seen["CapBnd"] == "0000000000000000", seen
    assert seen["NoNewPrivs"] == "1", seen
    assert seen["root"] == seen["usr"] == "Read-only file system", seen
    assert seen["tmp"] is True, seen


def owned_by(path: Path) -> Path:
    """`path` (a fresh folder) owned by the containers' user, as fsGroup makes a pod's volumes."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, UID, UID)
    return path


# ---- the runtime image ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_volume(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model volume after the init container: `llm-runtime fetch` of the builtin model, run
    from the image with the same hardening and no network at all."""
    volume = owned_by(tmp_path_factory.mktemp("models") / "volume")
    flags = podrun.hardened_argv(network="none", volumes=[f"{volume}:/models"])
    args = ["fetch", "builtin://smollm2-135m-instruct", MODEL_DIR, "--dtype", "bfloat16"]
    started = time.monotonic()
    done = podrun.run_once(images["runtime"], flags, args, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    print(
        f"[measure] runtime image: fetch (GGUF -> bf16 safetensors) {time.monotonic() - started:.1f} s"
    )
    assert (volume / "m" / "llm-manifest.json").is_file()
    return volume


@pytest.fixture(scope="module")
def runtime(
    images: dict[str, str], model_volume: Path
) -> Iterator[tuple[podrun.Container, int, int]]:
    """(container, grpc port, metrics port) of the runtime image serving the fetched model on
    loopback (host network; ports picked by the runtime, read from its log); stopped with
    SIGTERM at the end, which must drain and exit 0."""
    env = {
        contract.env("model"): MODEL_DIR,
        contract.env("host"): "127.0.0.1",
        contract.env("grpc_port"): "0",
        contract.env("metrics_port"): "0",
        contract.env("health_port"): "0",
        contract.env("http_port"): "0",
        contract.env("grace_seconds"): "5",
    }
    flags = podrun.hardened_argv(network="host", volumes=[f"{model_volume}:/models:ro"], env=env)
    started = time.monotonic()
    with podrun.running(images["runtime"], flags, ["serve"], prefix="llmop-e2e-runtime") as c:
        found = wait_for(
            "the runtime's ports", lambda: _LISTENING.search(c.logs()), timeout=300, container=c
        )
        grpc_port, metrics_port = int(found.group(1)), int(found.group(2))
        with client.RuntimeClient(client.Connection(f"127.0.0.1:{grpc_port}")) as rt:
            wait_for("Health SERVING", lambda: _health(rt) == "SERVING", timeout=600, container=c)
            serving = time.monotonic() - started
            answer = rt.generate(_request(), deadline=120).text
        print(
            f"[measure] runtime container: podman run -> SERVING {serving:.1f} s, "
            f"-> first answer {time.monotonic() - started:.1f} s ({answer!r})"
        )
        yield c, grpc_port, metrics_port
        assert c.stop(grace=30) == 0, c.logs()[-4000:]


def _health(rt: client.RuntimeClient) -> str:
    try:
        return rt.health(deadline=5)
    except grpc.RpcError:
        return "UNREACHABLE"


def _request() -> Any:
    return client.build_request(messages=[("user", QUESTION)], max_new_tokens=32)


def test_the_runtime_image_serves_smollm2_and_answers_paris_over_grpc(
    runtime: tuple[podrun.Container, int, int],
) -> None:
    _c, grpc_port, metrics_port = runtime
    with client.RuntimeClient(client.Connection(f"127.0.0.1:{grpc_port}")) as rt:
        info = rt.model_info()
        done = client.completion_from_stream(list(rt.generate_stream(_request())))
    assert "SmolLM2" in info.name
    assert "Paris" in done.text, done.text
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
        assert 'code="OK",method="GenerateStream"' in resp.read().decode()


def test_the_runtime_container_is_read_only_unprivileged_and_without_capabilities(
    runtime: tuple[podrun.Container, int, int],
) -> None:
    assert_hardened(runtime[0])


# ---- the operator image ---------------------------------------------------------------------


def readable_kubeconfig(cluster: Cluster, folder: Path) -> Path:
    """A copy of the cluster's admin kubeconfig the containers' user can read (the original is
    root's); the folder is mounted read-only."""
    folder = owned_by(folder)
    copy = folder / "config"
    shutil.copyfile(cluster.kubeconfig, copy)
    os.chown(copy, UID, UID)
    copy.chmod(0o400)
    return folder


def llmd(cluster: Cluster, ns: str) -> dict[str, Any]:
    return dict(cluster.kubectl_json("get", "llmd", "smollm2", "-n", ns))


def reconciled(cluster: Cluster, ns: str) -> dict[str, Any] | None:
    """The object once the operator acted on it: status for this generation, and its
    Deployment and Service created and owned by it."""
    obj = llmd(cluster, ns)
    st = obj.get("status") or {}
    if st.get("observedGeneration") != obj["metadata"]["generation"] or not st.get(
        "currentRevision"
    ):
        return None
    sel = f"{contract.LABEL_DEPLOYMENT}=smollm2"
    children = cluster.kubectl_json("get", "deployment,service", "-n", ns, "-l", sel)["items"]
    owners = {o["uid"] for c in children for o in c["metadata"].get("ownerReferences", [])}
    kinds = {c["kind"] for c in children}
    return (
        obj if kinds == {"Deployment", "Service"} and owners == {obj["metadata"]["uid"]} else None
    )


@pytest.fixture
def operator_ns(cluster: Cluster) -> Iterator[str]:
    """A namespace holding examples/smollm2.yaml, the CRDs installed, and no operator of another
    test acting there (a cluster-wide release would: wait until none runs)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/llmdeployments.llm-operator.io")
    with kit.own_namespace(cluster, "images-operator") as ns:
        kit.wait_for_no_foreign_operator(cluster, ns, own_release="")
        obj = yaml.safe_load(EXAMPLE.read_text())
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))
        yield ns


def test_the_operator_image_reconciles_an_llmdeployment_to_ready(
    images: dict[str, str], cluster: Cluster, operator_ns: str, tmp_path: Path
) -> None:
    ns = operator_ns
    health, metrics = free_port(), free_port()
    env = {
        "KUBECONFIG": "/kube/config",
        "LLM_OPERATOR_NAMESPACES": ns,
        "LLM_OPERATOR_STANDALONE": "true",
        "LLM_OPERATOR_LOG_FORMAT": "text",
        "LLM_OPERATOR_HEALTH_PORT": str(health),
        "LLM_OPERATOR_METRICS_PORT": str(metrics),
    }
    kube = readable_kubeconfig(cluster, tmp_path / "kube")
    flags = podrun.hardened_argv(network="host", volumes=[f"{kube}:/kube:ro"], env=env, memory="1g")
    started = time.monotonic()
    with podrun.running(images["operator"], flags, [], prefix="llmop-e2e-operator") as c:
        wait_for("the first reconcile", lambda: reconciled(cluster, ns), timeout=120, container=c)
        print(
            f"[measure] operator container: podman run -> first reconcile {time.monotonic() - started:.1f} s"
        )
        assert_hardened(c)
        with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=10) as resp:
            assert resp.status == 200
        ready = wait_for("Ready 1/1", lambda: _ready(cluster, ns), timeout=900, container=c)
        print(
            f"[measure] operator container: podman run -> Ready 1/1 {time.monotonic() - started:.1f} s"
        )
        conds = {x["type"]: x["status"] for x in ready["conditions"]}
        assert conds["Ready"] == conds["Available"] == "True", conds
        assert "Paris" in _ask_service(cluster, ns)
        # This container did the work: its own metrics count the reconciles (no other operator
        # watches `ns`; routine handler lines are filtered out of its log).
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as resp:
            assert _reconciles(resp.read().decode()) > 0
        # Deleted while the operator runs, so nothing is left waiting for it.
        cluster.kubectl("delete", "llmd", "smollm2", "-n", ns, "--timeout=120s")
        assert c.stop(grace=30) in (0, 143), c.logs()[-4000:]


def _reconciles(exposition: str) -> float:
    """The sum of llm_operator_reconciles_total over its labels."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "llm_operator_reconciles_total"
    )


def _ready(cluster: Cluster, ns: str) -> dict[str, Any] | None:
    st = llmd(cluster, ns).get("status") or {}
    return st if st.get("phase") == "Ready" and st.get("ready") == "1/1" else None


def _ask_service(cluster: Cluster, ns: str) -> str:
    """One chat request through the ClusterIP Service the containerized operator made."""
    svc = cluster.kubectl_json("get", "service", "smollm2", "-n", ns)
    target = f"{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    with client.RuntimeClient(client.Connection(target=target)) as rt:
        return rt.generate(_request(), deadline=120).text
