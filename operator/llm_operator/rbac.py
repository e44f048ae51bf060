"""What the operator may do on the API server: one table, each verb with the code that calls it.

This is the one list of the operator's permissions. The chart's `templates/rbac.yaml` stays a
Helm template (role kinds, names and namespaces are per release), and
tests/unit/chart/test_chart_render.py renders it and asserts its roles grant exactly `permissions()`;
docs/rbac.md is generated from this table (`make docs`, hack/gen_docs.py) and a unit test fails
when it is stale. Adding a call to the API server means adding its verb here, with its caller:
tests/unit/operator/test_rbac_calls.py scans the operator's source (kube calls, the objects it
applies, kopf's handlers and settings) and fails until this table equals what the code calls.

Pure data (no kopf, no kubernetes); nothing in the operator imports it at run time.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import NamedTuple

from llm_operator import GROUP, PLURAL


class Scope(enum.Enum):
    """Where a rule lands in the chart."""

    # A namespaced resource: in the ClusterRole when the operator watches every namespace, in
    # one Role per watched namespace otherwise.
    NAMESPACED = "namespaced"
    # A cluster-scoped resource: always in the ClusterRole.
    CLUSTER = "cluster"


class Mode(enum.Enum):
    """Which installs grant a rule (the chart's `operator.watchNamespaces`)."""

    ALWAYS = "always"
    # Only when watching every namespace (watchNamespaces empty).
    CLUSTERWIDE = "cluster-wide installs only"
    # Only when watching a list of namespaces.
    NAMESPACED = "namespaced installs only"


@dataclasses.dataclass(frozen=True)
class Verb:
    """One verb on one resource and why it is granted."""

    name: str
    # Who makes the call: a module of this package, kopf, or the API server itself. Never empty:
    # tests/unit/operator/test_rbac_calls.py reads the calls from the code and fails on a grant
    # no code needs, on a call without its grant, and on a caller that does not make the call.
    caller: str
    why: str
    # Limited by resourceNames to the release's own object (the kopf peering object).
    own_object: bool = False


@dataclasses.dataclass(frozen=True)
class Grant:
    """The verbs on one (apiGroup, resource)."""

    api_group: str  # "" is the core group
    resource: str
    scope: Scope
    verbs: tuple[Verb, ...]
    mode: Mode = Mode.ALWAYS


@dataclasses.dataclass(frozen=True)
class NotGranted:
    """A call the code can make that the chart deliberately does not grant."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]
    why: str


class Permission(NamedTuple):
    """One verb on one resource, the unit two role sets are compared in."""

    api_group: str
    resource: str
    verb: str
    own_object: bool


_SSA = "server-side apply that creates an absent object is authorized as create"
_GC = (
    "the garbage collector removes children through their ownerReferences; the only child the "
    "operator deletes itself is a retired revision's Deployment"
)
_OWNED = (
    "reads the object of the name it is about to apply (kube.current in converge.apply_owned): one "
    "that this LLMDeployment does not control is left alone, with a NameConflict condition"
)
_PEERING = "(peering: one replica active, the others paused)"


_CACHED = "keeps a watch-backed cache (kopf.index in llm_operator.handlers) of the ones it made"
_WOKEN = "a change or deletion of one wakes its LLMDeployment's tick (kopf.on.event)"


def _cached(what: str) -> tuple[Verb, ...]:
    """list/watch of a child kind the operator reads from a watch-backed cache (kopf indexes,
    listed once at start): a tick reads memory, never the API server."""
    return (
        Verb("list", "kopf", f"{_CACHED}: {what}, listed once at start"),
        Verb("watch", "kopf", f"{_CACHED}; {_WOKEN}"),
    )


def _applied(what: str) -> tuple[Verb, ...]:
    """get/create/patch of a child the tick applies server-side when it differs from the
    cache, through converge.apply_owned, the one place that calls kube.apply."""
    return (
        *_cached(what),
        Verb("get", "llm_operator.converge", _OWNED),
        Verb("create", "llm_operator.converge", f"applies {what} (converge.apply_owned): {_SSA}"),
        Verb(
            "patch",
            "llm_operator.converge",
            f"applies {what} when the cached object differs from the desired one: a spec "
            "change, or a manual edit undone on its watch event",
        ),
    )


def _peering(resource: str, scope: Scope, mode: Mode) -> Grant:
    return Grant(
        "kopf.dev",
        resource,
        scope,
        (
            Verb("list", "kopf", f"lists the peering objects before watching them {_PEERING}"),
            Verb("watch", "kopf", f"sees its peers' heartbeats {_PEERING}"),
            Verb(
                "get",
                "llm_operator.main",
                "checks at start that the release's peering object exists (kube.ensure_peering)",
                own_object=True,
            ),
            Verb(
                "patch",
                "kopf",
                f"writes this replica's heartbeat and priority into the object {_PEERING}",
                own_object=True,
            ),
        ),
        mode,
    )


RULES: tuple[Grant, ...] = (
    Grant(GROUP, PLURAL, Scope.NAMESPACED, (
        Verb("list", "kopf", "lists the LLMDeployments before watching them"),
        Verb("watch", "kopf", "runs one rollout daemon per object and wakes it on a change "
             "(llm_operator.handlers)"),
        Verb("patch", "kopf", f"adds and removes the finalizer that stops an object's daemon "
             f"before it goes, and stores handler state in `{GROUP}/*` annotations "
             f"(llm_operator.handlers.configure sets the prefix)"),
    )),
    Grant(GROUP, f"{PLURAL}/status", Scope.NAMESPACED, (
        Verb("patch", "llm_operator.tick", "writes phase, conditions, revisions and the rollout "
             "state, before it changes any Deployment (kube.patch_status)"),
    )),
    Grant(GROUP, f"{PLURAL}/finalizers", Scope.NAMESPACED, (
        Verb("update", "the API server", "children carry ownerReferences with blockOwnerDeletion "
             "(llm_operator.naming.owner_reference); the OwnerReferencesPermissionEnforcement "
             "admission plugin, on in some distributions, requires update on the owner's "
             "finalizers to set it"),
    )),
    Grant("apps", "deployments", Scope.NAMESPACED, (
        *_cached("every revision's Deployment"),
        Verb("get", "llm_operator.converge", _OWNED),
        Verb("create", "llm_operator.converge", f"applies the spec's revision (kube.apply): {_SSA}"),
        Verb("patch", "llm_operator.converge", "applies the spec's revision, and sets spec.replicas "
             "of a stable or old revision the spec can no longer rebuild (kube.scale)"),
        Verb("delete", "llm_operator.converge", "removes a retired revision's Deployment once its "
             "pods are gone (kube.delete)"),
    )),
    Grant("", "services", Scope.NAMESPACED, (
        *_applied("the ClusterIP and the headless Service, and with the front door each "
                  "revision's headless Service (llm_operator.converge)"),
        Verb("delete", "llm_operator.converge", "removes a retired revision's own Service with its "
             "Deployment (trafficRouting: FrontDoor; kube.delete)"),
    )),
    Grant("", "configmaps", Scope.NAMESPACED, (
        Verb("get", "llm_operator.converge", f"{_OWNED} (the front door's routes; no list or "
             "watch: that would read every ConfigMap)"),
        Verb("create", "llm_operator.converge", f"applies the front door's routes (kube.apply): {_SSA}"),
        Verb("patch", "llm_operator.converge", "rewrites the front door's routes when the rollout "
             "moves (trafficRouting: FrontDoor), and only then"),
    )),
    Grant("", "serviceaccounts", Scope.NAMESPACED, _applied("the runtime pods' ServiceAccount")),
    Grant("policy", "poddisruptionbudgets", Scope.NAMESPACED,
          _applied("the PodDisruptionBudget (one disruption at a time)")),
    Grant("", "pods", Scope.NAMESPACED, (
        Verb("list", "kopf", f"{_CACHED}: the runtime pods (loading, readiness, restarts, crash "
             "loops), listed once at start; never written"),
        Verb("watch", "kopf", f"{_CACHED}; a pod's crash or readiness change wakes its "
             "LLMDeployment's tick at once (kopf.on.event)"),
    )),
    Grant("", "events", Scope.NAMESPACED, (
        Verb("create", "kopf", "posts the Events of phase changes and rollout steps "
             "(kopf.event in llm_operator.handlers._tick) and of warning logs"),
        Verb("list", "llm_operator.tick", "reads the namespace's Warning Events while a pod is "
             "missing or not Ready: FailedMount, Multi-Attach, FailedCreate become conditions "
             "(kube.list_objects, fieldSelector type=Warning)"),
    )),
    Grant("", "persistentvolumeclaims", Scope.NAMESPACED, (
        Verb("get", "llm_operator.tick", "reads a claim that pods on two nodes mount, to report "
             "a ReadWriteOnce claim they cannot share (kube.get)"),
    )),
    _peering("clusterkopfpeerings", Scope.CLUSTER, Mode.CLUSTERWIDE),
    _peering("kopfpeerings", Scope.NAMESPACED, Mode.NAMESPACED),
    Grant("apiextensions.k8s.io", "customresourcedefinitions", Scope.CLUSTER, (
        Verb("list", "kopf", "scans the CRDs at start to find the resources it serves"),
        Verb("watch", "kopf", "notices CRDs that appear or change while it runs"),
    )),
    Grant("", "namespaces", Scope.CLUSTER, (
        Verb("list", "kopf", "matches the watched namespaces (it does not list them when it "
             "watches every namespace)"),
        Verb("watch", "kopf", "notices watched namespaces that appear or go"),
    ), Mode.NAMESPACED),
)  # fmt: skip

NOT_GRANTED: tuple[NotGranted, ...] = (
    NotGranted("kopf.dev", "clusterkopfpeerings, kopfpeerings", ("create",),
               "llm_operator.main creates the peering object at start when it is missing "
               "(kube.ensure_peering); the chart creates it (templates/peering.yaml), so under "
               "the chart that call is never made"),
    NotGranted("", "secrets", ("get",),
               "the operator reads no Secret: the runtime pods mount theirs through the kubelet, "
               "and smoke prompts against a runtime with TLS or a token are refused at apply "
               "(they would need the Secret's roots or token)"),
    NotGranted("", "serviceaccounts", ("delete",), _GC),
    NotGranted("policy", "poddisruptionbudgets", ("delete",), _GC),
    NotGranted(GROUP, PLURAL, ("delete",), "the operator never deletes an LLMDeployment; its "
               "owner does, and the garbage collector then removes the children"),
    NotGranted("", "nodes, leases", ("*",), "nothing in the operator uses them"),
)  # fmt: skip


def _granted(grant: Grant, *, clusterwide: bool) -> bool:
    if grant.mode is Mode.CLUSTERWIDE:
        return clusterwide
    if grant.mode is Mode.NAMESPACED:
        return not clusterwide
    return True


def permissions(*, clusterwide: bool) -> tuple[frozenset[Permission], frozenset[Permission]]:
    """(the ClusterRole's permissions, each watched namespace's Role's permissions) for an
    install that watches every namespace (`clusterwide`) or a list of them."""
    cluster: set[Permission] = set()
    namespaced: set[Permission] = set()
    for grant in RULES:
        if not _granted(grant, clusterwide=clusterwide):
            continue
        into = cluster if clusterwide or grant.scope is Scope.CLUSTER else namespaced
        into.update(
            Permission(grant.api_group, grant.resource, v.name, v.own_object) for v in grant.verbs
        )
    return frozenset(cluster), frozenset(namespaced)
