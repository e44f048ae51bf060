"""The process node's pure translation of pod specs: images, argv, env, volumes, registration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from localcluster import containers, containerspec, images, mounts, netns, podsetup, registration

pytestmark = pytest.mark.unit

RULES = images.parse_rules(
    {
        "images": [
            {
                "match": "llm-operator/runtime:*",
                "entrypoint": ["{venv}/bin/llm-runtime"],
                "path": ["{venv}/bin"],
            },
            {"match": "python:*", "cmd": ["python3"], "env": {"PYTHONUNBUFFERED": "1"}},
            {"match": "busybox*", "cmd": ["sh"]},
        ]
    },
    repo=Path("/repo"),
    venv=Path("/repo/.venv"),
)
POD: dict[str, Any] = {
    "metadata": {"name": "web-0", "namespace": "team", "uid": "u-1", "labels": {"app": "web"}},
    "spec": {"nodeName": "local-node", "serviceAccountName": "robot", "containers": []},
}


def test_images_map_by_first_matching_pattern_with_placeholders_filled() -> None:
    rule = images.resolve("llm-operator/runtime:0.1.0", RULES)
    assert rule.entrypoint == ("/repo/.venv/bin/llm-runtime",)
    assert rule.base_env()["PATH"].startswith("/repo/.venv/bin:")


def test_an_unmapped_image_cannot_be_pulled() -> None:
    with pytest.raises(images.ImageNotFoundError):
        images.resolve("nginx:latest", RULES)


def test_shipped_images_yaml_maps_the_project_images_into_the_venv() -> None:
    rules = images.load_rules()
    assert (
        images.resolve("llm-operator/operator:dev", rules)
        .entrypoint[0]
        .endswith("/.venv/bin/llm-operator")
    )
    assert images.resolve("python:3.11-slim", rules).path[0].endswith("/.venv/bin")


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        ({}, ["/bin/sh"]),
        ({"args": ["echo", "hi"]}, ["/bin/echo", "hi"]),
        ({"command": ["echo"]}, ["/bin/echo"]),
        ({"command": ["echo"], "args": ["$(GREETING)", "$$(GREETING)", "$(UNKNOWN)"]},
         ["/bin/echo", "hello", "$(GREETING)", "$(UNKNOWN)"]),
    ],
)  # fmt: skip
def test_command_and_args_follow_kubernetes_rules(
    container: dict[str, Any], expected: list[str]
) -> None:
    rule = images.resolve("busybox:1", RULES)
    env = {"PATH": "/bin", "GREETING": "hello"}
    assert containerspec.argv(container, rule, env) == expected


def test_a_missing_executable_is_a_config_error() -> None:
    with pytest.raises(containerspec.ConfigError):
        containerspec.argv({"command": ["no-such-program-here"]}, RULES[2], {"PATH": "/bin"})


def test_env_orders_envfrom_then_env_with_downward_api_and_key_refs() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "CFG_A", "value": "overridden"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}},
            {"name": "URL", "value": "http://$(IP):8080"},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}},
            },
        ],
    }
    objects = {
        ("configmap", "cfg"): {"A": "1", "B": "2"},
        ("secret", "s"): {"password": "pw"},
        ("secret", "gone"): None,
    }
    env = containerspec.build_env(pod=POD, container=container, rule=RULES[1], objects=objects,
                                  service_env={"KUBERNETES_SERVICE_HOST": "198.19.0.1"},
                                  pod_ip="198.18.0.10", host_ip="198.18.0.1")  # fmt: skip
    assert env["CFG_A"] == "overridden" and env["CFG_B"] == "2"
    assert (env["POD"], env["IP"], env["SA"], env["APP"]) == (
        "web-0",
        "198.18.0.10",
        "robot",
        "web",
    )
    assert env["PASS"] == "pw" and env["URL"] == "http://198.18.0.10:8080"
    assert env["KUBERNETES_SERVICE_HOST"] == "198.19.0.1" and env["PYTHONUNBUFFERED"] == "1"
    assert "OPT" not in env


def test_a_missing_required_secret_key_blocks_the_container() -> None:
    container = {
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope"}}}]
    }
    with pytest.raises(containerspec.ConfigError):
        containerspec.build_env(pod=POD, container=container, rule=RULES[1], objects={("secret", "s"): {}},
                                service_env={}, pod_ip="", host_ip="")  # fmt: skip


def test_referenced_objects_cover_env_envfrom_and_volumes() -> None:
    pod = {"spec": {
        "containers": [{"envFrom": [{"secretRef": {"name": "a"}}],
                        "env": [{"name": "x", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}}]}],
        "volumes": [{"name": "v", "secret": {"secretName": "c"}},
                    {"name": "w", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}}],
    }}  # fmt: skip
    assert containerspec.referenced_objects(pod) == {
        ("secret", "a"),
        ("configmap", "b"),
        ("secret", "c"),
        ("configmap", "kube-root-ca.crt"),
    }


def test_service_account_projection_yields_token_ca_and_namespace_files() -> None:
    volume = {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}}  # fmt: skip
    pod = {**POD, "spec": {**POD["spec"], "volumes": [volume]}}
    assert mounts.token_requests(pod) == {("", 3607)}
    files = mounts.volume_files(volume, pod=pod, objects={("configmap", "kube-root-ca.crt"): {"ca.crt": "PEM"}},
                                tokens={("", 3607): "jwt"}, pod_ip="", host_ip="")  # fmt: skip
    assert files == {
        "token": ("jwt", 0o644),
        "ca.crt": ("PEM", 0o644),
        "namespace": ("team", 0o644),
    }
    assert podsetup.token_refresh_interval(pod) == pytest.approx(0.8 * 3607)


def test_token_request_is_bound_to_the_pod() -> None:
    body = podsetup.token_request_body(POD, audience="", expiration=600)
    assert body["spec"]["boundObjectRef"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "web-0",
        "uid": "u-1",
    }
    assert body["spec"]["audiences"] == []


def test_container_mounts_apply_subpath_and_put_parents_first() -> None:
    container = {"volumeMounts": [{"name": "cfg", "mountPath": "/etc/app/conf", "subPath": "x", "readOnly": True},
                                  {"name": "data", "mountPath": "/etc/app"}]}  # fmt: skip
    binds = mounts.container_mounts(container, {"cfg": "/s/cfg", "data": "/s/data"})
    assert binds == [
        mounts.Mount("/s/data", "/etc/app", False),
        mounts.Mount("/s/cfg/x", "/etc/app/conf", True),
    ]


def test_folder_volumes_resolve_to_host_folders() -> None:
    pod_dir = Path("/state/pods/u-1")
    assert (
        mounts.folder_source({"name": "e", "emptyDir": {}}, pod_dir=pod_dir, pvc_paths={})
        == "/state/pods/u-1/volumes/e"
    )
    assert (
        mounts.folder_source(
            {"name": "h", "hostPath": {"path": "/srv"}}, pod_dir=pod_dir, pvc_paths={}
        )
        == "/srv"
    )
    claim = {"name": "p", "persistentVolumeClaim": {"claimName": "c"}}
    assert mounts.folder_source(claim, pod_dir=pod_dir, pvc_paths={"c": "/pv/c"}) == "/pv/c"


def test_pod_ips_start_at_ten_and_skip_used_ones() -> None:
    assert netns.allocate_ip([]) == "198.18.0.10"
    assert netns.allocate_ip(["198.18.0.10", "198.18.0.11"]) == "198.18.0.12"
    assert netns.allocate_ip(["198.18.0.12"], after="198.18.0.11") == "198.18.0.13"
    assert netns.allocate_ip([], after="198.18.255.254") == "198.18.0.10"
    # The upper half of the /16 is the real node's CNI range: wrap before it.
    assert netns.allocate_ip([], after="198.18.127.253") == "198.18.127.254"
    assert netns.allocate_ip([], after="198.18.127.254") == "198.18.0.10"
    assert netns.veth_name("0123456789ab-cdef") == "llv0123456789ab"
    assert len(netns.veth_name("f" * 36)) <= 15


def test_node_advertises_gpus_and_its_bridge_address() -> None:
    cfg = registration.NodeConfig(name="local-node", gpus=2, cpus=2, memory_ki=1024)
    doc = registration.node_status(cfg, at="t")
    assert doc["capacity"]["nvidia.com/gpu"] == "2" and doc["allocatable"]["memory"] == "1024Ki"
    assert {"type": "InternalIP", "address": "198.18.0.1"} in doc["addresses"]
    assert doc["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert next(c for c in doc["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_a_claim_gets_a_prebound_host_path_volume() -> None:
    pvc = {"metadata": {"name": "data", "namespace": "team", "uid": "c-1"},
           "spec": {"resources": {"requests": {"storage": "2Gi"}}, "storageClassName": "standard"}}  # fmt: skip
    pv = registration.pv_for_claim(pvc, folder=Path("/state/pvc/team/data"))
    assert pv["spec"]["claimRef"]["uid"] == "c-1" and pv["spec"]["capacity"] == {"storage": "2Gi"}
    assert pv["spec"]["hostPath"]["path"] == "/state/pvc/team/data"
    assert pv["spec"]["storageClassName"] == "standard"


def test_a_volume_that_would_hide_the_interpreter_is_detected() -> None:
    binds = [mounts.Mount("/s/a", "/srv", False), mounts.Mount("/s/b", "/data", False)]
    needed = ["/srv/checkout/.venv/bin/python", "/root/.pyenv/bin/python3.11", "/srvx/x"]
    assert mounts.shadowed(binds, needed) == [("/srv", "/srv/checkout/.venv/bin/python")]


def test_container_identity_prefers_the_container_and_adds_fs_group() -> None:
    pod = {"spec": {"securityContext": {"runAsUser": 1, "runAsGroup": 2, "fsGroup": 3,
                                        "supplementalGroups": [4], "runAsNonRoot": True}}}  # fmt: skip
    spec = {"securityContext": {"runAsUser": 10}}
    assert containers.identity(pod, spec) == (10, 2)
    assert containers.supplemental_groups(pod) == [3, 4]
    assert containers.non_root_required(pod, {"securityContext": {"runAsNonRoot": False}}) is False


def test_content_volumes_and_read_only_claims_mount_read_only() -> None:
    pod = {"spec": {"volumes": [
        {"name": "cfg", "configMap": {"name": "c"}}, {"name": "src", "persistentVolumeClaim": {"claimName": "s", "readOnly": True}},
        {"name": "cache", "persistentVolumeClaim": {"claimName": "m"}}, {"name": "tmp", "emptyDir": {}},
    ]}}  # fmt: skip
    assert mounts.read_only_volumes(pod) == {"cfg", "src"}
    container = {
        "volumeMounts": [{"name": "src", "mountPath": "/src"}, {"name": "cache", "mountPath": "/m"}]
    }
    sources = {"src": "/h/src", "cache": "/h/m"}
    binds = mounts.container_mounts(container, sources, read_only=mounts.read_only_volumes(pod))
    assert binds == [mounts.Mount("/h/src", "/src", True), mounts.Mount("/h/m", "/m", False)]


def test_volume_files_are_written_with_their_modes(tmp_path: Path) -> None:
    mounts.write_files(tmp_path / "v", {"token": ("jwt", 0o600), "dir/ca.crt": ("PEM", 0o644)})
    assert (tmp_path / "v/token").read_text() == "jwt"
    assert (tmp_path / "v/token").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "v/dir/ca.crt").read_text() == "PEM"
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["dir", "token"]


def test_node_heartbeats_keep_the_transition_time() -> None:
    beat = registration.node_status(registration.NodeConfig(), at="t2", first=False)
    ready = next(c for c in beat["conditions"] if c["type"] == "Ready")
    assert ready["lastHeartbeatTime"] == "t2" and "lastTransitionTime" not in ready


def test_secret_data_is_decoded_to_text() -> None:
    secret = {"data": {"token": "czNjcmV0", "empty": ""}}
    assert containerspec.secret_data(secret) == {"token": "s3cret", "empty": ""}
    assert containerspec.secret_data({}) == {}


def test_a_checkout_under_a_volume_is_bound_back_and_a_replaced_folder_is_not() -> None:
    binds = [mounts.Mount("/var/pod/tmp", "/tmp", False)]
    needed = ["/tmp/ci/.venv/bin/python", "/tmp/ci/.venv", "/usr/bin/python3"]
    assert mounts.reexposed(mounts.shadowed(binds, needed)) == ["/tmp/ci"]
    whole = [mounts.Mount("/var/pod/venv", "/tmp/ci/.venv", False)]
    assert mounts.reexposed(mounts.shadowed(whole, ["/tmp/ci/.venv"])) == ["/tmp/ci/.venv"]


def test_configmap_and_secret_volumes_are_refreshed_while_the_pod_runs() -> None:
    """A kubelet propagates ConfigMap edits to mounted volumes; the front door's routes rely
    on it. Pods without such volumes are never refreshed."""
    volumes = [{"name": "routes", "configMap": {"name": "chat-frontdoor"}}]
    pod = {**POD, "spec": {**POD["spec"], "volumes": volumes}}
    assert podsetup.token_refresh_interval(pod) == podsetup.OBJECT_REFRESH_SECONDS
    secret = {
        **POD,
        "spec": {**POD["spec"], "volumes": [{"name": "s", "secret": {"secretName": "x"}}]},
    }
    assert podsetup.token_refresh_interval(secret) == podsetup.OBJECT_REFRESH_SECONDS
    empty = {**POD, "spec": {**POD["spec"], "volumes": [{"name": "tmp", "emptyDir": {}}]}}
    assert podsetup.token_refresh_interval(empty) is None
