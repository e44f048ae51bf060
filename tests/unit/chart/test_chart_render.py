"""Render the chart with `helm template` for each scenario under `ci/` and check what a cluster
admin would review: least-privilege RBAC, a locked-down pod, working probes, peering for two
replicas, and the optional ServiceMonitor. Runs the real helm binary; no cluster needed.
"""

from __future__ import annotations

import pytest
import yaml
from llm_operator import rbac, settings
from llm_runtime.api import contract

from tests.unit.chart.helmrender import (
    CHART,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    Doc,
    of_kind,
    only,
    render,
    run_helm,
)

pytestmark = pytest.mark.unit


def grants(rules: list[Doc]) -> dict[tuple[str, str], set[str]]:
    """Flatten RBAC rules into {(apiGroup, resource): verbs} (resourceNames-limited rules apart)."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        if rule.get("resourceNames"):
            continue
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def named_grants(rules: list[Doc]) -> dict[tuple[str, str], tuple[set[str], set[str]]]:
    """{(apiGroup, resource): (verbs, resourceNames)} for rules limited to named objects."""
    return {
        (group, resource): (set(rule["verbs"]), set(rule["resourceNames"]))
        for rule in rules
        if rule.get("resourceNames")
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def env_of(container: Doc) -> dict[str, Doc]:
    """The container's env entries by name."""
    return {e["name"]: e for e in container.get("env", [])}


def operator_container(docs: tuple[Doc, ...]) -> Doc:
    """The operator container of the rendered Deployment."""
    containers = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    result: Doc = containers[0]
    return result


def permissions_of(rules: list[Doc]) -> set[rbac.Permission]:
    """Every (apiGroup, resource, verb, limited to named objects) a list of RBAC rules allows."""
    return {
        rbac.Permission(group, resource, verb, bool(rule.get("resourceNames")))
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def as_grants(permissions: frozenset[rbac.Permission]) -> dict[tuple[str, str], set[str]]:
    """{(apiGroup, resource): verbs} of a set of permissions (named or not)."""
    out: dict[tuple[str, str], set[str]] = {}
    for p in permissions:
        out.setdefault((p.api_group, p.resource), set()).add(p.verb)
    return out


def expected_grants(*, clusterwide: bool) -> tuple[dict[tuple[str, str], set[str]], ...]:
    """(cluster-scope grants, per-namespace grants) the chart must render: llm_operator.rbac's
    table, which leaves out the peering objects' create (the chart creates them) and reads
    namespaces only where kopf lists them (namespaced mode)."""
    cluster, namespaced = rbac.permissions(clusterwide=clusterwide)
    return as_grants(cluster), as_grants(namespaced)


def watches_every_namespace(scenario: str) -> bool:
    """Whether a scenario installs a cluster-wide operator (no operator.watchNamespaces)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    scenario_values = yaml.safe_load((CHART / "ci" / scenario).read_text()) or {}
    operator_values = {**values["operator"], **scenario_values.get("operator", {})}
    return not operator_values["watchNamespaces"]


def all_grants(rules: list[Doc]) -> dict[tuple[str, str], set[str]]:
    """grants() and named_grants() merged: every verb a role allows on each resource."""
    merged = grants(rules)
    for key, (verbs, _) in named_grants(rules).items():
        merged.setdefault(key, set()).update(verbs)
    return merged


def test_scenarios_exist_for_defaults_ha_and_namespaced_installs() -> None:
    assert {"default-values.yaml", "ha-values.yaml", "namespaced-values.yaml"} <= set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_is_clean(scenario: str) -> None:
    proc = run_helm("lint", "--strict", str(CHART), "-f", str(CHART / "ci" / scenario))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_default_install_renders_a_clusterwide_operator_without_servicemonitor() -> None:
    docs = render("default-values.yaml")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service",
            "ClusterKopfPeering",
        ]
    )  # fmt: skip
    assert not of_kind(docs, "ServiceMonitor")
    assert only(docs, "Deployment")["spec"]["replicas"] == 1


def test_rbac_table_grants_what_the_tick_writes() -> None:
    cluster, _ = expected_grants(clusterwide=True)
    assert cluster[(contract.GROUP, "llmdeployments/status")] >= {"patch"}
    assert cluster[("apps", "deployments")] >= {"create", "patch"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_roles_equal_the_rbac_table_exactly(scenario: str) -> None:
    """Verb by verb, named-object limits included: llm_operator.rbac is the one list."""
    docs = render(scenario)
    cluster, namespaced = rbac.permissions(clusterwide=watches_every_namespace(scenario))
    assert permissions_of(only(docs, "ClusterRole")["rules"]) == cluster
    roles = of_kind(docs, "Role")
    assert bool(roles) == bool(namespaced)
    for role in roles:
        assert permissions_of(role["rules"]) == namespaced, role["metadata"]["namespace"]
    peering = {p["metadata"]["name"] for p in of_kind(docs, "ClusterKopfPeering")}
    peering |= {p["metadata"]["name"] for p in of_kind(docs, "KopfPeering")}
    for role in [only(docs, "ClusterRole"), *roles]:
        for rule in role["rules"]:
            if rule.get("resourceNames"):
                assert set(rule["resourceNames"]) == peering, rule


def test_clusterwide_rbac_grants_exactly_what_the_operator_needs() -> None:
    docs = render("default-values.yaml")
    rules = only(docs, "ClusterRole")["rules"]
    cluster, namespaced = expected_grants(clusterwide=True)
    assert all_grants(rules) == cluster
    assert not namespaced and not of_kind(docs, "Role")
    named = named_grants(rules)
    assert named == {
        ("kopf.dev", "clusterkopfpeerings"): ({"get", "patch"}, {"llmop-llm-operator"})
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rbac_has_no_wildcards_secrets_or_escalation(scenario: str) -> None:
    docs = render(scenario)
    for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)
            assert not {"secrets", "nodes"} & set(rule["resources"]), rule
            if "configmaps" in rule["resources"]:  # the front door's routes, read only by name
                assert set(rule["verbs"]) <= {"get", "create", "patch"}, rule
            assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])


def test_rbac_binds_only_the_operator_service_account() -> None:
    docs = render("namespaced-values.yaml")
    sa = only(docs, "ServiceAccount")["metadata"]["name"]
    bindings = of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding")
    assert len(bindings) == 3
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}
        ]
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa


def test_namespaced_install_uses_a_role_per_namespace_and_reads_only_at_cluster_scope() -> None:
    docs = render("namespaced-values.yaml")
    cluster, namespaced = expected_grants(clusterwide=False)
    cluster_rules = only(docs, "ClusterRole")["rules"]
    assert all_grants(cluster_rules) == cluster
    assert all(verbs <= {"get", "list", "watch"} for verbs in cluster.values())
    assert not named_grants(cluster_rules)
    roles = {r["metadata"]["namespace"]: r for r in of_kind(docs, "Role")}
    assert sorted(roles) == ["team-a", "team-b"]
    for role in roles.values():
        assert all_grants(role["rules"]) == namespaced
        assert named_grants(role["rules"]) == {
            ("kopf.dev", "kopfpeerings"): ({"get", "patch"}, {"llm-operator-teams"}),
        }
    bindings = {b["metadata"]["namespace"]: b["roleRef"] for b in of_kind(docs, "RoleBinding")}
    assert bindings == {
        ns: {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "llmop-llm-operator"}
        for ns in ("team-a", "team-b")
    }
    peerings = of_kind(docs, "KopfPeering")
    assert sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings) == [
        ("team-a", "llm-operator-teams"),
        ("team-b", "llm-operator-teams"),
    ]
    assert not of_kind(docs, "ClusterKopfPeering")
    assert env_of(operator_container(docs))["LLM_OPERATOR_NAMESPACES"]["value"] == "team-a,team-b"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pod_runs_non_root_with_read_only_root_and_no_capabilities(scenario: str) -> None:
    docs = render(scenario)
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = operator_container(docs)["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert not ctx.get("privileged", False)
    mounts = {m["mountPath"]: m["name"] for m in operator_container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "a read-only root needs a writable /tmp"


def test_probes_hit_kopf_healthz_on_the_declared_health_port() -> None:
    container = operator_container(render("default-values.yaml", "operator.healthPort=8181"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": contract.OPERATOR_METRICS_PORT, "health": 8181}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container[probe]["periodSeconds"] >= 1
    env = env_of(container)
    assert env["LLM_OPERATOR_HEALTH_PORT"]["value"] == "8181"
    assert env["LLM_OPERATOR_METRICS_PORT"]["value"] == str(contract.OPERATOR_METRICS_PORT)


def test_operator_image_defaults_to_the_local_cluster_repository_and_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    container = operator_container(render("default-values.yaml"))
    assert container["image"] == f"llm-operator/operator:{chart['appVersion']}"
    env = env_of(container)
    assert (
        env["LLM_OPERATOR_RUNTIME_IMAGE"]["value"] == f"llm-operator/runtime:{chart['appVersion']}"
    )
    tagged = operator_container(render("default-values.yaml", "image.tag=dev"))
    assert tagged["image"] == "llm-operator/operator:dev"


def test_two_replicas_coordinate_through_their_own_peering_object() -> None:
    docs = render("ha-values.yaml")
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    peering = only(docs, "ClusterKopfPeering")["metadata"]["name"]
    env = env_of(operator_container(docs))
    assert env["LLM_OPERATOR_PEERING_NAME"]["value"] == peering != "default"
    # kopf names each replica in the peering status after POD_ID: distinct per pod.
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    rules = only(docs, "ClusterRole")["rules"]
    assert named_grants(rules)[("kopf.dev", "clusterkopfpeerings")] == ({"get", "patch"}, {peering})
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_env_is_valid_operator_settings(scenario: str) -> None:
    """The chart's env is the operator's whole configuration: it must parse, and mean what the
    values say (llm_operator.settings fails fast on anything else)."""
    docs = render(scenario)
    env = {
        name: entry["value"]
        for name, entry in env_of(operator_container(docs)).items()
        if "value" in entry
    }
    ops = settings.from_env(env)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    scenario_values = yaml.safe_load((CHART / "ci" / scenario).read_text()) or {}
    operator_values = {**values["operator"], **scenario_values.get("operator", {})}
    assert ops.namespaces == tuple(operator_values["watchNamespaces"])
    assert ops.log_level == operator_values["logLevel"]
    assert ops.log_format == operator_values["logFormat"]
    assert (ops.health_port, ops.metrics_port) == (
        contract.OPERATOR_HEALTH_PORT,
        contract.OPERATOR_METRICS_PORT,
    )
    assert ops.peering and ops.peering_name
    peerings = of_kind(docs, "ClusterKopfPeering") + of_kind(docs, "KopfPeering")
    assert {p["metadata"]["name"] for p in peerings} == {ops.peering_name}


def test_disabled_peering_runs_standalone_without_peering_objects() -> None:
    docs = render("default-values.yaml", "operator.peering.enabled=false")
    assert not of_kind(docs, "ClusterKopfPeering")
    env = env_of(operator_container(docs))
    assert env["LLM_OPERATOR_PEERING_NAME"]["value"] == ""
    assert not settings.from_env({"LLM_OPERATOR_PEERING_NAME": ""}).peering


def test_servicemonitor_when_enabled_scrapes_the_metrics_service() -> None:
    docs = render("ha-values.yaml")
    monitor = only(docs, "ServiceMonitor")
    service = only(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ("replicaCount=-1", "replicaCount"),
        ("operator.logLevel=verbose", "logLevel"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("operator.metricsPort=70000", "metricsPort"),
        ("operator.watchNamespaces[0]=Not_A_Namespace", "watchNamespaces"),
        ("unknownValue=1", "unknownValue"),
    ],
)
def test_schema_refuses_bad_values_naming_them(override: str, complaint: str) -> None:
    proc = run_helm("template", RELEASE, str(CHART), "--set", override)
    assert proc.returncode != 0
    assert complaint in proc.stderr


def test_every_object_carries_the_common_labels() -> None:
    for doc in render("namespaced-values.yaml"):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE, doc["kind"]
        assert labels["app.kubernetes.io/part-of"] == "llm-operator", doc["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", doc["kind"]
