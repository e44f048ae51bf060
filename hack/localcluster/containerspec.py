"""A container spec plus its image rule becomes argv and environment, with Kubernetes semantics.

All pure: the pod worker fetches the Secrets and ConfigMaps a pod refers to first (see
`referenced_objects`), then these functions decide. Rules followed (from the Pod API docs):
`command` replaces the image ENTRYPOINT, `args` replaces CMD (and CMD is dropped when only
`command` is given); `$(VAR)` expands from the container's environment, `$$(VAR)` escapes,
unknown references stay as written; `envFrom` comes first and `env` overrides it.
"""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from localcluster import images

Obj = dict[str, Any]
ObjectKey = tuple[str, str]  # ("secret" | "configmap", name)

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """The container cannot be configured yet: CreateContainerConfigError in its status."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand `$(VAR)` from env; `$$` becomes `$`; unknown references stay unexpanded."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REF.sub(repl, text)


def argv(container: Mapping[str, Any], rule: images.ImageRule, env: Mapping[str, str]) -> list[str]:
    """The process argv: Kubernetes command/args over the image's entrypoint/cmd, expanded."""
    command: Sequence[str] | None = container.get("command")
    args: Sequence[str] | None = container.get("args")
    if command:
        words = [*command, *(args or [])]
    else:
        words = [*rule.entrypoint, *(args if args else rule.cmd)]
    if not words:
        raise ConfigError("neither the container nor its image names a command")
    words = [expand(w, env) for w in words]
    found = words[0] if "/" in words[0] else shutil.which(words[0], path=env.get("PATH"))
    if found is None:
        raise ConfigError(f"executable {words[0]!r} not found in PATH {env.get('PATH')}")
    return [found, *words[1:]]


def field_ref(pod: Mapping[str, Any], path: str, *, pod_ip: str, host_ip: str) -> str:
    """The downward-API value of a pod field (the fields a kubelet supports for env)."""
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if keyed:
        return str(meta.get(keyed.group(1), {}).get(keyed.group(2), ""))
    raise ConfigError(f"unsupported fieldRef {path!r}")


def referenced_objects(pod: Mapping[str, Any]) -> set[ObjectKey]:
    """Every Secret and ConfigMap that env, envFrom or volumes of the pod refer to."""
    keys: set[ObjectKey] = set()
    spec = pod.get("spec", {})
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                keys.add(("secret", source["secretRef"]["name"]))
            if "configMapRef" in source:
                keys.add(("configmap", source["configMapRef"]["name"]))
        for var in container.get("env", []):
            value_from = var.get("valueFrom", {})
            if "secretKeyRef" in value_from:
                keys.add(("secret", value_from["secretKeyRef"]["name"]))
            if "configMapKeyRef" in value_from:
                keys.add(("configmap", value_from["configMapKeyRef"]["name"]))
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            keys.add(("secret", volume["secret"]["secretName"]))
        if "configMap" in volume:
            keys.add(("configmap", volume["configMap"]["name"]))
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                keys.add(("secret", source["secret"]["name"]))
            if "configMap" in source:
                keys.add(("configmap", source["configMap"]["name"]))
    return keys


def _key_ref(
    ref: Mapping[str, Any], kind: str, objects: Mapping[ObjectKey, Mapping[str, str] | None]
) -> str | None:
    data = objects.get((kind, ref["name"]))
    if data is None or ref["key"] not in data:
        if ref.get("optional"):
            return None
        if data is None:  # the kubelet's words, which the operator reads (preflight)
            raise ConfigError(f'{kind} "{ref["name"]}" not found')
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
    return data[ref["key"]]


def _env_from(
    container: Mapping[str, Any], objects: Mapping[ObjectKey, Mapping[str, str] | None]
) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind, ref = (
            ("secret", source["secretRef"])
            if "secretRef" in source
            else ("configmap", source["configMapRef"])
        )
        data = objects.get((kind, ref["name"]))
        if data is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f"{kind} {ref['name']!r} not found")
        prefix = source.get("prefix", "")
        env.update({prefix + k: v for k, v in data.items()})
    return env


def build_env(
    *,
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    rule: images.ImageRule,
    objects: Mapping[ObjectKey, Mapping[str, str] | None],
    service_env: Mapping[str, str],
    pod_ip: str,
    host_ip: str,
) -> dict[str, str]:
    """The container's environment: image, service links, envFrom, then env in order."""
    env = {**rule.base_env(), "HOSTNAME": pod.get("metadata", {}).get("name", "")}
    env.update(service_env)
    env.update(_env_from(container, objects))
    for var in container.get("env", []):
        name, value_from = var["name"], var.get("valueFrom")
        value: str | None
        if value_from is None:
            value = expand(var.get("value", ""), env)
        elif "fieldRef" in value_from:
            value = field_ref(
                pod, value_from["fieldRef"]["fieldPath"], pod_ip=pod_ip, host_ip=host_ip
            )
        elif "secretKeyRef" in value_from:
            value = _key_ref(value_from["secretKeyRef"], "secret", objects)
        elif "configMapKeyRef" in value_from:
            value = _key_ref(value_from["configMapKeyRef"], "configmap", objects)
        elif "resourceFieldRef" in value_from:
            value = resource_field(container, value_from["resourceFieldRef"])
        else:
            raise ConfigError(f"unsupported valueFrom for {name}")
        if value is not None:
            env[name] = value
    return env


def resource_field(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """limits.* / requests.* of the container, as the raw quantity string ("0" when unset)."""
    group, _, resource = str(ref["resource"]).partition(".")
    return str(container.get("resources", {}).get(group, {}).get(resource, "0"))


def secret_data(secret: Mapping[str, Any]) -> dict[str, str]:
    """A Secret's data decoded to text (stringData never reaches the API as such)."""
    return {
        k: base64.b64decode(v).decode("utf-8", errors="replace")
        for k, v in (secret.get("data") or {}).items()
    }
