"""prometheus-operator's objects as the plain Prometheus configuration they stand for.

There is no prometheus-operator on the local cluster, so the e2e test that proves the monitoring
bundle (tests/e2e/test_prometheus_e2e.py) runs Debian's Prometheus itself and hands it what the
chart's PodMonitor, ServiceMonitor and PrometheusRule mean. The translation follows the scrape
jobs prometheus-operator generates (pkg/prometheus/promcfg.go): one job per endpoint, named
`podMonitor/NS/NAME/I` or `serviceMonitor/NS/NAME/I`, Kubernetes service discovery, a `keep` per
selector term and for the port, and the target labels `namespace`, `pod`, `container`, `job`
and `endpoint` before the object's own relabelings. Sharding and the TLS/authorization fields are
left out: the chart sets none of them (a field this module does not know raises, rather than
being dropped silently).

Everything here is pure: objects in, dictionaries out (the caller writes them as YAML).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Doc = Mapping[str, Any]
Relabel = dict[str, Any]

# Endpoint fields this translation handles; any other is refused, so nothing is dropped unseen.
POD_ENDPOINT_FIELDS = frozenset({"port", "path", "interval", "scrapeTimeout", "relabelings"})
SERVICE_ENDPOINT_FIELDS = POD_ENDPOINT_FIELDS | {"honorLabels"}


class UnsupportedFieldError(ValueError):
    """A PodMonitor/ServiceMonitor field this translation does not implement."""


def sanitize(label: str) -> str:
    """A Kubernetes label key as Prometheus' service discovery spells it in meta labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _keep(source_labels: Sequence[str], regex: str) -> Relabel:
    return {"action": "keep", "source_labels": list(source_labels), "regex": regex}


def _drop(source_labels: Sequence[str], regex: str) -> Relabel:
    return {"action": "drop", "source_labels": list(source_labels), "regex": regex}


def selector_relabels(selector: Doc, role: str) -> list[Relabel]:
    """A label selector as keep/drop rules over `__meta_kubernetes_<role>_label_*` (the pod's
    labels for PodMonitors, the Service's for ServiceMonitors)."""
    value, present = f"__meta_kubernetes_{role}_label_", f"__meta_kubernetes_{role}_labelpresent_"
    rules = [
        _keep([value + sanitize(k), present + sanitize(k)], f"({re.escape(str(v))});true")
        for k, v in sorted((selector.get("matchLabels") or {}).items())
    ]
    for expr in selector.get("matchExpressions") or ():
        key, op = sanitize(expr["key"]), expr["operator"]
        values = "|".join(re.escape(str(v)) for v in expr.get("values") or ())
        if op == "In":
            rules.append(_keep([value + key, present + key], f"({values});true"))
        elif op == "NotIn":
            rules.append(_drop([value + key, present + key], f"({values});true"))
        elif op == "Exists":
            rules.append(_keep([present + key], "true"))
        elif op == "DoesNotExist":
            rules.append(_drop([present + key], "true"))
        else:
            raise UnsupportedFieldError(f"selector operator {op!r}")
    return rules


def namespaces(selector: Doc, own: str) -> dict[str, Any]:
    """The discovery's namespace list: `any: true` is every namespace, `matchNames` those, and
    an empty selector the monitor's own namespace (prometheus-operator's rule)."""
    if selector.get("any"):
        return {}
    return {"namespaces": {"names": list(selector.get("matchNames") or [own])}}


def relabelings(items: Iterable[Doc]) -> list[Relabel]:
    """The monitor's own relabelings, camelCase fields as Prometheus' snake_case."""
    keys = {
        "sourceLabels": "source_labels",
        "targetLabel": "target_label",
        "separator": "separator",
        "regex": "regex",
        "replacement": "replacement",
        "action": "action",
        "modulus": "modulus",
    }
    out = []
    for item in items:
        unknown = set(item) - set(keys)
        if unknown:
            raise UnsupportedFieldError(f"relabeling fields {sorted(unknown)}")
        out.append({keys[k]: v for k, v in item.items()})
    return out


def _endpoint_settings(ep: Doc, allowed: frozenset[str]) -> dict[str, Any]:
    unknown = set(ep) - allowed
    if unknown:
        raise UnsupportedFieldError(f"endpoint fields {sorted(unknown)}")
    settings: dict[str, Any] = {"metrics_path": ep.get("path", "/metrics")}
    if "interval" in ep:
        settings["scrape_interval"] = ep["interval"]
    if "scrapeTimeout" in ep:
        settings["scrape_timeout"] = ep["scrapeTimeout"]
    return settings


def _sd(role: str, selector: Doc, own: str, kubeconfig: str | None) -> list[dict[str, Any]]:
    sd: dict[str, Any] = {"role": role, **namespaces(selector, own)}
    if kubeconfig is not None:
        sd["kubeconfig_file"] = kubeconfig
    return [sd]


def pod_monitor_jobs(pm: Doc, *, kubeconfig: str | None = None) -> list[dict[str, Any]]:
    """One scrape job per `podMetricsEndpoints` entry. `kubeconfig`: how Prometheus reaches
    the API server when it does not run in the cluster (None: in-cluster)."""
    meta, spec = pm["metadata"], pm["spec"]
    ns, name = meta["namespace"], meta["name"]
    jobs = []
    for i, ep in enumerate(spec.get("podMetricsEndpoints") or ()):
        if "port" not in ep:
            raise UnsupportedFieldError("a podMetricsEndpoint without `port`")
        rules = [
            {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
            _drop(["__meta_kubernetes_pod_phase"], "(Failed|Succeeded)"),
            *selector_relabels(spec.get("selector") or {}, "pod"),
            _keep(["__meta_kubernetes_pod_container_port_name"], re.escape(ep["port"])),
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {
                "source_labels": ["__meta_kubernetes_pod_container_name"],
                "target_label": "container",
            },
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"target_label": "job", "replacement": f"{ns}/{name}"},
            {"target_label": "endpoint", "replacement": ep["port"]},
            *relabelings(ep.get("relabelings") or ()),
        ]
        jobs.append(
            {
                "job_name": f"podMonitor/{ns}/{name}/{i}",
                "honor_labels": False,
                "kubernetes_sd_configs": _sd(
                    "pod", spec.get("namespaceSelector") or {}, ns, kubeconfig
                ),
                **_endpoint_settings(ep, POD_ENDPOINT_FIELDS),
                "relabel_configs": rules,
            }
        )
    return jobs


def _target_kind(kind: str, label: str) -> Relabel:
    return {
        "source_labels": [
            "__meta_kubernetes_endpoint_address_target_kind",
            "__meta_kubernetes_endpoint_address_target_name",
        ],
        "separator": ";",
        "regex": f"{kind};(.*)",
        "replacement": "${1}",
        "target_label": label,
    }


def service_monitor_jobs(sm: Doc, *, kubeconfig: str | None = None) -> list[dict[str, Any]]:
    """One scrape job per `endpoints` entry, over the Services' Endpoints."""
    meta, spec = sm["metadata"], sm["spec"]
    ns, name = meta["namespace"], meta["name"]
    jobs = []
    for i, ep in enumerate(spec.get("endpoints") or ()):
        if "port" not in ep:
            raise UnsupportedFieldError("a ServiceMonitor endpoint without `port`")
        rules = [
            {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
            *selector_relabels(spec.get("selector") or {}, "service"),
            _keep(["__meta_kubernetes_endpoint_port_name"], re.escape(ep["port"])),
            _target_kind("Node", "node"),
            _target_kind("Pod", "pod"),
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {
                "source_labels": ["__meta_kubernetes_pod_container_name"],
                "target_label": "container",
            },
            _drop(["__meta_kubernetes_pod_phase"], "(Failed|Succeeded)"),
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
            {"target_label": "endpoint", "replacement": ep["port"]},
            *relabelings(ep.get("relabelings") or ()),
        ]
        jobs.append(
            {
                "job_name": f"serviceMonitor/{ns}/{name}/{i}",
                "honor_labels": bool(ep.get("honorLabels", False)),
                "kubernetes_sd_configs": _sd(
                    "endpoints", spec.get("namespaceSelector") or {}, ns, kubeconfig
                ),
                **_endpoint_settings(ep, SERVICE_ENDPOINT_FIELDS),
                "relabel_configs": rules,
            }
        )
    return jobs


def rule_file(rule: Doc) -> dict[str, Any]:
    """A PrometheusRule's groups as a Prometheus rule file (what prometheus-operator mounts)."""
    return {"groups": list(rule["spec"]["groups"])}


def config(
    objects: Iterable[Doc],
    *,
    rule_files: Sequence[str] = (),
    kubeconfig: str | None = None,
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
) -> dict[str, Any]:
    """prometheus.yml for every PodMonitor and ServiceMonitor among `objects` (other kinds are
    ignored), evaluating `rule_files`."""
    jobs: list[dict[str, Any]] = []
    for obj in objects:
        if obj.get("kind") == "PodMonitor":
            jobs += pod_monitor_jobs(obj, kubeconfig=kubeconfig)
        elif obj.get("kind") == "ServiceMonitor":
            jobs += service_monitor_jobs(obj, kubeconfig=kubeconfig)
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": list(rule_files),
        "scrape_configs": jobs,
    }
