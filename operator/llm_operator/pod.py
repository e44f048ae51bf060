"""The runtime pod template (pure): init container fetches the model, main container serves it.

The revision is a hash of the template before the revision is stamped into it, so it changes
exactly when something that defines the pods changes (image, model, limits, env, scheduling...).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from llm_runtime.api import contract

from llm_operator import naming, spec

# Environment the runtime reads, named by its option table (llm_runtime.api.options;
# `llm-runtime serve --help`). The model's name and revision become its metric labels.
ENV_MODEL_NAME = contract.env("model_name")
ENV_MODEL_REVISION = contract.env("model_revision")
RUNTIME_USER = 65532
PROBE_PERIOD_SECONDS = 5
TLS_MOUNT = "/etc/llm-runtime/tls"
TOKEN_MOUNT = "/etc/llm-runtime/token"
RUNTIME_CONTAINER = "runtime"
# Before SIGTERM, a terminating pod keeps serving this long while the endpoints controller and
# clients drop it (on SIGTERM the runtime answers new calls UNAVAILABLE): a revision retired
# after a promotion or a rollback loses no requests that were already on their way to it.
PRESTOP_SLEEP_SECONDS = 5
FETCH_CONTAINER = "fetch"
# A crashed container's last log lines become its termination message (the status shows them),
# unless it wrote a message file itself.
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"
# The model cache emptyDir's cap when the runtime has no ephemeral-storage limit: a ~15B model in
# bf16 plus the download it was converted from. A wrong or runaway source then evicts its own pod
# instead of filling the node's disk; larger models set an ephemeral-storage limit (the cap then
# follows it) or a cacheClaimName.
MODEL_CACHE_SIZE_LIMIT = "64Gi"
# /tmp is HOME for both containers (no passwd entry for the numeric user): only libraries' small
# user caches and temp files land there; the model goes to the model volume.
TMP_SIZE_LIMIT = "512Mi"


def node_path(source: str) -> str | None:
    """The node path a `file:///path` or bare `/path` source names, else None."""
    if source.startswith("file://"):
        return source.removeprefix("file://")
    return source if source.startswith("/") else None


def node_path_type(model: spec.ModelSpec) -> str:
    """The hostPath type of a node-path source: `File` for one GGUF file, `Directory` for a
    folder. A typed hostPath makes the kubelet check the path (a missing one fails the mount,
    FailedMount, which the status shows) instead of creating an empty folder there, as an
    untyped one would. `auto` goes by the name: the runtime's auto-detection reads a folder
    unless the path is a .gguf file."""
    if model.format == "gguf":
        return "File"
    if model.format == "auto" and model.source.rstrip("/").endswith(".gguf"):
        return "File"
    return "Directory"


def source_mount_path(model: spec.ModelSpec) -> str:
    """Where the fetch container sees the source: a folder at SOURCE_MOUNT, a single file
    under it by its own name (the runtime tells GGUF by the suffix)."""
    path = node_path(model.source)
    if path is not None and node_path_type(model) == "File":
        return f"{naming.SOURCE_MOUNT}/{path.rstrip('/').rsplit('/', 1)[-1]}"
    return naming.SOURCE_MOUNT


def fetch_uri(model: spec.ModelSpec) -> str:
    """The URI `llm-runtime fetch` reads: a pvc:// path or a node path becomes the path under
    its read-only mount in the fetch container; other URIs pass as written."""
    if model.source.startswith("pvc://"):
        _claim, _, path = model.source.removeprefix("pvc://").partition("/")
        return f"{naming.SOURCE_MOUNT}/{path}"
    if node_path(model.source) is not None:
        return source_mount_path(model)
    return model.source


def source_claim(source: str) -> str | None:
    """The PersistentVolumeClaim a pvc:// source names, else None."""
    if not source.startswith("pvc://"):
        return None
    return source.removeprefix("pvc://").partition("/")[0]


def source_volume(model: spec.ModelSpec) -> dict[str, Any] | None:
    """The read-only volume the fetch container reads the weights from: the claim of a pvc://
    source, the node path of a file:// one (hostPath, so Pod Security's baseline and restricted
    levels refuse it: use pvc:// there), None for sources it downloads or has built in."""
    claim = source_claim(model.source)
    if claim:
        return {"name": "source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    path = node_path(model.source)
    if path is not None:
        return {"name": "source", "hostPath": {"path": path, "type": node_path_type(model)}}
    return None


def model_dir(model: spec.ModelSpec) -> str:
    """Where the fetched model lives; keyed by source, format and dtype so a shared cache
    (cacheClaimName) never mixes two models or two conversions."""
    key = hashlib.sha256(f"{model.source}|{model.format}|{fetch_dtype(model)}".encode())
    return f"{naming.MODEL_MOUNT}/{key.hexdigest()[:12]}"


def fetch_dtype(model: spec.ModelSpec) -> str:
    """The dtype `fetch` stores the weights in: it needs an explicit one; auto means bf16, the
    dtype this project serves in (it halves memory and is the fast path on CPUs and GPUs)."""
    return "bfloat16" if model.dtype == "auto" else model.dtype


def model_cache_size_limit(s: spec.LLMDeploymentSpec) -> str:
    """The model emptyDir's sizeLimit: the runtime's ephemeral-storage limit when it has one (the
    pod may use no more disk anyway, and the kubelet evicts on either), else MODEL_CACHE_SIZE_LIMIT."""
    return str(s.runtime.resources.limits.get("ephemeral-storage", MODEL_CACHE_SIZE_LIMIT))


def _volumes(s: spec.LLMDeploymentSpec) -> list[dict[str, Any]]:
    model: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": s.model.cache_claim_name}}
        if s.model.cache_claim_name
        else {"emptyDir": {"sizeLimit": model_cache_size_limit(s)}}
    )
    volumes: list[dict[str, Any]] = [
        {"name": "model", **model},
        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}},
    ]
    source = source_volume(s.model)
    if source:
        volumes.append(source)
    if s.security.tls_secret_name:
        volumes.append({"name": "tls", "secret": {"secretName": s.security.tls_secret_name}})
    if s.security.auth_token_secret_name:
        secret = {"secretName": s.security.auth_token_secret_name}
        volumes.append({"name": "token", "secret": secret})
    return volumes


def container_security_context() -> dict[str, Any]:
    """Non-root, read-only root filesystem, no capabilities: the runtime needs none."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_USER,
        "runAsGroup": RUNTIME_USER,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    """The pod-level half: every container non-root, volumes group-owned by the same user."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_USER,
        "runAsGroup": RUNTIME_USER,
        "fsGroup": RUNTIME_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _base_env(s: spec.LLMDeploymentSpec, *, hf_home: str) -> list[dict[str, Any]]:
    """Environment both containers share: a writable HOME, the Hugging Face cache, the name."""
    return [
        {"name": "HOME", "value": "/tmp"},
        {"name": "HF_HOME", "value": hf_home},
        {"name": ENV_MODEL_NAME, "value": s.model.name},
    ]


def user_env(s: spec.LLMDeploymentSpec) -> list[dict[str, Any]]:
    """spec.runtime.env as EnvVar objects (valueFrom kept: HF_TOKEN from a Secret, proxies)."""
    return [e.model_dump(by_alias=True, exclude_none=True) for e in s.runtime.env]


def fetch_env(s: spec.LLMDeploymentSpec) -> list[dict[str, Any]]:
    """The fetcher's environment: the Hugging Face cache on the model volume (a cacheClaimName
    keeps downloads across pods), then the user's env, so HF_TOKEN reaches a gated model and
    HTTPS_PROXY a proxied network. It is the only container that downloads anything."""
    return _base_env(s, hf_home=f"{naming.MODEL_MOUNT}/.hf") + user_env(s)


def _fetch_container(s: spec.LLMDeploymentSpec, image: str) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = [
        {"name": "model", "mountPath": naming.MODEL_MOUNT},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if source_volume(s.model):
        mounts.append({"name": "source", "mountPath": source_mount_path(s.model), "readOnly": True})
    return {
        "name": FETCH_CONTAINER,
        "image": image,
        "imagePullPolicy": s.runtime.image_pull_policy,
        "args": [
            "fetch",
            fetch_uri(s.model),
            model_dir(s.model),
            "--format",
            s.model.format,
            "--dtype",
            fetch_dtype(s.model),
        ],
        "env": fetch_env(s),
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
    }


def runtime_env(s: spec.LLMDeploymentSpec) -> list[dict[str, Any]]:
    """The serve container's settings as the runtime's variables (by setting: the field names of
    `llm-runtime serve`), then the user's own env."""
    limits = s.runtime.limits
    settings: dict[str, str] = {
        "model": model_dir(s.model),
        "dtype": s.model.dtype,
        "grpc_port": str(s.service.port),
        "metrics_port": str(naming.METRICS_PORT),
        "health_port": str(contract.RUNTIME_HEALTH_PORT),
        "http_port": str(contract.RUNTIME_HTTP_PORT),  # the Services and the container port name it
        "max_batch_size": str(limits.max_batch_size),
        "max_waiting": str(limits.max_waiting),
        "max_input_tokens": str(limits.max_input_tokens),
        "max_new_tokens": str(limits.max_new_tokens),
        "grace_seconds": str(s.drain_grace_period_seconds),
        "max_connection_age_seconds": str(s.service.max_connection_age_seconds),
        "max_connection_age_grace_seconds": str(s.service.max_connection_age_grace_seconds),
    }
    if s.security.tls_secret_name:
        settings["tls_cert"] = f"{TLS_MOUNT}/tls.crt"
        settings["tls_key"] = f"{TLS_MOUNT}/tls.key"
    if s.security.auth_token_secret_name:
        settings["auth_token_file"] = f"{TOKEN_MOUNT}/token"
    # The model volume is read-only here, so the Hugging Face cache (never used: the runtime
    # loads a local directory) points at the writable /tmp.
    env = _base_env(s, hf_home="/tmp/.hf")
    return env + [{"name": contract.env(k), "value": v} for k, v in settings.items()] + user_env(s)


def probe_action() -> dict[str, Any]:
    """gRPC health (grpc.health.v1) says whether the model can serve. The kubelet's gRPC probe
    speaks neither TLS nor bearer tokens, so it asks the runtime's plaintext health-only port,
    which mirrors the main port's serving status: the same probe with TLS and auth on or off (a
    TCP check of a TLS port would call a pod ready before its model loaded)."""
    return {"grpc": {"port": contract.RUNTIME_HEALTH_PORT, "service": ""}}


def health_probes(s: spec.LLMDeploymentSpec) -> dict[str, dict[str, Any]]:
    """Startup covers the whole fetch-and-load budget; readiness and liveness take over after."""
    action = probe_action()
    startup_failures = max(1, math.ceil(s.startup_budget_seconds / PROBE_PERIOD_SECONDS))
    return {
        "startupProbe": {
            **action,
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "failureThreshold": startup_failures,
            "timeoutSeconds": 3,
        },
        "readinessProbe": {
            **action,
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "failureThreshold": 2,
            "timeoutSeconds": 3,
        },
        "livenessProbe": {
            **action,
            "periodSeconds": 10,
            "failureThreshold": 6,
            "timeoutSeconds": 5,
        },
    }


def _runtime_container(s: spec.LLMDeploymentSpec, image: str) -> dict[str, Any]:
    """The serving container. It mounts the model read-only: only the fetcher writes the cache,
    so a serving pod can never corrupt the weights a shared cacheClaimName gives other pods."""
    mounts: list[dict[str, Any]] = [
        {"name": "model", "mountPath": naming.MODEL_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if s.security.tls_secret_name:
        mounts.append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
    if s.security.auth_token_secret_name:
        mounts.append({"name": "token", "mountPath": TOKEN_MOUNT, "readOnly": True})
    resources = s.runtime.resources.model_dump(exclude_defaults=True)
    return {
        "name": RUNTIME_CONTAINER,
        "image": image,
        "imagePullPolicy": s.runtime.image_pull_policy,
        "args": ["serve", *s.runtime.args],
        "env": runtime_env(s),
        "ports": [
            {"name": "grpc", "containerPort": s.service.port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": naming.METRICS_PORT, "protocol": "TCP"},
            {"name": "health", "containerPort": contract.RUNTIME_HEALTH_PORT, "protocol": "TCP"},
            # The OpenAI-compatible API: the runtime's default `http_port`, not set in env (the
            # admission rules do not reserve that variable).
            {"name": "http", "containerPort": contract.RUNTIME_HTTP_PORT, "protocol": "TCP"},
        ],
        "resources": resources,
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
        **health_probes(s),
    }


def _scheduling(s: spec.SchedulingSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if s.node_selector:
        out["nodeSelector"] = dict(s.node_selector)
    if s.tolerations:
        out["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in s.tolerations]
    if s.affinity:
        out["affinity"] = s.affinity
    if s.priority_class_name:
        out["priorityClassName"] = s.priority_class_name
    return out


def unstamped_template(d: spec.LLMDeployment, *, image: str) -> dict[str, Any]:
    """The pod template before the revision is known (the revision hashes this)."""
    s = d.spec
    return {
        "metadata": {"labels": naming.common_labels(d.owner.name)},
        "spec": {
            "serviceAccountName": naming.service_account_name(d.owner.name),
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            # preStop sleep, then the runtime's own drain, then a margin before SIGKILL.
            "terminationGracePeriodSeconds": PRESTOP_SLEEP_SECONDS
            + s.drain_grace_period_seconds
            + 5,
            "securityContext": pod_security_context(),
            "initContainers": [_fetch_container(s, image)],
            "containers": [_runtime_container(s, image)],
            "volumes": _volumes(s),
            **_scheduling(s.scheduling),
        },
    }


def template_hash(template: dict[str, Any]) -> str:
    """A short stable hash of a pod template (canonical JSON, sorted keys)."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def stamp(template: dict[str, Any], revision: str) -> dict[str, Any]:
    """The template with its revision as a pod label and as ENV_MODEL_REVISION (metric label)."""
    meta = template["metadata"]
    labels = {**meta["labels"], naming.LABEL_REVISION: revision}
    spec_ = template["spec"]
    containers = [
        {**c, "env": [*c["env"], {"name": ENV_MODEL_REVISION, "value": revision}]}
        for c in spec_["containers"]
    ]
    return {
        **template,
        "metadata": {**meta, "labels": labels},
        "spec": {**spec_, "containers": containers},
    }


def pod_template(d: spec.LLMDeployment, *, image: str) -> tuple[dict[str, Any], str]:
    """The stamped pod template and its revision."""
    template = unstamped_template(d, image=image)
    revision = template_hash(template)
    return stamp(template, revision), revision
