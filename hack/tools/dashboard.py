"""A Grafana dashboard as dashlint's rules read it: panels, variables, targets, their PromQL.

`Context` reads the dashboard once: it flattens rows and nested panels, expands the Grafana
variables of every target's expression and of every query variable's selector
(`tools.grafanavars`), has promtool check all of them in one run, and reads the structure of those
promtool accepts (`tools.promql`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from tools import grafanavars, promql

Json = dict[str, Any]

# Panel types the rules check: the union of the types dashboard-linter's rules name.
QUERY_PANELS = frozenset(
    {"stat", "singlestat", "graph", "table", "timeseries", "gauge", "state-timeline"}
)
PROMETHEUS = "prometheus"
# Grafana's query functions of a Prometheus variable (`label_values(selector, label)`, ...).
LABEL_FUNCTIONS = frozenset({"label_names", "label_values", "metrics", "query_result"})
_LABEL_QUERY = re.compile(r"([a-z_]+)\((.+)\)")
_LABEL_NAME = re.compile(r"\s*[a-zA-Z_]\w*\s*")


@dataclasses.dataclass(frozen=True)
class Finding:
    message: str
    panel: str | None = None  # the panel's title, else "id N"
    target: int | None = None  # the target's index in its panel, as `.lint`'s targetIdx
    warning: bool = False
    rule: str = ""

    def line(self, dashboard: str) -> str:
        where = f"dashboard '{dashboard}'"
        if self.panel is not None:
            where += f", panel '{self.panel}'"
        if self.target is not None:
            where += f", target {self.target}"
        return f"{'warning' if self.warning else 'error'} {self.rule}: {where}: {self.message}"


def panels_of(dash: Json) -> list[Json]:
    """Every panel: legacy rows' panels, then top-level ones, each followed by its nested ones."""

    def flat(panel: Json) -> list[Json]:
        return [panel, *(p for child in panel.get("panels") or [] for p in flat(child))]

    rows = [p for row in dash.get("rows") or [] for p in row.get("panels") or []]
    return [p for top in (*rows, *(dash.get("panels") or [])) for p in flat(top)]


def variables_of(dash: Json) -> list[Json]:
    return list((dash.get("templating") or {}).get("list") or [])


def template_query(template: Json) -> str:
    raw = template.get("query")
    if isinstance(raw, dict):
        raw = raw.get("query")
    return raw if isinstance(raw, str) else ""


def datasource_uid(raw: object) -> str:
    if raw is None or isinstance(raw, str):
        return raw or ""
    if isinstance(raw, dict) and isinstance(raw.get("uid"), str):
        return str(raw["uid"])
    raise ValueError(f"invalid datasource {raw!r}: want a string or an object with a string uid")


def panel_name(panel: Json) -> str:
    return str(panel.get("title") or f"id {panel.get('id')}")


def label_query(query: str) -> tuple[str | None, str | None]:
    """(the PromQL inside a Prometheus variable's query, what else is wrong with the query)."""
    found = _LABEL_QUERY.search(query)
    if found is None:
        return None, f"invalid 'query': {query}"
    function, argument = found[1], found[2]
    if function not in LABEL_FUNCTIONS:
        return None, f"invalid 'function': {function}"
    if function == "metrics":  # a regex of metric names, not PromQL
        return None, None
    if function != "label_values":
        return argument, None
    selector, _, label = argument.rpartition(",")  # label_values([selector,] label)
    problem = None if _LABEL_NAME.fullmatch(label) else f"invalid label name '{label.strip()}'"
    return selector or None, problem


@dataclasses.dataclass
class Query:
    """One PromQL text to check: a target's expression or a variable's selector."""

    text: str
    expanded: str | None = None
    expand_error: str | None = None
    promql_error: str | None = None
    tree: promql.Node | None = None
    tree_error: str | None = None

    @property
    def error(self) -> str | None:
        return self.expand_error or self.promql_error


@dataclasses.dataclass(frozen=True)
class Target:
    panel: Json
    index: int
    raw: Json
    query: Query


@dataclasses.dataclass(frozen=True)
class Variable:
    """A query variable: its query's PromQL (if any) and any other problem with the query."""

    name: str
    query: str
    promql: Query | None
    problem: str | None


class Context:
    """A dashboard read once: its variables, panels, targets, and promtool's verdicts."""

    def __init__(self, dash: Json) -> None:
        spec = dash.get("spec")
        self.dash = spec if isinstance(spec, dict) and "apiVersion" in dash else dash
        self.title = str(self.dash.get("title", ""))
        self.variables = variables_of(self.dash)
        self.panels = panels_of(self.dash)
        self.query_panels = [p for p in self.panels if p.get("type") in QUERY_PANELS]
        self.targets = [
            Target(p, i, t, Query(str(t.get("expr") or "")))
            for p in self.query_panels
            for i, t in enumerate(p.get("targets") or [])
        ]
        self.query_variables = [
            self._variable(v) for v in self.variables if v.get("type") == "query"
        ]
        ds = next((v for v in self.variables if v.get("type") == "datasource"), None)
        self.prometheus = ds is not None and template_query(ds) == PROMETHEUS
        self.queries = [t.query for t in self.targets]
        self.queries += [v.promql for v in self.query_variables if v.promql is not None]
        self._check(self.queries)

    @staticmethod
    def _variable(raw: Json) -> Variable:
        query = template_query(raw)
        text, problem = label_query(query)
        return Variable(str(raw.get("name")), query, Query(text) if text else None, problem)

    def _check(self, queries: list[Query]) -> None:
        for q in queries:
            try:
                q.expanded = grafanavars.expand(q.text, self.variables)
            except ValueError as e:
                q.expand_error = str(e)
        if not self.prometheus:
            return
        valid = [q for q in queries if q.expanded is not None]
        errors = promql.errors([str(q.expanded) for q in valid])
        for i, q in enumerate(valid):
            q.promql_error = errors.get(i)
            try:
                q.tree = None if q.promql_error else promql.parse(str(q.expanded))
            except ValueError as e:
                q.tree_error = str(e)
