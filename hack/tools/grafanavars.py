"""Grafana template variables replaced by sample values, as grafana/dashboard-linter does it.

A query is linted as PromQL after `$var`, `${var}`, `${var:format}` and `[[var]]` are replaced
outside double-quoted strings (inside them a variable is a regex or a label value, and stays as
it is): Grafana's global variables get fixed sample values (`$__rate_interval` an odd duration the
rate-interval rule recognises), a dashboard variable its current value or first option, and
anything else its own name, in the requested format.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

_SAMPLE_TIME = datetime(2020, 7, 13, 20, 19, 9, 254000, tzinfo=UTC)
# https://grafana.com/docs/grafana/latest/variables/variable-types/global-variables/
GLOBALS: dict[str, str | int | datetime] = {
    "__rate_interval": "8869990787ms",
    "__interval": "4867856611ms",
    "__interval_ms": "7781188786",
    "__range_ms": "6737667980",
    "__range_s": "9397795485",
    "__range": "6069770749ms",
    "__dashboard": "AwREbnft",
    "__from": _SAMPLE_TIME,
    "__to": _SAMPLE_TIME,
    "__name": "name",
    "__org": 42,
    "__org.name": "orgname",
    "__user.id": 42,
    "__user.login": "user",
    "__user.email": "user@test.com",
    "timeFilter": "time > now() - 7d",
    "__timeFilter": "time > now() - 7d",
    "__auto": "12345ms",
}
_VARIABLE = re.compile(r"\$(\w+)|\$\{([^}]+)\}|\[\[([^\[\]]+)\]\]", re.ASCII)


def _joined(sep: str, before: str = "", after: str = "") -> Callable[[str, list[str]], str]:
    return lambda _name, values: before + sep.join(values) + after


# https://grafana.com/docs/grafana/latest/variables/advanced-variable-format-options/
# A list variable's sample is its value three times.
_FORMATS: dict[str, Callable[[str, list[str]], str]] = {
    "csv": _joined(","),
    "raw": _joined(","),
    "doublequote": _joined('","', '"', '"'),
    "glob": _joined(",", "{", "}"),
    "json": lambda _name, values: json.dumps(values, separators=(",", ":")),
    "lucene": _joined('" OR "', '("', '")'),
    "percentencode": lambda _name, values: urllib.parse.quote_plus(",".join(values)),
    "pipe": _joined("|"),
    "regex": _joined("|"),
    "singlequote": _joined("','", "'", "'"),
    "sqlstring": _joined("','", "'", "'"),
    "text": _joined(" + "),
    "queryparam": lambda name, values: urllib.parse.urlencode([(f"var-{name}", v) for v in values]),
}


def _time_sample(value: datetime, kind: str, fmt: str) -> str:
    iso = value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "date":
        if fmt not in ("seconds", "iso"):
            raise ValueError(f"unsupported momentjs time format: {fmt}")
        return str(int(value.timestamp())) if fmt == "seconds" else iso
    if fmt == "date":
        return iso
    return str((value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1))


def _sample(name: str, value: str | int | datetime, kind: str, fmt: str) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return _time_sample(value, kind, fmt)
    format_ = _FORMATS.get(fmt)
    return format_(name, [value] * 3) if format_ else value


def _value_of(raw: Any) -> str:
    """The `value` of a variable's `current` or of one of its options (a list's first)."""
    value = (raw or {}).get("value", "") if isinstance(raw, dict) else ""
    if isinstance(value, list):
        value = value[0] if value else ""
    if not isinstance(value, str):
        raise ValueError(f"invalid type for field 'value': {value!r}")
    return value


def _variable(ref: str, variables: list[dict[str, Any]]) -> str:
    parts = ref.split(":")
    if len(parts) > 3:
        raise ValueError(f"unknown variable format: {ref}")
    name = parts[0]
    kind = parts[1] if len(parts) == 3 else ""
    fmt = parts[-1] if len(parts) > 1 else ""
    if name in GLOBALS:
        return _sample(name, GLOBALS[name], kind, fmt)
    if name.startswith("__auto_interval"):
        return "10s"
    others = [v for v in variables if v.get("name") != name]
    for v in variables:
        if v.get("name") != name:
            continue
        current = _value_of(v.get("current"))
        options = v.get("options") or []
        if current or options:  # expanded without itself, so a self-reference cannot loop
            return expand(current or _value_of(options[0]), others)
    return _sample(name, name, kind, fmt)


def expand(expr: str, variables: list[dict[str, Any]]) -> str:
    """`expr` with every variable outside double quotes replaced; ValueError if one cannot be."""
    parts = expr.split('"')
    for i in range(0, len(parts), 2):
        parts[i] = _VARIABLE.sub(
            lambda m: _variable(next(g for g in m.groups() if g is not None), variables), parts[i]
        )
    return '"'.join(parts)
