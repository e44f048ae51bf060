"""The monitoring bundle against a real Prometheus (Debian's package, started here).

The chart is installed under its own release, watching this module's namespace. Its
PodMonitor, ServiceMonitor and PrometheusRule are rendered with `helm template` from the same
chart and values, and turned into the plain Prometheus configuration prometheus-operator would
generate from them (`monitoring.scrape`): the PodMonitor's selector and port, the
ServiceMonitor's honorLabels. Debian builds Prometheus without Kubernetes service discovery, so
`monitoring.discovery` writes file_sd targets with the labels that discovery would give them
(`__meta_kubernetes_*`), and the jobs' relabelings run in Prometheus unchanged.

Then real traffic (gRPC and the OpenAI-compatible HTTP API, with some bad requests) reaches
SmolLM2, a canary that fails its smoke prompt is rolled back, and the test checks that:
- Prometheus scrapes every runtime pod exactly once, and the operator;
- every dashboard panel's query returns data, with Grafana's variables filled in;
- every alert expression evaluates without error, every rule's health is `ok`, and
  LLMDeploymentRolledBack fires naming the object;
- the snapshot picture of the dashboard's data renders (kept at $LLMOP_DASHBOARD_PNG if set;
  the README's picture is one of these).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from bench import canary_kit as kit
from bench import loadgen
from llm_runtime.api import contract
from localcluster.cp_testing import Cluster
from monitoring import discovery, grafana, promserver, scrape, snapshot

pytestmark = pytest.mark.e2e

RELEASE = "prom-e2e"
SCRAPE = "5s"
MONITORING_VALUES = (
    "serviceMonitor.enabled=true",
    f"serviceMonitor.interval={SCRAPE}",
    "serviceMonitor.scrapeTimeout=4s",
    "monitoring.podMonitor.enabled=true",
    f"monitoring.podMonitor.interval={SCRAPE}",
    "monitoring.podMonitor.scrapeTimeout=4s",
    "monitoring.prometheusRule.enabled=true",
)
# Grafana's $__rate_interval for a 5 s scrape over a short range is 4 x 5 s; a minute keeps
# every rate well fed at this test's request rate.
RATE_INTERVAL = "1m"
LOAD_TIMEOUT = 600.0
QUESTION = "What is the capital of France?"


def render_monitoring(cluster: Cluster, *, op_ns: str, watch: str) -> list[dict[str, Any]]:
    """The chart's monitoring objects, as `helm template` renders them for this release."""
    sets = [f"operator.watchNamespaces={{{watch}}}", *MONITORING_VALUES]
    done = subprocess.run(
        [
            str(cluster.bin_dir / "helm"), "template", RELEASE, str(kit.REPO / "charts/llm-operator"),
            "--namespace", op_ns, *(a for s in sets for a in ("--set", s)),
        ],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    kinds = ("PodMonitor", "ServiceMonitor", "PrometheusRule")
    return [d for d in docs if d.get("kind") in kinds]


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    with kit.own_namespace(cluster, "prom") as name:
        yield name


@pytest.fixture(scope="module")
def operator_ns(cluster: Cluster, ns: str) -> Iterator[str]:
    with kit.own_operator(cluster, ns, release=RELEASE, prefix="prom-op") as op_ns:
        yield op_ns


@pytest.fixture(scope="module")
def prom(
    cluster: Cluster, ns: str, operator_ns: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[promserver.Prometheus]:
    objects = render_monitoring(cluster, op_ns=operator_ns, watch=ns)
    assert sorted(o["kind"] for o in objects) == ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
    rules = {
        f"{o['metadata']['name']}.rules.yaml": scrape.rule_file(o)
        for o in objects
        if o["kind"] == "PrometheusRule"
    }
    config = scrape.config(objects, scrape_interval=SCRAPE, evaluation_interval=SCRAPE)
    folder = tmp_path_factory.mktemp("prometheus")
    config, watched = discovery.stand_in(config, folder)

    def lister(resource: str, namespace: str) -> list[dict[str, Any]]:
        return list(cluster.kubectl_json("get", resource, "-n", namespace)["items"])

    with (
        discovery.FileDiscovery(watched, lister) as sd,
        promserver.running(folder, config, rules) as p,
    ):
        yield p
    assert not sd.errors, sd.errors[:3]


@pytest.fixture(scope="module")
def chat(cluster: Cluster, ns: str, operator_ns: str) -> Iterator[kit.Target]:
    target = kit.Target(cluster, ns)
    cluster.apply(kit.cache_claim(), namespace=ns)
    target.apply(kit.spec_with())

    def serving() -> bool:
        st = target.status()
        return st.get("ready") == "1/1" and (st.get("rollout") or {}).get("phase") == "Stable"

    kit.wait_for("chat Ready 1/1 and Stable", serving, timeout=LOAD_TIMEOUT, interval=3)
    yield target
    cluster.kubectl("delete", "llmd", target.name, "-n", ns, "--timeout=120s", check=False)


def http_traffic(chat: kit.Target) -> None:
    """A few OpenAI-API requests through the Service, and two it must refuse (404, 400)."""
    svc = chat.cluster.kubectl_json("get", "service", chat.name, "-n", chat.namespace)
    url = f"http://{svc['spec']['clusterIP']}:{contract.RUNTIME_HTTP_PORT}/v1"
    model = kit.BASE_SPEC["model"]["name"]
    ask: dict[str, Any] = {
        "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8, "temperature": 0,
    }  # fmt: skip
    with openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120) as c:
        for _ in range(3):
            c.chat.completions.create(model=model, **ask)
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="no-such-model", **ask)
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model=model, **{**ask, "temperature": -1})


@pytest.fixture(scope="module")
def story(chat: kit.Target, prom: promserver.Prometheus) -> dict[str, Any]:
    """What happened, for the checks: stable traffic, then a canary that fails its smoke
    prompt (a tiny random model) under the same traffic and is rolled back."""
    start = time.time()
    load = loadgen.LoadConfig(target=chat.service_target(), concurrency=2, pause_seconds=0.5)
    tiny = kit.tiny_model_on_node(f"tiny-{chat.namespace}")
    smoke = [{"prompt": QUESTION, "expect": "(?i)paris", "timeout": "30s"}]
    with loadgen.BackgroundLoad(load):
        http_traffic(chat)
        time.sleep(45)  # a few scrapes of the stable alone
        chat.apply(
            kit.spec_with(
                model={"source": f"file://{tiny}", "format": "hf"},
                rollout={"analysis": {"interval": f"{kit.INTERVAL}s", "smokePrompts": smoke}},
            )
        )
        canary = chat.new_revision()
        st = chat.rolled_back(canary, timeout=LOAD_TIMEOUT)
        http_traffic(chat)
        time.sleep(20)  # the rollback's metrics scraped, the alert rules evaluated
    return {"start": start, "canary": canary, "status": st}


def test_every_runtime_pod_is_scraped_once_and_the_operator_too(
    prom: promserver.Prometheus, chat: kit.Target, story: dict[str, Any]
) -> None:
    def up_targets() -> list[dict[str, Any]] | None:
        ts = [t for t in prom.targets() if t["health"] == "up"]
        return ts if any(t["scrapePool"].startswith("serviceMonitor/") for t in ts) else None

    targets = kit.wait_for("the operator scraped", up_targets, timeout=60)
    runtime = [t for t in targets if t["scrapePool"].startswith("podMonitor/")]
    pods = [p["metadata"]["name"] for p in chat.live_pods()]
    assert sorted(t["labels"]["pod"] for t in runtime) == sorted(pods), runtime
    assert {t["labels"]["llmdeployment"] for t in runtime} == {chat.name}
    assert all(t["labels"]["namespace"] == chat.namespace for t in runtime)
    operator = [t for t in targets if t["scrapePool"].startswith("serviceMonitor/")]
    assert len(operator) == 1, operator


def values(chat: kit.Target) -> dict[str, str]:
    return {
        "datasource": "prometheus",
        "namespace": grafana.regex_value(chat.namespace),
        "llmdeployment": grafana.regex_value(chat.name),
        "__rate_interval": RATE_INTERVAL,
    }


def test_every_dashboard_panel_query_returns_data(
    prom: promserver.Prometheus, chat: kit.Target, story: dict[str, Any]
) -> None:
    dashboard = json.loads(snapshot.DASHBOARD.read_text())
    targets = list(grafana.targets(dashboard))
    assert len(targets) >= 15, targets
    empty, errors = [], []
    for t in targets:
        try:
            if not prom.query(grafana.substitute(t.expr, values(chat))):
                empty.append(f"{t.panel} [{t.ref_id}]: {t.expr}")
        except promserver.QueryError as e:
            errors.append(f"{t.panel} [{t.ref_id}]: {e}")
    assert not errors, "\n".join(errors)
    assert not empty, "panels without data:\n" + "\n".join(empty)
    # The dashboard's variables list our object, as Grafana's drop-downs would.
    got = prom.api("label/llmdeployment/values", **{"match[]": "llm_runtime_requests_total"})
    assert chat.name in got


def test_every_alert_evaluates_and_the_rollback_alert_fires(
    prom: promserver.Prometheus, chat: kit.Target, story: dict[str, Any]
) -> None:
    rules = prom.rules()
    alerting = [r for r in rules if r["type"] == "alerting"]
    assert len(alerting) >= 7, [r["name"] for r in rules]
    for r in alerting:
        prom.query(r["query"])  # raises QueryError on a bad expression
    kit.wait_for(
        "every rule evaluated",
        lambda: all(r.get("lastEvaluation", "").startswith("20") for r in prom.rules()),
        timeout=30,
    )
    unhealthy = [(r["name"], r.get("lastError")) for r in prom.rules() if r["health"] != "ok"]
    assert not unhealthy, unhealthy

    def rolled_back_alert() -> dict[str, Any] | None:
        return next(
            (
                a
                for a in prom.alerts()
                if a["labels"].get("alertname") == "LLMDeploymentRolledBack"
                and a["state"] == "firing"
                and a["labels"].get("name") == chat.name
            ),
            None,
        )

    alert = kit.wait_for("LLMDeploymentRolledBack firing", rolled_back_alert, timeout=60)
    assert alert["labels"]["namespace"] == chat.namespace
    assert alert["labels"]["from_revision"] == story["canary"]
    assert alert["labels"]["reason"] == "SmokePromptMismatch"
    firing = {a["labels"]["alertname"] for a in prom.alerts() if a["state"] == "firing"}
    assert "LLMDeploymentNoReadyReplicas" not in firing  # the stable kept serving


def test_the_dashboard_snapshot_renders(
    prom: promserver.Prometheus, chat: kit.Target, story: dict[str, Any], tmp_path: Path
) -> None:
    out = Path(os.environ.get("LLMOP_DASHBOARD_PNG") or tmp_path / "dashboard.png")
    drawn = snapshot.render(
        prom,
        json.loads(snapshot.DASHBOARD.read_text()),
        values(chat),
        start=story["start"] - 30,
        end=time.time(),
        out=out,
        title=f"llm-operator: {chat.namespace}/{chat.name}, SmolLM2, canary rolled back "
        f"({story['status']['rollback']['reason']})",
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(n > 0 for n in drawn.values()), drawn
