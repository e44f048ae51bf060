"""Kubernetes service discovery for a Prometheus built without it, through file_sd.

Debian's `prometheus` package is built without Kubernetes service discovery: `promtool check
config` refuses `kubernetes_sd_configs` ("field kubernetes_sd_configs not found in type
config.ScrapeConfig"). So `stand_in` swaps each `kubernetes_sd_configs` of a configuration for a
`file_sd_configs` file, and `FileDiscovery` keeps those files filled with the targets Prometheus'
own Kubernetes discovery would find, with the same `__meta_kubernetes_*` labels (roles `pod` and
`endpoints`, as documented for kubernetes_sd_config). The scrape jobs' relabelings, which carry
the PodMonitor's and ServiceMonitor's meaning, then run in Prometheus unchanged.

The target builders are pure; `FileDiscovery` lists objects through a callable (kubectl here).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monitoring.scrape import sanitize

Doc = Mapping[str, Any]
Group = dict[str, Any]  # one file_sd target group: {"targets": [...], "labels": {...}}
Lister = Callable[[str, str], Sequence[Doc]]  # (resource, namespace) -> items


def _keyed(prefix: str, kind: str, items: Mapping[str, str] | None) -> dict[str, str]:
    """Labels or annotations (`kind`) as discovery spells them: the value, and `...present`."""
    out = {}
    for k, v in (items or {}).items():
        out[f"{prefix}_{kind}_{sanitize(k)}"] = v
        out[f"{prefix}_{kind}present_{sanitize(k)}"] = "true"
    return out


def _labels(prefix: str, labels: Mapping[str, str] | None) -> dict[str, str]:
    return _keyed(prefix, "label", labels)


def _annotations(prefix: str, annotations: Mapping[str, str] | None) -> dict[str, str]:
    return _keyed(prefix, "annotation", annotations)


def pod_labels(pod: Doc) -> dict[str, str]:
    """The pod-level meta labels of role `pod` (also added by role `endpoints` for pods)."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    owners = meta.get("ownerReferences") or ()
    owner: Mapping[str, str] = next((o for o in owners if o.get("controller")), {})
    p = "__meta_kubernetes_pod"
    return {
        "__meta_kubernetes_namespace": meta["namespace"],
        f"{p}_name": meta["name"],
        f"{p}_ip": status.get("podIP", ""),
        f"{p}_ready": str(ready).lower(),
        f"{p}_phase": status.get("phase", ""),
        f"{p}_node_name": spec.get("nodeName", ""),
        f"{p}_host_ip": status.get("hostIP", ""),
        f"{p}_uid": meta.get("uid", ""),
        f"{p}_controller_kind": owner.get("kind", ""),
        f"{p}_controller_name": owner.get("name", ""),
        **_labels(p, meta.get("labels")),
        **_annotations(p, meta.get("annotations")),
    }


def _container_labels(container: Doc, *, init: bool, port: Doc | None) -> dict[str, str]:
    p = "__meta_kubernetes_pod_container"
    labels = {
        f"{p}_name": container["name"],
        f"{p}_image": container.get("image", ""),
        f"{p}_init": str(init).lower(),
    }
    if port is not None:
        labels |= {
            f"{p}_port_name": port.get("name", ""),
            f"{p}_port_number": str(port["containerPort"]),
            f"{p}_port_protocol": port.get("protocol", "TCP"),
        }
    return labels


def pod_targets(pod: Doc) -> list[Group]:
    """Role `pod`: one target per declared container port (pod IP:port), and one per container
    without ports (the pod IP alone). A pod without an IP yet has none."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return []
    base = pod_labels(pod)
    spec = pod.get("spec") or {}
    groups = []
    for init, containers in ((False, spec.get("containers")), (True, spec.get("initContainers"))):
        for c in containers or ():
            ports = c.get("ports") or ()
            for port in ports:
                groups.append(
                    {
                        "targets": [f"{ip}:{port['containerPort']}"],
                        "labels": base | _container_labels(c, init=init, port=port),
                    }
                )
            if not ports and not init:
                groups.append(
                    {"targets": [ip], "labels": base | _container_labels(c, init=False, port=None)}
                )
    return groups


def endpoints_targets(endpoints: Doc, service: Doc | None, pods: Mapping[str, Doc]) -> list[Group]:
    """Role `endpoints`: one target per address and port of every subset, with the Service's
    labels and, for addresses backed by a pod, that pod's (and the matching container's)."""
    meta = endpoints["metadata"]
    base = {
        "__meta_kubernetes_namespace": meta["namespace"],
        "__meta_kubernetes_endpoints_name": meta["name"],
        **_labels("__meta_kubernetes_endpoints", meta.get("labels")),
    }
    if service is not None:
        smeta = service["metadata"]
        base |= {
            "__meta_kubernetes_service_name": smeta["name"],
            **_labels("__meta_kubernetes_service", smeta.get("labels")),
            **_annotations("__meta_kubernetes_service", smeta.get("annotations")),
        }
    groups = []
    for subset in endpoints.get("subsets") or ():
        addresses = [(a, "true") for a in subset.get("addresses") or ()]
        addresses += [(a, "false") for a in subset.get("notReadyAddresses") or ()]
        for addr, ready in addresses:
            ref = addr.get("targetRef") or {}
            pod = pods.get(ref.get("name", "")) if ref.get("kind") == "Pod" else None
            for port in subset.get("ports") or ():
                labels = base | {
                    "__meta_kubernetes_endpoint_ready": ready,
                    "__meta_kubernetes_endpoint_port_name": port.get("name", ""),
                    "__meta_kubernetes_endpoint_port_protocol": port.get("protocol", "TCP"),
                    "__meta_kubernetes_endpoint_address_target_kind": ref.get("kind", ""),
                    "__meta_kubernetes_endpoint_address_target_name": ref.get("name", ""),
                    "__meta_kubernetes_endpoint_node_name": addr.get("nodeName", ""),
                    "__meta_kubernetes_endpoint_hostname": addr.get("hostname", ""),
                }
                if pod is not None:
                    labels |= pod_labels(pod) | _matching_container(pod, port["port"])
                groups.append({"targets": [f"{addr['ip']}:{port['port']}"], "labels": labels})
    return groups


def _matching_container(pod: Doc, number: int) -> dict[str, str]:
    for c in (pod.get("spec") or {}).get("containers") or ():
        for port in c.get("ports") or ():
            if port["containerPort"] == number:
                return _container_labels(c, init=False, port=port)
    return {}


@dataclasses.dataclass(frozen=True)
class Watched:
    """One file to keep filled: which role, in which namespaces."""

    file: Path
    role: str
    namespaces: tuple[str, ...]


def stand_in(config: Mapping[str, Any], folder: Path) -> tuple[dict[str, Any], list[Watched]]:
    """`config` with each kubernetes_sd_config replaced by a file_sd_config under `folder`,
    and what `FileDiscovery` must write there. Every namespace must be named: listing all of
    them is not what a stand-in for a test needs."""
    out = copy.deepcopy(dict(config))
    watched = []
    for i, job in enumerate(out.get("scrape_configs") or ()):
        files = []
        for j, sd in enumerate(job.pop("kubernetes_sd_configs", None) or ()):
            names = tuple((sd.get("namespaces") or {}).get("names") or ())
            if not names:
                raise ValueError(f"{job['job_name']}: name the namespaces to discover")
            if sd["role"] not in ("pod", "endpoints"):
                raise ValueError(f"{job['job_name']}: role {sd['role']!r} is not stood in for")
            w = Watched(folder / f"sd-{i}-{j}.json", sd["role"], names)
            watched.append(w)
            files.append(str(w.file))
        if files:
            job["file_sd_configs"] = [{"files": files, "refresh_interval": "2s"}]
    return out, watched


def groups_for(w: Watched, lister: Lister) -> list[Group]:
    groups: list[Group] = []
    for ns in w.namespaces:
        pods = {p["metadata"]["name"]: p for p in lister("pods", ns)}
        if w.role == "pod":
            for pod in pods.values():
                groups += pod_targets(pod)
            continue
        services = {s["metadata"]["name"]: s for s in lister("services", ns)}
        for ep in lister("endpoints", ns):
            groups += endpoints_targets(ep, services.get(ep["metadata"]["name"]), pods)
    return groups


def write(w: Watched, groups: list[Group]) -> None:
    """Atomically, so Prometheus never reads half a file."""
    tmp = w.file.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups, sort_keys=True))
    tmp.replace(w.file)


class FileDiscovery:
    """Refreshes every watched file every `period` seconds in a thread, until stopped."""

    def __init__(self, watched: Sequence[Watched], lister: Lister, period: float = 2.0) -> None:
        self.watched, self.lister, self.period = list(watched), lister, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="file-sd", daemon=True)
        self.errors: list[str] = []

    def refresh(self) -> None:
        for w in self.watched:
            write(w, groups_for(w, self.lister))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.refresh()
            except Exception as e:  # a failed list keeps the last file; counted for the test
                self.errors.append(repr(e))

    def __enter__(self) -> FileDiscovery:
        self.refresh()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
