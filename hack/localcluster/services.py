"""Pure views of Services and EndpointSlices: the proxy table, hosts files and service env vars.

The node keeps the latest Service and EndpointSlice objects from its watches; these functions
turn them into what the proxy listens on, what each pod's /etc/hosts says, and the
`<SVC>_SERVICE_HOST` variables a kubelet injects (enableServiceLinks).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

Obj = dict[str, Any]
Backend = tuple[str, int]
Listener = tuple[str, int]  # (clusterIP, port)
SERVICE_LABEL = "kubernetes.io/service-name"
DOMAIN = "cluster.local"


SliceIndex = Mapping[tuple[str, str], list[Mapping[str, Any]]]


def by_service(slices: Iterable[Mapping[str, Any]]) -> SliceIndex:
    """EndpointSlices by (namespace, Service name): built once per sync, so a table of S
    Services costs S lookups, not S x slices comparisons (a fleet has thousands of each)."""
    index: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for s in slices:
        meta = s["metadata"]
        name = (meta.get("labels") or {}).get(SERVICE_LABEL)
        if name is not None:
            index.setdefault((str(meta.get("namespace")), str(name)), []).append(s)
    return index


def _slices_of(svc: Mapping[str, Any], index: SliceIndex) -> list[Mapping[str, Any]]:
    meta = svc["metadata"]
    return index.get((str(meta["namespace"]), str(meta["name"])), [])


def _ready_addresses(slice_: Mapping[str, Any]) -> list[str]:
    """Endpoints whose `ready` condition is not false (unset means ready, per the API)."""
    found = []
    for endpoint in slice_.get("endpoints") or []:
        if endpoint.get("conditions", {}).get("ready", True) is not False:
            found.extend(endpoint.get("addresses", []))
    return found


def ready_ips(svc: Mapping[str, Any], slices: Iterable[Mapping[str, Any]]) -> list[str]:
    """Ready endpoint IPs of a Service, sorted and unique."""
    return _ready_ips(svc, by_service(slices))


def _ready_ips(svc: Mapping[str, Any], index: SliceIndex) -> list[str]:
    return sorted({ip for s in _slices_of(svc, index) for ip in _ready_addresses(s)})


def proxy_table(
    services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]]
) -> dict[Listener, list[Backend]]:
    """(clusterIP, port) -> ready (podIP, targetPort) backends, TCP ports of ClusterIP services."""
    index = by_service(slices)
    table: dict[Listener, list[Backend]] = {}
    for svc in services:
        cluster_ip = svc.get("spec", {}).get("clusterIP")
        if not cluster_ip or cluster_ip == "None":
            continue
        mine = _slices_of(svc, index)
        for port in svc["spec"].get("ports", []):
            if port.get("protocol", "TCP") != "TCP":
                continue
            backends: list[Backend] = []
            for s in mine:
                for sp in s.get("ports") or []:
                    if sp.get("name", "") == port.get("name", "") and sp.get("port"):
                        backends += [(ip, int(sp["port"])) for ip in _ready_addresses(s)]
            table[(cluster_ip, int(port["port"]))] = sorted(set(backends))
    return table


def _names(svc_name: str, svc_ns: str, pod_ns: str) -> list[str]:
    names = [
        f"{svc_name}.{svc_ns}.svc.{DOMAIN}",
        f"{svc_name}.{svc_ns}.svc",
        f"{svc_name}.{svc_ns}",
    ]
    return [*names, svc_name] if svc_ns == pod_ns else names


def hosts_text(
    *,
    namespace: str,
    pod_name: str,
    pod_ip: str,
    services: Iterable[Mapping[str, Any]],
    slices: Iterable[Mapping[str, Any]],
) -> str:
    """The /etc/hosts of a pod: itself, then every Service (headless: one line per ready IP)."""
    index = by_service(slices)
    lines = [
        "# Written by the llm-operator process node; regenerated when Services change.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{pod_ip}\t{pod_name}",
    ]
    for svc in sorted(services, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"])):
        meta = svc["metadata"]
        names = " ".join(_names(meta["name"], meta["namespace"], namespace))
        cluster_ip = svc.get("spec", {}).get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            lines.append(f"{cluster_ip}\t{names}")
        elif cluster_ip == "None":
            lines += [f"{ip}\t{names}" for ip in _ready_ips(svc, index)]
            lines += _pod_names(svc, index)
    return "\n".join(lines) + "\n"


def _pod_names(svc: Mapping[str, Any], index: SliceIndex) -> list[str]:
    """`<hostname>.<svc>.<ns>.svc.cluster.local` for endpoints that carry a hostname (the pods
    of a StatefulSet, or any pod with hostname + subdomain naming this headless Service)."""
    meta = svc["metadata"]
    lines = []
    for s in _slices_of(svc, index):
        for endpoint in s.get("endpoints") or []:
            host = endpoint.get("hostname")
            if not host or endpoint.get("conditions", {}).get("ready", True) is False:
                continue
            fqdn = f"{host}.{meta['name']}.{meta['namespace']}.svc.{DOMAIN}"
            lines += [f"{ip}\t{fqdn} {host}.{meta['name']}" for ip in endpoint.get("addresses", [])]
    return sorted(lines)


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", name.upper())


def service_env(namespace: str, services: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Service-link variables: the `kubernetes` Service always, plus those of the pod's namespace."""
    env: dict[str, str] = {}
    for svc in services:
        meta, spec = svc["metadata"], svc.get("spec", {})
        is_api = meta["namespace"] == "default" and meta["name"] == "kubernetes"
        cluster_ip = spec.get("clusterIP")
        if not (is_api or meta["namespace"] == namespace) or not cluster_ip or cluster_ip == "None":
            continue
        ports = spec.get("ports", [])
        if not ports:
            continue
        prefix = _env_name(meta["name"])
        first = ports[0]
        env[f"{prefix}_SERVICE_HOST"] = cluster_ip
        env[f"{prefix}_SERVICE_PORT"] = str(first["port"])
        proto = first.get("protocol", "TCP")
        env[f"{prefix}_PORT"] = f"{proto.lower()}://{cluster_ip}:{first['port']}"
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}"] = str(port["port"])
            key = f"{prefix}_PORT_{port['port']}_{port.get('protocol', 'TCP')}"
            env[key] = f"{port.get('protocol', 'TCP').lower()}://{cluster_ip}:{port['port']}"
            env[key + "_PROTO"] = port.get("protocol", "TCP").lower()
            env[key + "_PORT"] = str(port["port"])
            env[key + "_ADDR"] = cluster_ip
    return env


def dns_records(
    services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]]
) -> dict[str, list[str]]:
    """The cluster's A records, as a cluster DNS serves them: lower-case FQDN (no final dot) ->
    addresses. A ClusterIP Service answers with its ClusterIP, a headless one with its ready
    endpoints, and an endpoint with a hostname (hostname + subdomain, StatefulSets) with its own
    address as `<hostname>.<svc>.<ns>.svc.cluster.local`. ExternalName Services have no A
    record here (no outside names resolve in this cluster)."""
    index = by_service(slices)
    records: dict[str, list[str]] = {}
    for svc in services:
        meta, spec = svc["metadata"], svc.get("spec", {})
        fqdn = f"{meta['name']}.{meta['namespace']}.svc.{DOMAIN}".lower()
        cluster_ip = spec.get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            records[fqdn] = [cluster_ip]
        elif cluster_ip == "None":
            records[fqdn] = _ready_ips(svc, index)
            for s in _slices_of(svc, index):
                for endpoint in s.get("endpoints") or []:
                    host = endpoint.get("hostname")
                    if host and endpoint.get("conditions", {}).get("ready", True) is not False:
                        name = f"{host}.{fqdn}".lower()
                        records[name] = sorted({*records.get(name, []), *endpoint["addresses"]})
    return records
