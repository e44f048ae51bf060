"""The chart's PodMonitor/ServiceMonitor/PrometheusRule as plain Prometheus configuration
(hack/monitoring/scrape.py), checked by Debian's promtool, and the dashboard's variables filled
in the way Grafana does (hack/monitoring/grafana.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from llm_runtime.api import contract
from monitoring import discovery, grafana, scrape, snapshot

from tests.unit.chart.helmrender import CHART, Doc, of_kind, only, render

pytestmark = pytest.mark.unit

ALL_ON = (
    "monitoring.podMonitor.enabled=true",
    "monitoring.podMonitor.frontDoor=true",
    "monitoring.prometheusRule.enabled=true",
    "serviceMonitor.enabled=true",
    "operator.watchNamespaces={team-a,team-b}",
)


def _objects() -> tuple[Doc, ...]:
    return render("default-values.yaml", *ALL_ON)


def _named(kind: str, name: str) -> Doc:
    (found,) = [d for d in of_kind(_objects(), kind) if d["metadata"]["name"] == name]
    return found


def test_the_runtime_podmonitor_keeps_pods_with_the_deployment_label_on_their_metrics_port() -> (
    None
):
    pm = _named("PodMonitor", "llmop-llm-operator-runtime")
    (job,) = scrape.pod_monitor_jobs(pm)
    assert job["job_name"] == "podMonitor/llm-operator-system/llmop-llm-operator-runtime/0"
    assert job["kubernetes_sd_configs"] == [
        {"role": "pod", "namespaces": {"names": ["team-a", "team-b"]}}
    ]
    key = scrape.sanitize(contract.LABEL_DEPLOYMENT)
    rules = job["relabel_configs"]
    assert {
        "action": "keep",
        "source_labels": [f"__meta_kubernetes_pod_labelpresent_{key}"],
        "regex": "true",
    } in rules
    assert {
        "action": "keep",
        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
        "regex": "metrics",
    } in rules
    # The chart's own relabeling comes last, after the standard target labels.
    assert rules[-1] == {
        "source_labels": [f"__meta_kubernetes_pod_label_{key}"],
        "target_label": "llmdeployment",
    }
    assert job["honor_labels"] is False


def test_the_operator_servicemonitor_honours_labels_and_selects_the_metrics_service() -> None:
    objects = _objects()
    sm = only(objects, "ServiceMonitor")
    (job,) = scrape.service_monitor_jobs(sm)
    assert job["honor_labels"] is True
    assert job["kubernetes_sd_configs"][0]["role"] == "endpoints"
    keeps = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    service = _named("Service", "llmop-llm-operator-metrics")
    labels = service["metadata"]["labels"]
    for k, v in sm["spec"]["selector"]["matchLabels"].items():
        assert labels[k] == v
        (rule,) = scrape.selector_relabels({"matchLabels": {k: v}}, "service")
        assert rule in keeps
        assert rule["source_labels"][0] == f"__meta_kubernetes_service_label_{scrape.sanitize(k)}"


def test_promtool_accepts_the_generated_configuration_and_rules(tmp_path: Path) -> None:
    """With the file_sd stand-in: Debian's build refuses kubernetes_sd_configs itself."""
    objects = _objects()
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(scrape.rule_file(only(objects, "PrometheusRule"))))
    config, watched = discovery.stand_in(scrape.config(objects, rule_files=[str(rules)]), tmp_path)
    assert [w.role for w in watched] == ["pod", "pod", "endpoints"]
    assert watched[0].namespaces == ("team-a", "team-b")
    assert watched[2].namespaces == ("llm-operator-system",)
    for w in watched:
        discovery.write(w, [])
    assert [j["job_name"].split("/")[0] for j in config["scrape_configs"]] == [
        "podMonitor",
        "podMonitor",
        "serviceMonitor",
    ]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("expr", "action", "regex"),
    [
        ({"key": "a.b/c", "operator": "In", "values": ["x", "y.z"]}, "keep", r"(x|y\.z);true"),
        ({"key": "a.b/c", "operator": "NotIn", "values": ["x"]}, "drop", "(x);true"),
        ({"key": "a.b/c", "operator": "Exists"}, "keep", "true"),
        ({"key": "a.b/c", "operator": "DoesNotExist"}, "drop", "true"),
    ],
)
def test_selector_expressions_become_keep_and_drop_rules(
    expr: dict[str, object], action: str, regex: str
) -> None:
    (rule,) = scrape.selector_relabels({"matchExpressions": [expr]}, "pod")
    assert (rule["action"], rule["regex"]) == (action, regex)
    assert rule["source_labels"][-1] == "__meta_kubernetes_pod_labelpresent_a_b_c"


def test_unknown_fields_are_refused_not_dropped() -> None:
    with pytest.raises(scrape.UnsupportedFieldError, match="Gt"):
        scrape.selector_relabels({"matchExpressions": [{"key": "k", "operator": "Gt"}]}, "pod")
    pm = {
        "metadata": {"namespace": "n", "name": "m"},
        "spec": {"podMetricsEndpoints": [{"port": "metrics", "bearerTokenSecret": {}}]},
    }
    with pytest.raises(scrape.UnsupportedFieldError, match="bearerTokenSecret"):
        scrape.pod_monitor_jobs(pm)
    with pytest.raises(scrape.UnsupportedFieldError, match="sourceLabel"):
        scrape.relabelings([{"sourceLabel": ["x"]}])


def test_namespace_selectors() -> None:
    assert scrape.namespaces({"any": True}, "own") == {}
    assert scrape.namespaces({"matchNames": ["a"]}, "own") == {"namespaces": {"names": ["a"]}}
    assert scrape.namespaces({}, "own") == {"namespaces": {"names": ["own"]}}


def test_grafana_variables_are_substituted_in_every_spelling() -> None:
    expr = 'rate(x{a=~"$ns", b=~"${ns}", c=~"${ns:regex}", d=~"[[ns]]"}[$__rate_interval])'
    assert grafana.substitute(expr, {"ns": "team"}) == (
        'rate(x{a=~"team", b=~"team", c=~"team", d=~"team"}[1m])'
    )
    with pytest.raises(KeyError, match="missing"):
        grafana.substitute("x{a=~'$missing'}", {})
    assert grafana.regex_value("a.b") == r"a\\.b"
    assert grafana.regex_value("a", "b") == "(a|b)"


def test_the_shipped_dashboard_has_no_variable_left_unfilled() -> None:
    dashboard = json.loads((CHART / "dashboards" / "llm-runtime.json").read_text())
    names = grafana.variable_names(dashboard)
    assert {"datasource", "namespace", "llmdeployment"} <= set(names)
    values = {n: "x" for n in names}
    targets = list(grafana.targets(dashboard))
    assert targets
    assert all("$" not in grafana.substitute(t.expr, values) for t in targets)


def test_targets_include_panels_nested_in_rows() -> None:
    dashboard = {
        "panels": [
            {
                "title": "row",
                "type": "row",
                "panels": [{"title": "in", "targets": [{"expr": "a"}]}],
            },
            {"title": "top", "targets": [{"expr": "b", "refId": "B"}, {"refId": "C"}]},
        ]
    }
    assert [(t.panel, t.expr) for t in grafana.targets(dashboard)] == [("in", "a"), ("top", "b")]


def test_snapshot_legends_follow_grafanas_legend_format() -> None:
    assert snapshot.legend("{{revision}} p95", {"revision": "abc"}, "A") == "abc p95"
    assert snapshot.legend("", {"b": "2", "a": "1"}, "A") == "a=1, b=2"
    assert snapshot.legend("", {}, "A") == "A"
