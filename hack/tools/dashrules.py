"""dashlint's rules: grafana/dashboard-linter's rule set, one function per rule, in a table.

Each rule takes the dashboard read once (`dashboard.Context`) and yields its findings; `RULES`
maps the rule's name (as dashboard-linter names it, and as `.lint` files refer to it) to it, so a
new rule is one decorated function. What each rule checks, and where dashlint is stricter than the
Go code, is in tools/dashlint.py's docstring.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

from tools import dashboard, grafanavars, promql
from tools.dashboard import Context, Finding, Target

COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
COUNTER_FUNCTIONS = frozenset({"rate", "irate", "increase"})
RATE_FUNCTIONS = frozenset({"rate", "irate"})

# Grafana's unit ids, as dashboard-linter lists them (grafana-data's valueFormats/categories.ts).
UNITS = frozenset(
    """
    none string short percent percentunit humidity dB hex0x hex sci locale pixel accMS2
    accFS2 accG degree radian grad arcmin arcsec areaM2 areaF2 areaMI2 flops mflops gflops
    tflops pflops eflops zflops yflops ppm conppb conngm3 conngNm3 con\u03bcgm3
    con\u03bcgNm3 conmgm3 conmgNm3 congm3 congNm3 conmgdL conmmolL currencyUSD currencyGBP
    currencyEUR currencyJPY currencyRUB currencyUAH currencyBRL currencyDKK currencyISK
    currencyNOK currencySEK currencyCZK currencyCHF currencyPLN currencyBTC currencymBTC
    currency\u03bcBTC currencyZAR currencyINR currencyKRW currencyIDR currencyPHP
    currencyVND bytes decbytes bits decbits kbytes deckbytes mbytes decmbytes gbytes
    decgbytes tbytes dectbytes pbytes decpbytes pps binBps Bps binbps bps KiBs Kibits KBs
    Kbits MiBs Mibits MBs Mbits GiBs Gibits GBs Gbits TiBs Tibits TBs Tbits PiBs Pibits PBs
    Pbits dateTimeAsIso dateTimeAsIsoNoDateIfToday dateTimeAsUS dateTimeAsUSNoDateIfToday
    dateTimeAsLocal dateTimeAsLocalNoDateIfToday dateTimeAsSystem dateTimeFromNow watt kwatt
    megwatt gwatt mwatt Wm2 voltamp kvoltamp voltampreact kvoltampreact watth watthperkg
    kwatth kwattm amph kamph mamph joule ev amp kamp mamp volt kvolt mvolt dBm ohm kohm Mohm
    farad \xb5farad nfarad pfarad ffarad henry mhenry \xb5henry lumens flowgpm flowcms
    flowcfs flowcfm litreh flowlpm flowmlpm lux forceNm forcekNm forceN forcekN Hs KHs MHs
    GHs THs PHs EHs massmg massg masslb masskg masst lengthmm lengthin lengthft lengthm
    lengthkm lengthmi pressurembar pressurebar pressurekbar pressurepa pressurehpa
    pressurekpa pressurehg pressurepsi radbq radci radgy radrad radsv radmsv radusv radrem
    radexpckg radr radsvh radmsvh radusvh rotrpm rothz rotrads rotdegs celsius fahrenheit
    kelvin hertz ns \xb5s ms s m h d dtdurationms dtdurations dthms dtdhms timeticks clockms
    clocks cps ops reqps rps wps iops cpm opm rpm wpm mps mpm velocityms velocitykmh
    velocitymph velocityknot mlitre litre m3 Nm3 dm3 gallons bool bool_yes_no bool_on_off
    """.split()  # noqa: SIM905  (a word list reads better than 260 quoted strings)
)


Rule = Callable[[Context], Iterator[Finding]]
RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[name] = fn
        return fn

    return register


def _at(target: Target, message: str) -> Finding:
    return Finding(message, panel=dashboard.panel_name(target.panel), target=target.index)


@rule("template-datasource-rule")
def _template_datasource(ctx: Context) -> Iterator[Finding]:
    templated = [v for v in ctx.variables if str(v.get("type", "")).lower() == "datasource"]
    if not templated:
        yield Finding("does not have a templated data source")
    for v in templated:
        query, name, label = dashboard.template_query(v), v.get("name"), v.get("label")
        names, labels = {f"{query.lower()}_datasource"}, {f"{query.title()} data source"}
        if len(templated) == 1:
            names, labels = names | {"datasource"}, labels | {"Data source"}
        if name not in names:
            yield Finding(f"templated data source variable named '{name}', should be named "
                          + " or ".join(f"'{n}'" for n in sorted(names)))  # fmt: skip
        if label not in labels:
            yield Finding(f"templated data source variable labeled '{label}', should be labeled "
                          + " or ".join(f"'{n}'" for n in sorted(labels)), warning=True)  # fmt: skip
        if query != dashboard.PROMETHEUS:
            yield Finding(f"data source variable '{name}' queries '{query}', not 'prometheus': "
                          "dashlint checks Prometheus dashboards only")  # fmt: skip


@rule("template-label-promql-rule")
def _template_label_promql(ctx: Context) -> Iterator[Finding]:
    if not ctx.prometheus:
        return
    for v in ctx.query_variables:
        problem = (v.promql.error if v.promql else None) or v.problem
        if problem:
            yield Finding(f"template '{v.name}' invalid templated label '{v.query}': {problem}")


@rule("template-on-time-change-reload-rule")
def _template_reload(ctx: Context) -> Iterator[Finding]:
    for v in ctx.variables:
        if v.get("type") == "query" and v.get("refresh") != 2:
            yield Finding(f"templated datasource variable named '{v.get('name')}', should be set "
                          "to be refreshed 'On Time Range Change (value 2)', is currently "
                          f"'{v.get('refresh')}'")  # fmt: skip


@rule("template-uneditable-rule")
def _template_uneditable(ctx: Context) -> Iterator[Finding]:
    if ctx.dash.get("editable") is not False:
        yield Finding("is editable, it should be set to 'editable: false'")


def _template_matcher_rule(ctx: Context, name: str) -> Iterator[Finding]:
    """template-job-rule / template-instance-rule: a multi-select `name` variable, all = .+"""
    if not ctx.prometheus:
        return
    v = next((v for v in ctx.variables if v.get("name") == name), None)
    if v is None:
        yield Finding(f"is missing the {name} template")
        return
    uid = dashboard.datasource_uid(v.get("datasource"))
    if uid not in {"$datasource", "${datasource}"}:
        yield Finding(f"{name} template should use datasource '$datasource', is currently '{uid}'")
    if v.get("type") != "query":
        yield Finding(
            f"{name} template should be a Prometheus query, is currently '{v.get('type')}'"
        )
    if v.get("label") != name.title():
        yield Finding(f"{name} template should be labeled '{name.title()}', is currently "
                      f"'{v.get('label')}'", warning=True)  # fmt: skip
    if not v.get("multi"):
        yield Finding(f"{name} template should be a multi select")
    if v.get("allValue") != ".+":
        yield Finding(
            f"{name} template allValue should be '.+', is currently '{v.get('allValue')}'"
        )


@rule("panel-datasource-rule")
def _panel_datasource(ctx: Context) -> Iterator[Finding]:
    names = [v.get("name") for v in ctx.variables if v.get("type") == "datasource"]
    allowed = {f"${n}" for n in names} | {f"${{{n}}}" for n in names}
    for p in ctx.query_panels:
        for where, raw in [("", p.get("datasource"))] + [
            (f" (target {i})", t["datasource"])
            for i, t in enumerate(p.get("targets") or [])
            if "datasource" in t
        ]:
            try:
                uid = dashboard.datasource_uid(raw)
            except ValueError as e:
                yield Finding(f"has {e}{where}", panel=dashboard.panel_name(p))
                continue
            if uid not in allowed:
                yield Finding(f"does not use a templated datasource, uses '{uid}'{where}",
                              panel=dashboard.panel_name(p))  # fmt: skip


@rule("panel-title-description-rule")
def _panel_title_description(ctx: Context) -> Iterator[Finding]:
    for p in ctx.query_panels:
        if not p.get("title") or not p.get("description"):
            yield Finding(f"has missing title or description, currently has title "
                          f"'{p.get('title', '')}' and description: '{p.get('description', '')}'",
                          panel=dashboard.panel_name(p))  # fmt: skip


def _unit_and_mappings(panel: dashboard.Json) -> tuple[str, bool]:
    """The panel's unit (an override's wins over the default) and whether it maps values."""
    config = panel.get("fieldConfig") or {}
    defaults = config.get("defaults") or {}
    unit, mapped = "", bool(defaults.get("mappings"))
    for override in config.get("overrides") or []:
        for prop in override.get("properties") or []:
            if prop.get("id") == "unit" and isinstance(prop.get("value"), str):
                unit = prop["value"]
            mapped = mapped or (prop.get("id") == "mappings" and bool(prop.get("value")))
    return unit or str(defaults.get("unit") or ""), mapped


@rule("panel-units-rule")
def _panel_units(ctx: Context) -> Iterator[Finding]:
    for p in ctx.query_panels:
        reduce = (p.get("options") or {}).get("reduceOptions") or {}
        if p.get("type") == "stat" and reduce.get("fields", ""):
            continue  # a stat panel showing non-numeric fields (a label's value) has no unit
        unit, mapped = _unit_and_mappings(p)
        if not mapped and unit not in UNITS:
            yield Finding(
                f"has no or invalid units defined: '{unit}'", panel=dashboard.panel_name(p)
            )


@rule("panel-no-targets-rule")
def _panel_no_targets(ctx: Context) -> Iterator[Finding]:
    for p in ctx.query_panels:
        if not p.get("targets"):
            yield Finding("has no targets", panel=dashboard.panel_name(p))


@rule("target-promql-rule")
def _target_promql(ctx: Context) -> Iterator[Finding]:
    if not ctx.prometheus:
        return
    ids = {p.get("id") for p in ctx.dash.get("panels") or []}
    for t in ctx.targets:
        q, ref = t.query, t.raw.get("panelId")
        if not q.text and isinstance(ref, int) and ref > 0:
            if ref in ids:
                continue
            yield _at(t, "Invalid panel reference in target")
        if q.expand_error:
            yield _at(t, f"could not expand variables: {q.expand_error}")
        elif q.promql_error:
            yield _at(t, f"invalid PromQL query '{q.text}': {q.promql_error}")
        elif q.tree_error:
            yield _at(t, f"dashlint's PromQL reader failed on '{q.text}': {q.tree_error}")


def _walked(ctx: Context) -> Iterator[tuple[Target, promql.Node, list[promql.Node]]]:
    for t in ctx.targets:
        if t.query.tree is not None:
            for node, parents in promql.walk(t.query.tree):
                yield t, node, parents


@rule("target-rate-interval-rule")
def _target_rate_interval(ctx: Context) -> Iterator[Finding]:
    magic = grafanavars.GLOBALS["__rate_interval"]
    for t, node, parents in _walked(ctx):
        if node.kind != "matrix" or node.range == magic or not parents:
            continue
        parent = parents[-1]
        if parent.kind != "call":
            yield _at(t, f"invalid PromQL query '{t.query.text}': $__rate_interval used in "
                      "non-rate function")  # fmt: skip
        elif parent.name in RATE_FUNCTIONS:
            yield _at(t, f"invalid PromQL query '{t.query.text}': should use $__rate_interval")


@rule("target-counter-agg-rule")
def _target_counter_agg(ctx: Context) -> Iterator[Finding]:
    for t, node, parents in _walked(ctx):
        if node.kind != "selector" or not node.name.endswith(COUNTER_SUFFIXES):
            continue
        kinds = [(p.kind, p.name) for p in parents[-2:]]
        if len(kinds) < 2 or kinds[1][0] != "matrix" or kinds[0][1] not in COUNTER_FUNCTIONS:
            yield _at(t, f"counter metric '{node.name}' is not aggregated with rate, irate, or "
                      "increase")  # fmt: skip


def _target_matcher_rule(ctx: Context, label: str) -> Iterator[Finding]:
    """target-job-rule / target-instance-rule: every selector has `label=~"$label"`."""
    if not ctx.prometheus:
        return
    for t, node, _ in _walked(ctx):
        if node.kind != "selector":
            continue
        problem = f"{label} selector not found"
        for name, op, value in node.matchers:
            if name != label:
                continue
            if (op, value) == ("=~", f"${label}"):
                problem = ""
                break
            problem = f"{label} selector is {value if op == '=~' else op}, not " + (
                f"${label}" if op == "=~" else "=~"
            )
        if problem:
            yield _at(t, f"invalid PromQL query '{t.query.text}': {problem}")


# The job and instance rules, one pair per label: the variable exists, and every selector uses it.
for _label in ("job", "instance"):
    RULES[f"template-{_label}-rule"] = functools.partial(_template_matcher_rule, name=_label)
    RULES[f"target-{_label}-rule"] = functools.partial(_target_matcher_rule, label=_label)
