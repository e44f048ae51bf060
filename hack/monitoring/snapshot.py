"""A picture of the dashboard's data: every panel's queries, run as range queries against a
real Prometheus, drawn as small charts in the dashboard's order (matplotlib, no Grafana: none
can run here). The README's picture is made this way from the e2e test's run:

    PYTHONPATH=hack .venv/bin/python -m monitoring.snapshot --prometheus http://127.0.0.1:PORT \\
        --var namespace=NS --var llmdeployment=NAME --minutes 10 --out docs/img/dashboard.png

tests/e2e/test_prometheus_e2e.py calls `render` after its traffic, and keeps the file when
LLMOP_DASHBOARD_PNG names where.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from monitoring import grafana, promserver

DASHBOARD = Path(__file__).resolve().parents[2] / "charts/llm-operator/dashboards/llm-runtime.json"
COLUMNS = 3
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def legend(fmt: str, labels: Mapping[str, str], fallback: str) -> str:
    """A series' name as Grafana writes its legendFormat (`{{label}}` filled in)."""
    if not fmt:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or fallback
    return _LEGEND.sub(lambda m: labels.get(m.group(1), ""), fmt)


def render(
    prom: promserver.Prometheus,
    dashboard: Mapping[str, Any],
    values: Mapping[str, str],
    *,
    start: float,
    end: float,
    out: Path,
    title: str = "",
) -> dict[str, int]:
    """Draws every panel into `out` (PNG); returns each panel's number of series drawn."""
    step = max(5.0, (end - start) / 240)
    by_panel: dict[str, list[tuple[str, list[tuple[float, float]]]]] = {}
    for t in grafana.targets(dashboard):
        expr = grafana.substitute(t.expr, values)
        lines = by_panel.setdefault(t.panel, [])
        for series in prom.query_range(expr, start=start, end=end, step=step):
            points = [(float(ts), float(v)) for ts, v in series["values"]]
            points = [(ts, v) for ts, v in points if math.isfinite(v)]
            if points:
                lines.append((legend(t.legend, series["metric"], t.ref_id), points))
    rows = math.ceil(len(by_panel) / COLUMNS)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(6 * COLUMNS, 3.2 * rows), squeeze=False)
    for ax, (panel, lines) in zip(axes.flat, by_panel.items(), strict=False):
        ax.set_title(panel, fontsize=10)
        for name, points in lines:
            xs = [datetime.datetime.fromtimestamp(ts, datetime.UTC) for ts, _ in points]
            ax.plot(xs, [v for _, v in points], label=name[:40], linewidth=1.2)
        if not lines:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
        ax.tick_params(labelsize=8)
        if lines:
            ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(by_panel) :]:
        ax.axis("off")
    fig.suptitle(title or str(dashboard.get("title", "")), fontsize=12)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return {panel: len(lines) for panel, lines in by_panel.items()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    p.add_argument("--var", action="append", default=[], help="NAME=VALUE for a variable")
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    prom = promserver.Prometheus(Path("."), port=int(args.prometheus.rsplit(":", 1)[1]))
    values = dict(v.split("=", 1) for v in args.var)
    end = time.time()
    drawn = render(
        prom,
        json.loads(DASHBOARD.read_text()),
        values,
        start=end - 60 * args.minutes,
        end=end,
        out=args.out,
    )
    print(json.dumps(drawn, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
