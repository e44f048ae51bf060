"""Every child the operator applies, checked field by field without a cluster."""

from __future__ import annotations

from typing import Any

import pytest
from llm_operator import builders, naming, pod, spec
from llm_runtime.api import contract, options

pytestmark = pytest.mark.unit

IMAGE = "llm-operator/runtime:test"


def _d(**overrides: Any) -> spec.LLMDeployment:
    body: dict[str, Any] = {
        "metadata": {"name": "chat", "namespace": "team", "uid": "u-1", "generation": 3},
        "spec": {"model": {"name": "smollm2", "source": "builtin://smollm2-135m-instruct"}},
    }
    body["spec"].update(overrides)
    return spec.parse(body)


def _runtime_container(d: spec.LLMDeployment) -> dict[str, Any]:
    deploy, _ = builders.deployment(d, default_image=IMAGE)
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_every_child_is_owned_labelled_and_namespaced() -> None:
    d = _d()
    for child in builders.desired(d, default_image=IMAGE).children:
        meta = child["metadata"]
        assert meta["namespace"] == "team"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "llm-operator"
        assert meta["labels"][naming.LABEL_DEPLOYMENT] == "chat"
        (ref,) = meta["ownerReferences"]
        assert ref["uid"] == "u-1"
        assert ref["kind"] == "LLMDeployment"
        assert ref["controller"] is True


def test_children_are_account_deployment_services_and_budget() -> None:
    desired = builders.desired(_d(), default_image=IMAGE)
    kinds = [(c["kind"], c["metadata"]["name"]) for c in desired.children]
    assert kinds == [
        ("ServiceAccount", "chat-runtime"),
        ("Deployment", f"chat-{desired.revision}"),
        ("Service", "chat"),
        ("Service", "chat-headless"),
        ("PodDisruptionBudget", "chat"),
    ]


def test_deployment_replicas_selector_and_rolling_update_without_capacity_loss() -> None:
    deploy, revision = builders.deployment(_d(replicas=3), default_image=IMAGE)
    s = deploy["spec"]
    assert s["replicas"] == 3
    assert s["selector"]["matchLabels"] == naming.revision_selector_labels("chat", revision)
    template_labels = s["template"]["metadata"]["labels"]
    assert s["selector"]["matchLabels"].items() <= template_labels.items()
    assert s["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_one_deployment_per_revision_named_and_labelled_by_it() -> None:
    old, old_rev = builders.deployment(_d(), default_image=IMAGE)
    new, new_rev = builders.deployment(_d(), default_image="other:2", replicas=1)
    assert old_rev != new_rev
    assert old["metadata"]["name"] == f"chat-{old_rev}"
    assert new["metadata"]["name"] == f"chat-{new_rev}"
    assert new["metadata"]["labels"][naming.LABEL_REVISION] == new_rev
    assert new["spec"]["replicas"] == 1
    # Neither revision's Deployment selects the other's pods.
    new_pods = new["spec"]["template"]["metadata"]["labels"]
    assert not old["spec"]["selector"]["matchLabels"].items() <= new_pods.items()


def test_services_and_budget_select_every_revision() -> None:
    """No mesh: the canary's share of traffic is its share of the pods behind the Services."""
    desired = builders.desired(_d(), default_image=IMAGE)
    by_kind = {(c["kind"], c["metadata"]["name"]): c for c in desired.shared}
    for key in (("Service", "chat"), ("Service", "chat-headless")):
        assert naming.LABEL_REVISION not in by_kind[key]["spec"]["selector"]
    budget = by_kind[("PodDisruptionBudget", "chat")]["spec"]["selector"]["matchLabels"]
    assert budget == naming.selector_labels("chat")


def test_init_container_fetches_the_source_into_the_model_volume() -> None:
    d = _d()
    deploy, _ = builders.deployment(d, default_image=IMAGE)
    pod_spec = deploy["spec"]["template"]["spec"]
    (init,) = pod_spec["initContainers"]
    assert init["args"] == [
        "fetch",
        "builtin://smollm2-135m-instruct",
        pod.model_dir(d.spec.model),
        "--format",
        "auto",
        "--dtype",
        "bfloat16",
    ]
    assert init["image"] == IMAGE
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["model"] == {
        "name": "model",
        "emptyDir": {"sizeLimit": pod.MODEL_CACHE_SIZE_LIMIT},
    }


def test_cache_claim_replaces_the_empty_dir() -> None:
    d = _d(
        model={
            "name": "m",
            "source": "hf://org/m@0123456789abcdef0123456789abcdef01234567",
            "cacheClaimName": "model-cache",
        }
    )
    deploy, _ = builders.deployment(d, default_image=IMAGE)
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model"]["persistentVolumeClaim"] == {"claimName": "model-cache"}


def test_pvc_source_is_mounted_read_only_and_fetched_as_a_path() -> None:
    d = _d(model={"name": "m", "source": "pvc://weights/models/smol"})
    deploy, _ = builders.deployment(d, default_image=IMAGE)
    pod_spec = deploy["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["source"]["persistentVolumeClaim"] == {"claimName": "weights", "readOnly": True}
    (init,) = pod_spec["initContainers"]
    assert init["args"][1] == "/mnt/source/models/smol"
    assert {"name": "source", "mountPath": "/mnt/source", "readOnly": True} in init["volumeMounts"]


@pytest.mark.parametrize(
    ("source", "fmt", "host_type", "mount", "uri"),
    [
        ("file:///w/smol.gguf", "auto", "File", "/mnt/source/smol.gguf", "/mnt/source/smol.gguf"),
        ("/w/model.bin", "gguf", "File", "/mnt/source/model.bin", "/mnt/source/model.bin"),
        ("file:///w/tiny/", "auto", "Directory", "/mnt/source", "/mnt/source"),
        ("/w/tiny", "hf", "Directory", "/mnt/source", "/mnt/source"),
        ("/w/conv", "converted", "Directory", "/mnt/source", "/mnt/source"),
    ],
)
def test_a_node_path_source_is_a_typed_read_only_host_path(
    source: str, fmt: str, host_type: str, mount: str, uri: str
) -> None:
    d = _d(model={"name": "m", "source": source, "format": fmt})
    deploy, _ = builders.deployment(d, default_image=IMAGE)
    pod_spec = deploy["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    path = source.removeprefix("file://")
    # Typed, so the kubelet refuses a missing path (FailedMount) instead of creating a folder.
    assert volumes["source"]["hostPath"] == {"path": path, "type": host_type}
    (init,) = pod_spec["initContainers"]
    assert init["args"][1] == uri
    assert {"name": "source", "mountPath": mount, "readOnly": True} in init["volumeMounts"]
    (main,) = pod_spec["containers"]
    assert all(m["name"] != "source" for m in main["volumeMounts"])  # only the fetch reads it


def test_downloaded_and_builtin_sources_mount_no_source_volume() -> None:
    for source in ("builtin://smollm2-135m-instruct", "hf://o/m@" + "0" * 40):
        deploy, _ = builders.deployment(
            _d(model={"name": "m", "source": source}), default_image=IMAGE
        )
        pod_spec = deploy["spec"]["template"]["spec"]
        assert "source" not in {v["name"] for v in pod_spec["volumes"]}
        assert pod_spec["initContainers"][0]["args"][1] == source


def test_model_dir_differs_per_source_so_a_shared_cache_never_mixes_models() -> None:
    a = spec.ModelSpec(name="a", source="hf://o/a@0123456789abcdef0123456789abcdef01234567")
    b = spec.ModelSpec(name="a", source="hf://o/a@89abcdef0123456789abcdef0123456789abcdef")
    assert pod.model_dir(a) != pod.model_dir(b)
    assert pod.model_dir(a) != pod.model_dir(a.model_copy(update={"dtype": "float32"}))
    assert pod.model_dir(a).startswith("/models/")


def test_serve_container_env_carries_model_name_revision_and_limits() -> None:
    d = _d(
        runtime={
            "limits": {
                "maxBatchSize": 4,
                "maxWaiting": 9,
                "maxInputTokens": 100,
                "maxNewTokens": 50,
            }
        }
    )
    container = _runtime_container(d)
    _, revision = builders.deployment(d, default_image=IMAGE)
    env = _env(container)
    assert container["args"] == ["serve"]
    assert env[contract.env("model_name")] == "smollm2"
    assert env[contract.env("model_revision")] == revision
    assert env[contract.env("max_batch_size")] == "4"
    assert env[contract.env("max_waiting")] == "9"
    assert env[contract.env("max_input_tokens")] == "100"
    assert env[contract.env("max_new_tokens")] == "50"
    assert env[contract.env("model")] == pod.model_dir(d.spec.model)


def test_every_variable_the_operator_sets_is_one_the_runtime_reads() -> None:
    container = _runtime_container(
        _d(security={"tlsSecretName": "tls", "authTokenSecretName": "tok"})
    )
    env = _env(container)
    runtime_reads = {opt.env_name for opt in options.OPTIONS}
    assert set(env) - {"HOME", "HF_HOME"} <= runtime_reads
    assert env[contract.env("grpc_port")] == str(contract.RUNTIME_GRPC_PORT)
    assert env[contract.env("metrics_port")] == str(contract.RUNTIME_METRICS_PORT)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "grpc": contract.RUNTIME_GRPC_PORT,
        "metrics": contract.RUNTIME_METRICS_PORT,
        "health": contract.RUNTIME_HEALTH_PORT,
        "http": contract.RUNTIME_HTTP_PORT,
    }
    assert env[contract.env("health_port")] == str(contract.RUNTIME_HEALTH_PORT)
    # The operator sets the HTTP port itself (the spec refuses it in env and args).
    assert env[contract.env("http_port")] == str(contract.RUNTIME_HTTP_PORT)


def test_user_env_and_args_come_after_the_operators_own() -> None:
    d = _d(runtime={"env": [{"name": "X", "value": "1"}], "args": ["--log-level", "DEBUG"]})
    container = _runtime_container(d)
    assert container["args"] == ["serve", "--log-level", "DEBUG"]
    assert container["env"][-2] == {"name": "X", "value": "1"}  # revision is stamped last


def test_containers_are_non_root_read_only_without_capabilities() -> None:
    deploy, _ = builders.deployment(_d(), default_image=IMAGE)
    pod_spec = deploy["spec"]["template"]["spec"]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    for c in [*pod_spec["initContainers"], *pod_spec["containers"]]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["allowPrivilegeEscalation"] is False
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert pod_spec["automountServiceAccountToken"] is False


def test_grpc_probes_and_startup_budget() -> None:
    container = _runtime_container(_d(startupBudgetSeconds=600))
    health = {"port": contract.RUNTIME_HEALTH_PORT, "service": ""}
    assert container["startupProbe"]["grpc"] == health
    budget = (
        container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"]
    )
    assert budget == 600
    assert "grpc" in container["readinessProbe"]
    assert "grpc" in container["livenessProbe"]


def test_tls_mounts_the_secret_and_probes_keep_the_plaintext_health_port() -> None:
    container = _runtime_container(
        _d(security={"tlsSecretName": "tls", "authTokenSecretName": "tok"})
    )
    env = _env(container)
    assert env[contract.env("tls_cert")] == "/etc/llm-runtime/tls/tls.crt"
    assert env[contract.env("tls_key")] == "/etc/llm-runtime/tls/tls.key"
    assert env[contract.env("auth_token_file")] == "/etc/llm-runtime/token/token"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": contract.RUNTIME_HEALTH_PORT, "service": ""}
        assert "tcpSocket" not in container[probe]


def test_resources_and_scheduling_pass_through() -> None:
    d = _d(
        runtime={"resources": {"limits": {"nvidia.com/gpu": 1, "memory": "4Gi"}}},
        scheduling={
            "nodeSelector": {"gpu": "h100"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "serving",
        },
    )
    deploy, _ = builders.deployment(d, default_image=IMAGE)
    pod_spec = deploy["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["resources"] == {
        "limits": {"nvidia.com/gpu": 1, "memory": "4Gi"}
    }
    assert pod_spec["nodeSelector"] == {"gpu": "h100"}
    assert pod_spec["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod_spec["priorityClassName"] == "serving"


def test_drain_grace_sets_env_and_outlasts_it_in_termination_grace() -> None:
    d = _d(drainGracePeriodSeconds=40)
    deploy, _ = builders.deployment(d, default_image=IMAGE)
    sleep = pod.PRESTOP_SLEEP_SECONDS
    assert deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == sleep + 45
    assert _env(_runtime_container(d))[contract.env("grace_seconds")] == "40"


def test_a_stopping_pod_serves_on_until_clients_dropped_it() -> None:
    """On SIGTERM the runtime refuses new calls; the preStop sleep comes first, so calls already
    routed to a retired revision's pod (endpoints lag) still succeed."""
    hook = _runtime_container(_d())["lifecycle"]["preStop"]
    assert hook == {"sleep": {"seconds": pod.PRESTOP_SLEEP_SECONDS}}
    assert pod.PRESTOP_SLEEP_SECONDS >= 3


def test_revision_changes_with_the_pods_and_not_with_replicas() -> None:
    rev = builders.desired(_d(), default_image=IMAGE).revision
    assert builders.desired(_d(replicas=5), default_image=IMAGE).revision == rev
    assert builders.desired(_d(), default_image="other:1").revision != rev
    limits = {"limits": {"maxBatchSize": 2}}
    assert builders.desired(_d(runtime=limits), default_image=IMAGE).revision != rev
    deploy, _ = builders.deployment(_d(), default_image=IMAGE)
    assert deploy["spec"]["template"]["metadata"]["labels"][naming.LABEL_REVISION] == rev


def test_spec_image_wins_over_the_default() -> None:
    container = _runtime_container(_d(runtime={"image": "mine:2"}))
    assert container["image"] == "mine:2"


def test_services_select_the_pods_and_headless_has_no_cluster_ip() -> None:
    d = _d(service={"port": 6000})
    svc, headless = builders.service(d), builders.headless_service(d)
    assert svc["spec"]["type"] == "ClusterIP"
    assert headless["spec"]["clusterIP"] == "None"
    for s in (svc, headless):
        assert s["spec"]["selector"] == naming.selector_labels("chat")
        assert s["spec"]["ports"][0]["port"] == 6000
        assert s["spec"]["ports"][0]["targetPort"] == "grpc"


def test_both_services_offer_the_openai_http_port_of_the_runtime_pods() -> None:
    d = _d(service={"port": 6000})
    container_ports = {p["name"] for p in _runtime_container(d)["ports"]}
    for s in (builders.service(d), builders.headless_service(d)):
        by_name = {p["name"]: p for p in s["spec"]["ports"]}
        assert by_name["http"] == {
            "name": "http",
            "port": contract.RUNTIME_HTTP_PORT,
            "targetPort": "http",
            "protocol": "TCP",
            "appProtocol": "http",
        }
        assert {p["targetPort"] for p in by_name.values()} <= container_ports


def test_with_the_front_door_the_services_offer_no_http_port() -> None:
    """The front door proxies gRPC only; HTTP then goes to the pods' own IPs."""
    d = _d(rollout={"trafficRouting": "FrontDoor", "steps": [{"weight": 10}]})
    for s in (builders.service(d), builders.headless_service(d)):
        assert [p["name"] for p in s["spec"]["ports"]] == ["grpc", "metrics"]
    assert "http" in {p["name"] for p in _runtime_container(d)["ports"]}


def test_budget_allows_one_disruption_and_account_mounts_no_token() -> None:
    d = _d()
    assert builders.pod_disruption_budget(d)["spec"]["maxUnavailable"] == 1
    assert builders.service_account(d)["automountServiceAccountToken"] is False


def test_endpoint_and_selector_string() -> None:
    assert naming.endpoint(_d()) == f"chat.team.svc:{contract.RUNTIME_GRPC_PORT}"
    assert naming.selector_string("chat") == (
        f"{contract.LABEL_INSTANCE}=chat,{contract.LABEL_DEPLOYMENT}=chat"
    )


def test_connections_age_out_so_long_lived_clients_reach_new_pods() -> None:
    """kube-proxy balances per connection: without an age, a client's one channel never
    reaches a canary pod that starts after it connected."""
    env = _env(_runtime_container(_d()))
    assert env[contract.env("max_connection_age_seconds")] == "30"
    assert env[contract.env("max_connection_age_grace_seconds")] == "300"
    tuned = _d(service={"maxConnectionAgeSeconds": 0, "maxConnectionAgeGraceSeconds": 60})
    env = _env(_runtime_container(tuned))
    assert env[contract.env("max_connection_age_seconds")] == "0"
    assert env[contract.env("max_connection_age_grace_seconds")] == "60"
