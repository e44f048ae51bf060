"""A Grafana dashboard's PromQL, as Grafana would send it to Prometheus.

Grafana replaces template variables in a panel's query before it sends it: `$name`, `${name}`,
`${name:format}` and `[[name]]` become the variable's current value, and the built-ins
`$__rate_interval`, `$__interval` and `$__range` become durations. Tests that run every panel's
query against a real Prometheus (tests/e2e/test_prometheus_e2e.py) and the snapshot picture
(`snapshot.py`) need the same text, so this module does that substitution. Pure.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from typing import Any

# ${name}, ${name:format}, $name and [[name]]; the longest name wins ($__rate_interval, not $__r).
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")

# Grafana's $__rate_interval is max($__interval + scrape interval, 4 x scrape interval); with
# a 5 s scrape interval and a short panel range that is 20 s. Callers pass their own.
BUILTINS_DEFAULT = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


@dataclasses.dataclass(frozen=True)
class Target:
    """One query of one panel."""

    panel: str
    ref_id: str
    legend: str
    expr: str


def targets(dashboard: Mapping[str, Any]) -> Iterator[Target]:
    """Every panel's Prometheus queries, rows' nested panels included, in dashboard order."""
    panels = list(dashboard.get("panels") or ())
    while panels:
        panel = panels.pop(0)
        panels[:0] = panel.get("panels") or ()
        for t in panel.get("targets") or ():
            if t.get("expr"):
                yield Target(
                    panel=str(panel.get("title", "")),
                    ref_id=str(t.get("refId", "")),
                    legend=str(t.get("legendFormat", "")),
                    expr=str(t["expr"]),
                )


def variable_names(dashboard: Mapping[str, Any]) -> list[str]:
    return [str(v["name"]) for v in (dashboard.get("templating") or {}).get("list") or ()]


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """`expr` with every variable replaced by `values` (then BUILTINS_DEFAULT); an unknown
    variable raises KeyError, so a query never reaches Prometheus with a `$` left in it."""
    merged = {**BUILTINS_DEFAULT, **values}

    def one(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        if name not in merged:
            raise KeyError(f"dashboard variable ${name} has no value")
        return merged[name]

    return _VARIABLE.sub(one, expr)


def regex_value(*values: str) -> str:
    """Several values of a multi-value variable, as Grafana formats them for `=~`."""
    escaped = [re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
