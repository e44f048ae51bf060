"""dashlint (hack/tools/dashlint.py), our implementation of grafana/dashboard-linter's rules: the
shipped dashboard passes it, and each rule fails a small dashboard that breaks it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools import dashlint, dashrules, grafanavars, promql

from tests.unit.chart.helmrender import CHART

pytestmark = pytest.mark.unit

DASHBOARD = CHART / "dashboards" / "llm-runtime.json"
LINT = CHART / "dashboards" / ".lint"
SCRIPT = Path(dashlint.__file__)
Json = dict[str, Any]
M = '{job=~"$job", instance=~"$instance"}'
GOOD_EXPR = f"sum(rate(x_total{M}[$__rate_interval]))"


def _variable(name: str, query: str) -> Json:
    return {"name": name, "label": name.title(), "type": "query", "refresh": 2, "multi": True,
            "allValue": ".+", "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": query, "refId": "StandardVariableQuery"}}  # fmt: skip


def _panel(*exprs: str) -> Json:
    return {"id": 1, "type": "timeseries", "title": "p", "description": "what it shows",
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "fieldConfig": {"defaults": {"unit": "reqps"}, "overrides": []},
            "targets": [{"refId": chr(65 + i), "expr": e} for i, e in enumerate(exprs)]}  # fmt: skip


def _good() -> Json:
    """A dashboard every rule passes, job and instance variables included."""
    ds = {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"}
    job = _variable("job", "label_values(up, job)")
    instance = _variable("instance", 'label_values(up{job=~"$job"}, instance)')
    return {"title": "d", "editable": False, "templating": {"list": [ds, job, instance]},
            "panels": [_panel(GOOD_EXPR)]}  # fmt: skip


def _rules_found(dash: Json, config: dashlint.Config | None = None) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in dashlint.lint(dash, config).findings:
        found.setdefault(f.rule, []).append(f.message)
    return found


def test_the_good_dashboard_passes_every_rule() -> None:
    assert _rules_found(_good()) == {}


def test_the_shipped_dashboard_passes_with_its_lint_file() -> None:
    report = dashlint.lint_file(DASHBOARD)
    assert [f.line(report.dashboard) for f in report.findings] == []
    assert report.panels == 14 and report.queries > report.panels


def test_the_lint_file_excludes_only_the_job_and_instance_rules_each_with_a_reason() -> None:
    exclusions = yaml.safe_load(LINT.read_text())["exclusions"]
    assert set(exclusions) == {"template-job-rule", "template-instance-rule",
                               "target-job-rule", "target-instance-rule"}  # fmt: skip
    assert all(len(body["reason"]) > 40 for body in exclusions.values())
    unexcluded = dashlint.lint_file(DASHBOARD, config_path=DASHBOARD.parent / "missing.lint")
    assert {f.rule for f in unexcluded.findings} == set(exclusions)  # none of them is stale


def _set(path: str, value: object) -> Callable[[Json], None]:
    """A mutation: `templating.list.1.allValue`-style path, then the value (None deletes)."""

    def mutate(dash: Json) -> None:
        *parents, last = path.split(".")
        node: Any = dash
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is None:
            del node[int(last) if isinstance(node, list) else last]
        else:
            node[int(last) if isinstance(node, list) else last] = value

    return mutate


def _expr(expr: str) -> Callable[[Json], None]:
    return _set("panels.0.targets.0.expr", expr)


JOB_QUERY = "templating.list.1.query.query"
CASES = [
    ("template-datasource-rule", _set("templating.list.0", None), "does not have a templated"),
    ("template-datasource-rule", _set("templating.list.0.name", "ds"), "should be named"),
    ("template-datasource-rule", _set("templating.list.0.query", "loki"), "not 'prometheus'"),
    ("template-label-promql-rule", _set(JOB_QUERY, "label_values(up{, job)"), "parse error"),
    ("template-label-promql-rule", _set(JOB_QUERY, "foo(up, job)"), "invalid 'function': foo"),
    ("template-label-promql-rule", _set(JOB_QUERY, "label_values(up, a-b)"), "invalid label"),
    ("template-on-time-change-reload-rule", _set("templating.list.1.refresh", 1), "'1'"),
    ("template-uneditable-rule", _set("editable", True), "editable: false"),
    ("template-uneditable-rule", _set("editable", None), "editable: false"),
    ("template-job-rule", _set("templating.list.1", None), "missing the job template"),
    ("template-job-rule", _set("templating.list.1.allValue", ".*"), "allValue should be '.+'"),
    ("template-instance-rule", _set("templating.list.2.multi", False), "multi select"),
    ("template-instance-rule", _set("templating.list.2.datasource", "prom"), "'$datasource'"),
    ("panel-datasource-rule", _set("panels.0.datasource.uid", "prom-1"), "uses 'prom-1'"),
    ("panel-datasource-rule", _set("panels.0.targets.0.datasource", "p"), "(target 0)"),
    ("panel-title-description-rule", _set("panels.0.description", ""), "missing title or"),
    ("panel-units-rule", _set("panels.0.fieldConfig.defaults.unit", "requests"), "'requests'"),
    ("panel-units-rule", _set("panels.0.fieldConfig", None), "no or invalid units"),
    ("panel-no-targets-rule", _set("panels.0.targets", []), "has no targets"),
    ("target-promql-rule", _expr(f"sum(rate(x_total{M}[$__rate_interval])"), "unclosed left"),
    ("target-promql-rule", _expr(""), "invalid PromQL query ''"),
    ("target-rate-interval-rule", _expr(f"sum(rate(x_total{M}[5m]))"), "should use $__rate"),
    ("target-rate-interval-rule", _expr(f"irate(x_total{M}[$__interval])"), "should use $__rate"),
    ("target-counter-agg-rule", _expr(f"sum(x_total{M})"), "counter metric 'x_total'"),
    ("target-counter-agg-rule", _expr(f"histogram_quantile(0.9, x_bucket{M})"), "'x_bucket'"),
    ("target-counter-agg-rule", _expr(f"max_over_time(x_sum{M}[$__rate_interval])"), "x_sum"),
    (
        "target-job-rule",
        _expr('sum(rate(x_total{instance=~"$instance"}[$__rate_interval]))'),
        "job selector not found",
    ),
    (
        "target-instance-rule",
        _expr(f"{GOOD_EXPR} / up{{job=~\"$job\", instance='a'}}"),
        "instance selector is =, not =~",
    ),
]


@pytest.mark.parametrize(("rule", "mutate", "message"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])  # fmt: skip
def test_each_rule_fails_a_dashboard_that_breaks_it(
    rule: str, mutate: Callable[[Json], None], message: str
) -> None:
    dash = copy.deepcopy(_good())
    mutate(dash)
    found = _rules_found(dash)
    assert any(message in m for m in found.get(rule, [])), found


def test_every_rule_has_a_failing_case() -> None:
    assert {c[0] for c in CASES} == set(dashrules.RULES)


@pytest.mark.parametrize(
    ("expr", "rules"),
    [
        (f"sum(increase(x_total{M}[1h]))", set()),  # increase() may use a fixed window, as upstream
        (f"sum(rate(x_total{M}[$__rate_interval])) * $__range_s", set()),
        (f"histogram_quantile(0.95, sum by (le) (rate(x_bucket{M}[$__rate_interval])))", set()),
        (f"max_over_time(rate(x_total{M}[$__rate_interval])[1h:])", set()),
        (f"rate(x_total{M}[$__rate_interval] offset 1h) * on (job) group_left (a) y{M} @ end()",
         set()),
        (f"x_total{M} offset 1h - on (job) x_total{M} @ end()", {"target-counter-agg-rule"}),
    ],
)  # fmt: skip
def test_valid_queries_get_only_the_findings_they_earn(expr: str, rules: set[str]) -> None:
    dash = _good()
    _expr(expr)(dash)
    assert set(_rules_found(dash)) == rules


def test_a_lint_entry_excludes_only_the_target_it_names() -> None:
    dash = _good()
    dash["panels"][0]["targets"] += [{"refId": "B", "expr": f"rate(y_total{M}[5m])"},
                                     {"refId": "C", "expr": f"rate(z_total{M}[5m])"}]  # fmt: skip
    entries = (dashlint.Entry(panel="p", target_idx=1),)
    config = dashlint.Config(exclusions={"target-rate-interval-rule": dashlint.RuleConfig("r", entries)})  # fmt: skip
    report = dashlint.lint(dash, config)
    assert [(f.rule, f.target) for f in report.excluded] == [("target-rate-interval-rule", 1)]
    assert [(f.rule, f.target) for f in report.findings] == [("target-rate-interval-rule", 2)]


def test_the_lint_file_format_warnings_aliases_and_unknown_rules(tmp_path: Path) -> None:
    lint = tmp_path / ".lint"
    lint.write_text("exclusions:\n  uneditable-dashboard:\nwarnings:\n  panel-units-rule:\n"
                    "    reason: r\n    entries:\n    - panel: p\n      targetIdx: '0'\n")  # fmt: skip
    config = dashlint.load_config(lint)
    dash = _good()
    dash["editable"] = True
    dash["panels"][0]["fieldConfig"]["defaults"]["unit"] = "nope"
    report = dashlint.lint(dash, config)
    assert [f.rule for f in report.excluded] == ["template-uneditable-rule"]
    assert [(f.rule, f.warning) for f in report.findings] == [("panel-units-rule", True)]
    assert not report.failed(strict=False) and report.failed(strict=True)
    lint.write_text("exclusions:\n  no-such-rule:\n")
    with pytest.raises(dashlint.LintError, match="no-such-rule"):
        dashlint.load_config(lint)


def test_the_script_prints_one_line_per_finding_and_exits_1(tmp_path: Path) -> None:
    dash = _good()
    _expr(f"sum(x_total{M}) + rate(y_total{M}[5m])")(dash)
    path = tmp_path / "d.json"
    path.write_text(json.dumps(dash))
    proc = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert [line.split()[2].rstrip(":") for line in lines] == [
        "target-rate-interval-rule", "target-counter-agg-rule"]  # fmt: skip
    assert all("panel 'p', target 0" in line for line in lines)


def test_the_script_says_clean_and_exits_0_on_the_shipped_dashboard() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), str(DASHBOARD)], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = proc.stdout.splitlines()
    assert "clean" in line and f"{len(dashrules.RULES)} rules" in line


def test_an_unreadable_dashboard_exits_2(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{")
    assert dashlint.main([str(tmp_path / "bad.json")]) == 2


@pytest.mark.parametrize(
    ("expr", "expanded"),  # upstream's lint/variables_test.go cases
    [
        ('up{job=~"$job"}', 'up{job=~"$job"}'),
        ('up$var{job=~"$job"}', 'upvar{job=~"$job"}'),
        ("rate(m{}[$__rate_interval])", "rate(m{}[8869990787ms])"),
        ("rate(m{}[${__rate_interval}])", "rate(m{}[8869990787ms])"),
        ("rate(m{}[[[__rate_interval]]])", "rate(m{}[8869990787ms])"),
        ("m @ ${__user.id}", "m @ 42"),
        ("m @ $__from", "m @ 1594671549254"),
        ("m @ ${__from:date:seconds}000", "m @ 1594671549000"),
        ("m @ ${__from:date}", "m @ 2020-07-13T20:19:09Z"),
        ("max by(${v:csv}) (m)", "max by(v,v,v) (m)"),
        ("max by(${v:regex}) (m)", "max by(v|v|v) (m)"),
        ("max by(${v:json}) (m)", 'max by(["v","v","v"]) (m)'),
        ("max by(${v:percentencode}) (m)", "max by(v%2Cv%2Cv) (m)"),
        ("rate(m[$interval])", "rate(m[1h])"),
        ("rate(m[$sampling])", "rate(m[10s])"),
    ],
)
def test_grafana_variables_expand_as_upstream(expr: str, expanded: str) -> None:
    variables: list[Json] = [
        {"name": "interval", "type": "interval", "options": [{"value": "1h"}]},
        {"name": "sampling", "type": "interval", "current": {"value": "$__auto_interval_s"}},
    ]
    assert grafanavars.expand(expr, variables) == expanded


def test_grafana_variable_formats_that_cannot_expand_are_errors() -> None:
    with pytest.raises(ValueError, match="momentjs"):
        grafanavars.expand("m @ ${__from:date:YYYY-MM}", [])
    dash = _good()
    _expr("m @ ${__from:date:YYYY-MM}")(dash)
    assert "could not expand variables" in _rules_found(dash)["target-promql-rule"][0]


def test_the_promql_reader_finds_selectors_ranges_and_their_calls() -> None:
    tree = promql.parse('rate({__name__="a_total", x!~"y"}[5m:1m]) * on (x) b[1h] offset -5m')
    nodes = [(n.kind, n.name, n.range) for n, _ in promql.walk(tree)]
    assert ("subquery", "", "5m:1m") in nodes and ("matrix", "", "1h") in nodes
    assert ("selector", "a_total", "") in nodes and ("call", "rate", "") in nodes
    with pytest.raises(ValueError):
        promql.parse("sum(")


def test_promtool_names_each_invalid_query_by_index() -> None:
    errors = promql.errors(["up", "sum(", 'x{a="b"}', ""])
    assert set(errors) == {1, 3}
