"""The monitoring bundle (monitoring.*): a PodMonitor that scrapes each runtime pod once, the
Grafana dashboard ConfigMap, and a PrometheusRule whose alerts promtool checks and tests. Every
metric a dashboard panel or an alert queries is one the runtime or the operator exports.
Rendered with the real helm binary; promtool is Debian's `prometheus` package (run through
dashlint's `tools.promql`)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_operator import builders, metrics, routing, spec
from llm_runtime import metrics as runtime_metrics
from llm_runtime import types
from llm_runtime.api import contract
from prometheus_client import REGISTRY, CollectorRegistry
from tools import promql

from tests.unit.chart.helmrender import CHART, Doc, of_kind, only, render, selects

pytestmark = pytest.mark.unit

DASHBOARD = CHART / "dashboards" / "llm-runtime.json"
ALERTS_TEST = CHART / "tests" / "alerts_test.yaml"
ALL_ON = (
    "monitoring.podMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.dashboard.enabled=true",
)
ALERTS = {
    "LLMDeploymentNoReadyReplicas",
    "LLMDeploymentHealthyButNotServing",
    "LLMDeploymentTTFTHigh",
    "LLMDeploymentQueueSaturated",
    "LLMDeploymentErrorRatioHigh",
    "LLMDeploymentRolledBack",
    "LLMDeploymentRolloutStalled",
}


def _body() -> dict[str, Any]:
    return {
        "metadata": {"name": "chat", "namespace": "team-a", "uid": "u", "generation": 1},
        "spec": {"model": {"name": "m", "source": "builtin://smollm2-135m-instruct"}},
    }


def _runtime_pod() -> Doc:
    deploy, _ = builders.deployment(spec.parse(_body()), default_image="img")
    return dict(deploy["spec"]["template"])


def _frontdoor_pod() -> Doc:
    return dict(routing.deployment(spec.parse(_body()), image="img")["spec"]["template"])


def _selects(monitor: Doc, pod: Doc) -> bool:
    return selects(monitor["spec"]["selector"], pod["metadata"]["labels"])


def _named_ports(pod: Doc, name: str) -> list[Doc]:
    return [p for c in pod["spec"]["containers"] for p in c.get("ports", []) if p["name"] == name]


def _monitors(*sets: str) -> dict[str, Doc]:
    docs = render("default-values.yaml", *sets)
    return {m["metadata"]["name"].rsplit("-", 1)[1]: m for m in of_kind(docs, "PodMonitor")}


def _pod_label_meta(key: str) -> str:
    """The service-discovery label Prometheus gives a pod label (non [a-zA-Z0-9_] become _)."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def test_nothing_is_rendered_by_default() -> None:
    docs = render("default-values.yaml")
    assert not of_kind(docs, "PodMonitor")
    assert not of_kind(docs, "PrometheusRule")
    assert not [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("dashboard")
    ]


def test_each_runtime_pod_is_scraped_once_on_its_metrics_port() -> None:
    monitors = _monitors("monitoring.podMonitor.enabled=true")
    assert set(monitors) == {"runtime"}  # the front door has its own, only when asked
    runtime, pod = monitors["runtime"], _runtime_pod()
    assert _selects(runtime, pod)
    assert not _selects(runtime, _frontdoor_pod())
    (endpoint,) = runtime["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    (port,) = _named_ports(pod, endpoint["port"])  # one port of that name: one target per pod
    assert port["containerPort"] == contract.RUNTIME_METRICS_PORT
    (relabel,) = endpoint["relabelings"]
    assert relabel["sourceLabels"] == [_pod_label_meta(contract.LABEL_DEPLOYMENT)]
    assert relabel["targetLabel"] == "llmdeployment"


def test_the_front_door_gets_its_own_endpoint_and_no_runtime_pod() -> None:
    monitors = _monitors(
        "monitoring.podMonitor.enabled=true", "monitoring.podMonitor.frontDoor=true"
    )
    frontdoor = monitors["frontdoor"]
    assert _selects(frontdoor, _frontdoor_pod())
    assert not _selects(frontdoor, _runtime_pod())
    (endpoint,) = frontdoor["spec"]["podMetricsEndpoints"]
    (port,) = _named_ports(_frontdoor_pod(), endpoint["port"])
    assert port["containerPort"] == contract.RUNTIME_METRICS_PORT
    assert endpoint["relabelings"][0]["sourceLabels"] == [_pod_label_meta(contract.LABEL_FRONTDOOR)]


def test_pod_monitor_namespaces_follow_the_watched_ones() -> None:
    assert _monitors("monitoring.podMonitor.enabled=true")["runtime"]["spec"][
        "namespaceSelector"
    ] == {"any": True}
    docs = render("namespaced-values.yaml", "monitoring.podMonitor.enabled=true")
    assert only(docs, "PodMonitor")["spec"]["namespaceSelector"] == {
        "matchNames": ["team-a", "team-b"]
    }


def test_the_operator_scrape_keeps_the_llmdeployment_namespace_label() -> None:
    monitor = only(render("default-values.yaml", "serviceMonitor.enabled=true"), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True


def test_dashboard_configmap_carries_the_json_and_the_sidecar_label() -> None:
    docs = render("default-values.yaml", "monitoring.dashboard.enabled=true")
    (cm,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (key,) = cm["data"]
    assert json.loads(cm["data"][key]) == json.loads(DASHBOARD.read_text())


def _dashboard() -> Doc:
    return dict(json.loads(DASHBOARD.read_text()))


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p["targets"]]


def test_dashboard_panels_are_well_formed() -> None:
    """What Grafana and its linter need: unique ids and refIds, a datasource variable on every
    panel and target, grid positions inside the 24-column width."""
    dash = _dashboard()
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "namespace", "llmdeployment"} <= variables
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["title"] and p["description"]
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        refs = [t["refId"] for t in p["targets"]]
        assert len(set(refs)) == len(refs) and refs
        assert all(t["datasource"] == p["datasource"] for t in p["targets"])


def test_dashboard_covers_the_issue_panels() -> None:
    titles = " | ".join(p["title"].lower() for p in _dashboard()["panels"])
    for topic in ("requests", "errors", "first token", "per output token", "tokens per second",
                  "queue", "batch", "kv", "canary vs stable", "rollbacks"):  # fmt: skip
        assert topic in titles, topic


def _rules(*sets: str) -> list[Doc]:
    rule = only(render("default-values.yaml", "monitoring.prometheusRule.enabled=true", *sets),
                "PrometheusRule")  # fmt: skip
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


def test_the_rule_names_every_alert_the_issue_asks_for() -> None:
    assert {r["alert"] for r in _rules()} == ALERTS


def test_thresholds_and_alert_labels_come_from_values() -> None:
    rules = {r["alert"]: r for r in _rules("monitoring.prometheusRule.ttftP95Seconds=7",
                                          "monitoring.prometheusRule.alertLabels.team=ml")}  # fmt: skip
    assert rules["LLMDeploymentTTFTHigh"]["expr"].rstrip().endswith("> 7")
    assert all(r["labels"]["team"] == "ml" for r in rules.values())


def test_promtool_checks_the_alerts(tmp_path: Path) -> None:
    """promtool parses each alert's expression. The dashboard's queries are dashlint's
    (target-promql-rule, tests/unit/chart/test_dashlint.py), with Grafana's variables expanded."""
    alerts = tmp_path / "alerts.yaml"
    promql.write_rules(alerts, _rules())
    proc = promql.promtool_run("check", "rules", str(alerts))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_fire_and_quiet_each_alert(tmp_path: Path) -> None:
    """charts/llm-operator/tests/alerts_test.yaml runs on the rendered rules (default values)."""
    tested = set(re.findall(r"alertname: (\w+)", ALERTS_TEST.read_text()))
    assert tested == ALERTS
    (group,) = only(render("default-values.yaml", "monitoring.prometheusRule.enabled=true"),
                    "PrometheusRule")["spec"]["groups"]  # fmt: skip
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [group]}))
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    proc = promql.promtool_run("test", "rules", str(tmp_path / ALERTS_TEST.name))
    assert proc.returncode == 0, proc.stdout + proc.stderr


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _exported(registry: CollectorRegistry) -> Iterator[str]:
    """Every series name a registry's families export, samples or not yet."""
    for family in registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            yield family.name + suffix


def _known_names() -> set[str]:
    runtime = runtime_metrics.RuntimeMetrics()
    runtime.for_model(model="m", revision="r", load_seconds=1.0,
                      stats=lambda: types.EngineStats(running=0, waiting=0, batch_size=0, kv_cache_usage=0.0))  # fmt: skip
    operator = CollectorRegistry()
    operator.register(metrics.ObjectMetrics())
    return {*_exported(runtime.registry), *_exported(operator), *_exported(REGISTRY)}


def _queried_names(expr: str) -> set[str]:
    """Series names in a PromQL expression: our prefixes, outside quotes and label matchers."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    return set(re.findall(r"\b(llm_[a-z0-9_]+|llmdeployment_[a-z0-9_]+)\b(?!\s*[=!~])", bare))


def test_every_queried_metric_is_exported_by_the_runtime_or_the_operator() -> None:
    known = _known_names()
    exprs = [*_dashboard_exprs(), *(r["expr"] for r in _rules())]
    queried = set().union(*(_queried_names(e) for e in exprs))
    assert queried <= known, sorted(queried - known)
    assert {contract.METRIC_REQUESTS, f"{contract.METRIC_TTFT_SECONDS}_bucket"} <= queried
    assert "llmdeployment_info" in known and "llm_operator_rollout_rollbacks_total" in queried
