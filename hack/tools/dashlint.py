#!/usr/bin/env python3
"""dashlint: grafana/dashboard-linter's rules for our Prometheus dashboards, in Python.

The Go tool (github.com/grafana/dashboard-linter) cannot be used here: the Go module proxy refuses
it, and its newest versions depend on AGPL modules this project may not take. dashlint implements
its documented rule set (upstream's docs/rules/*.md, with the semantics of its lint/rule_*.go):
the same rule names, the same expansion of Grafana variables before PromQL is parsed
(`tools.grafanavars`), the same `.lint` file of exclusions and warnings next to the dashboard.
promtool validates PromQL (`tools.promql`); the rules are in `tools.dashrules`.

Rules: template-datasource-rule, template-job-rule, template-instance-rule,
template-label-promql-rule, template-on-time-change-reload-rule, template-uneditable-rule (named
`uneditable-dashboard` in upstream's code; `.lint` may use either), panel-datasource-rule,
panel-title-description-rule, panel-units-rule, panel-no-targets-rule, target-promql-rule,
target-rate-interval-rule, target-counter-agg-rule, target-job-rule, target-instance-rule.
The LogQL rules are not implemented.

Where upstream's code is looser than its docs or than the rule's intent, dashlint is stricter:
`editable` must be present and false (Grafana treats a missing key as editable); `targets: []`
counts as no targets; an empty `mappings` list does not exempt a panel from units; a counter is
recognised by its metric name (upstream's check misses selectors with label matchers) and
`_count`, `_sum` and `_bucket` series count as counters besides `_total`; all panel and target
rules cover one set of panel types, the union of those upstream's rules name (upstream's counter
rule alone looks at every type); a target's own datasource must be the templated one too; a
datasource variable must query `prometheus`; `label_values(selector, label)` has its selector
checked by promtool and its label name checked (upstream accepts a query that partly parses), and
`metrics(regex)` is not read as PromQL. As upstream (code and tests), only rate() and irate()
ranges must be $__rate_interval; increase() over a fixed window is fine.

Usage: dashlint.py [--config .lint] [--strict] [--verbose] DASHBOARD.json...
Exit 0 with one summary line per clean file; 1 with one line per finding; 2 when a file, the
`.lint` or promtool cannot be used. Warnings are printed and fail only with --strict.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):  # run as a script: make the `tools` modules importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools import dashboard, dashrules, promql
from tools.dashboard import Finding

# A rule's name in upstream's code (`.lint` files may use it) -> its documented name.
ALIASES = {"uneditable-dashboard": "template-uneditable-rule"}


class LintError(Exception):
    """The linter cannot run: an unreadable dashboard or `.lint`."""


# --- .lint: exclusions and warnings -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
    """One `entries` item: every field that is set must match the finding."""

    dashboard: str = ""
    panel: str = ""
    target_idx: int | None = None

    def matches(self, dashboard: str, finding: Finding) -> bool:
        return (
            (not self.dashboard or self.dashboard == dashboard)
            and (not self.panel or finding.panel is None or self.panel == finding.panel)
            and (self.target_idx is None or finding.target in (None, self.target_idx))
        )


@dataclasses.dataclass(frozen=True)
class RuleConfig:
    reason: str = ""
    entries: tuple[Entry, ...] = ()  # none: the whole rule

    def covers(self, dashboard: str, finding: Finding) -> bool:
        return not self.entries or any(e.matches(dashboard, finding) for e in self.entries)


@dataclasses.dataclass(frozen=True)
class Config:
    exclusions: dict[str, RuleConfig] = dataclasses.field(default_factory=dict)
    warnings: dict[str, RuleConfig] = dataclasses.field(default_factory=dict)


def _entry(raw: dict[str, Any]) -> Entry:
    idx = raw.get("targetIdx")
    return Entry(str(raw.get("dashboard") or ""), str(raw.get("panel") or ""),
                 None if idx in (None, "") else int(idx))  # fmt: skip


def _rule_configs(path: Path, raw: object) -> dict[str, RuleConfig]:
    out: dict[str, RuleConfig] = {}
    for name, body in (raw or {}).items() if isinstance(raw, dict) else []:
        name = ALIASES.get(name, name)
        if name not in dashrules.RULES:
            raise LintError(f"{path}: unknown rule '{name}'")
        body = body or {}
        out[name] = RuleConfig(str(body.get("reason") or ""),
                               tuple(_entry(e) for e in body.get("entries") or []))  # fmt: skip
    return out


def load_config(path: Path) -> Config:
    """dashboard-linter's `.lint` format; a missing file is an empty configuration."""
    if not path.is_file():
        return Config()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise LintError(f"{path}: {e}") from e
    return Config(
        _rule_configs(path, raw.get("exclusions")), _rule_configs(path, raw.get("warnings"))
    )


# --- running ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Report:
    dashboard: str
    findings: list[Finding]  # what counts: errors and (downgraded) warnings
    excluded: list[Finding]
    panels: int
    queries: int

    def failed(self, *, strict: bool) -> bool:
        return any(strict or not f.warning for f in self.findings)


def lint(dash: dict[str, Any], config: Config | None = None) -> Report:
    config = config or Config()
    ctx = dashboard.Context(dash)
    kept: list[Finding] = []
    excluded: list[Finding] = []
    for name, check in dashrules.RULES.items():
        for found in check(ctx):
            f = dataclasses.replace(found, rule=name)
            if f in kept or f in excluded:  # one line for a problem repeated in one query
                continue
            if name in config.exclusions and config.exclusions[name].covers(ctx.title, f):
                excluded.append(f)
            elif name in config.warnings and config.warnings[name].covers(ctx.title, f):
                kept.append(dataclasses.replace(f, warning=True))
            else:
                kept.append(f)
    return Report(ctx.title, kept, excluded, len(ctx.panels), len(ctx.queries))


def lint_file(path: Path, config_path: Path | None = None) -> Report:
    try:
        dash = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise LintError(f"{path}: {e}") from e
    if not isinstance(dash, dict):
        raise LintError(f"{path}: not a dashboard (a JSON object)")
    return lint(dash, load_config(config_path or path.parent / ".lint"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("dashboards", nargs="+", type=Path, metavar="DASHBOARD.json")
    parser.add_argument("--config", type=Path, help="the .lint file (default: next to each file)")
    parser.add_argument("--strict", action="store_true", help="warnings fail too")
    parser.add_argument("--verbose", action="store_true", help="also print excluded findings")
    args = parser.parse_args(argv)
    failed = False
    for path in args.dashboards:
        try:
            report = lint_file(path, args.config)
        except (LintError, promql.PromtoolError) as e:
            print(f"dashlint: {e}", file=sys.stderr)
            return 2
        for f in report.findings + (report.excluded if args.verbose else []):
            suffix = " (excluded)" if f in report.excluded else ""
            print(f"{path}: {f.line(report.dashboard)}{suffix}")
        failed = failed or report.failed(strict=args.strict)
        if not report.findings:
            print(f"dashlint: {path}: {report.panels} panels, {report.queries} queries, "
                  f"{len(dashrules.RULES)} rules: clean ({len(report.excluded)} excluded by .lint)")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
