"""The RBAC table grants exactly what the code calls: no unused grant, no missing one.

The operator's calls are read from its source (AST), never listed by hand: every `kube.<fn>(...)`
call with the kind it names, every object a `kube.apply` caller can build (a dict literal with
apiVersion, kind and metadata in a module it imports), the ownerReferences that block deletion,
and kopf's own needs from how kopf is used (handlers on a resource, `kopf.event`, `kopf.run` with
peering and namespaces). `llm_operator.rbac.RULES` must equal that set, except what
`rbac.NOT_GRANTED` deliberately leaves out; each verb's named caller must be one that makes it.

A new call (a Secret read, a list of Events) fails here until its grant is added to rbac.py
(then `make docs`, and the chart's templates/_helpers.tpl, which the chart tests compare).
"""

from __future__ import annotations

import ast
import functools
import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from llm_operator import GROUP, PLURAL, kube, rbac

pytestmark = pytest.mark.unit

PACKAGE = Path(kube.__file__).resolve().parent
# Run with the user's own kubeconfig (kubectl), not the operator's ServiceAccount.
NOT_THE_OPERATOR = {"kubectl_plugin"}
# kube's names that make no API call.
NO_CALL = {"load_config", "path_for", "resource_of", "ApiError"}
# kube's functions that name the kind they touch: the verb each needs on it.
BY_KIND = {"get": "get", "list_objects": "list", "scale": "patch", "delete": "delete"}
# kube's functions that take a whole object: the verbs each needs on every object its caller can
# build (server-side apply of an absent object is authorized as create).
BY_OBJECT = {"apply": ("create", "patch"), "current": ("get",)}
KOPF = "kopf"
API_SERVER = "the API server"

Needs = dict[rbac.Permission, set[str]]


class UnresolvedError(Exception):
    """An argument the scan cannot evaluate statically (say, a kind computed at run time)."""


def _resolve(node: ast.expr, scope: Mapping[str, ast.expr], module: Mapping[str, Any]) -> Any:
    """The value of a constant-ish expression: literals, f-strings, tuples, names assigned in the
    enclosing function, and the module's globals (imported constants like GROUP)."""
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name) if name in scope:
            return _resolve(scope[name], {k: v for k, v in scope.items() if k != name}, module)
        case ast.Name(id=name) if name in module:
            return module[name]
        case ast.Attribute(value=value, attr=attr):
            return getattr(_resolve(value, scope, module), attr)
        case ast.Tuple(elts=elts) | ast.List(elts=elts):
            out: list[Any] = []
            for e in elts:
                value = _resolve(e.value if isinstance(e, ast.Starred) else e, scope, module)
                out += value if isinstance(e, ast.Starred) else [value]
            return tuple(out)
        case ast.JoinedStr(values=values):
            return "".join(str(_resolve(v, scope, module)) for v in values)
        case ast.FormattedValue(value=value):
            return _resolve(value, scope, module)
    raise UnresolvedError(ast.unparse(node))


def _dotted(node: ast.expr) -> str:
    """`kopf.on.create` for the attribute chain of a call's function, else ""."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


def _scopes(tree: ast.Module) -> Iterator[tuple[ast.AST, dict[str, ast.expr]]]:
    """Each top-level statement with the names its function assigns (`resource = (...)`)."""
    for stmt in tree.body:
        scope: dict[str, ast.expr] = {}
        for node in ast.walk(stmt):
            if isinstance(node, ast.Assign) and isinstance(node.targets[-1], ast.Name):
                scope[node.targets[-1].id] = node.value
        yield stmt, scope


def _resource(api_version: str, kind: str) -> tuple[str, str]:
    """(apiGroup, plural) of a kind the operator touches (kube.KINDS is the door's own table)."""
    plural, _namespaced = kube.KINDS[(api_version, kind)]
    return api_version.rpartition("/")[0], plural


def _add(
    needs: Needs, group: str, resource: str, verb: str, caller: str, own: bool = False
) -> None:
    needs.setdefault(rbac.Permission(group, resource, verb, own), set()).add(caller)


def _kind_of(call: ast.Call, scope: Mapping[str, ast.expr], module: Mapping[str, Any]) -> Any:
    args = {k.arg: k.value for k in call.keywords if k.arg in {"api_version", "kind"}}
    return _resolve(args["api_version"], scope, module), _resolve(args["kind"], scope, module)


def _kube_call(
    needs: Needs, call: ast.Call, *, caller: str, scope: Mapping[str, ast.expr],
    module: Mapping[str, Any], clusterwide: bool,
) -> None:  # fmt: skip
    """The permissions one `kube.<fn>(...)` call needs (BY_OBJECT's come from the objects)."""
    fn = _dotted(call.func).removeprefix("kube.")
    if fn in BY_KIND:
        group, plural = _resource(*_kind_of(call, scope, module))
        _add(needs, group, plural, BY_KIND[fn], caller)
    elif fn == "patch_status":
        _add(needs, GROUP, f"{PLURAL}/status", "patch", caller)
    elif fn == "ensure_peering":  # reads the release's peering object, creates it if absent
        plural = "clusterkopfpeerings" if clusterwide else "kopfpeerings"
        _add(needs, "kopf.dev", plural, "get", caller, own=True)
        _add(needs, "kopf.dev", plural, "create", caller, own=True)
    elif fn not in {*BY_OBJECT, *NO_CALL}:
        raise AssertionError(f"{caller} calls kube.{fn}: teach this test what it needs")


def _kopf_call(
    needs: Needs, call: ast.Call, *, scope: Mapping[str, ast.expr],
    module: Mapping[str, Any], clusterwide: bool,
) -> None:  # fmt: skip
    """kopf's own calls: what a handler on a resource, an Event and kopf.run need."""
    name = _dotted(call.func)
    on_resource = name.startswith("kopf.on.") or name in {"kopf.timer", "kopf.daemon", "kopf.index"}
    if on_resource and call.args:
        group, _version, plural = _resolve(ast.Tuple(elts=call.args), scope, module)
        # An index or an event handler only watches; the others also patch the object
        # (progress, diff base, finalizers).
        watch_only = name in {"kopf.index", "kopf.on.event"}
        for verb in ("list", "watch") if watch_only else ("list", "watch", "patch"):
            _add(needs, group, plural, verb, KOPF)
        _add(needs, "", "events", "create", KOPF)  # handler log lines at the posting level
    elif name == "kopf.event":
        _add(needs, "", "events", "create", KOPF)
    elif name == "kopf.run":
        args = {k.arg for k in call.keywords}
        for verb in ("list", "watch"):  # scans CRDs to find what it serves
            _add(needs, "apiextensions.k8s.io", "customresourcedefinitions", verb, KOPF)
        if "namespaces" in args and not clusterwide:  # matches the watched namespaces
            for verb in ("list", "watch"):
                _add(needs, "", "namespaces", verb, KOPF)
        if "peering_name" in args:  # heartbeats: watches its peers, patches its own entry
            plural = "clusterkopfpeerings" if clusterwide else "kopfpeerings"
            _add(needs, "kopf.dev", plural, "list", KOPF)
            _add(needs, "kopf.dev", plural, "watch", KOPF)
            _add(needs, "kopf.dev", plural, "patch", KOPF, own=True)


def _built_objects(
    needs: Needs, node: ast.Dict, *, verbs: tuple[str, ...], callers: set[str], resolve: Any
) -> None:
    """An object literal that callers of a BY_OBJECT function may pass it (its verbs), or an
    ownerReference that blocks the owner's deletion (update on the owner's finalizers)."""
    keys = {
        k.value: v
        for k, v in zip(node.keys, node.values, strict=True)
        if isinstance(k, ast.Constant)
    }
    if {"apiVersion", "kind", "metadata"} <= keys.keys():
        group, plural = _resource(resolve(keys["apiVersion"]), resolve(keys["kind"]))
        for caller in callers:
            for verb in verbs:
                _add(needs, group, plural, verb, caller)
    if "kind" in keys and "blockOwnerDeletion" in keys and resolve(keys["blockOwnerDeletion"]):
        group, plural = _resource(resolve(keys["apiVersion"]), resolve(keys["kind"]))
        _add(needs, group, f"{plural}/finalizers", "update", API_SERVER)


def _imports(tree: ast.Module) -> set[str]:
    """The operator's own modules a module imports (`from llm_operator import x` and friends)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llm_operator"):
            base = (node.module or "").removeprefix("llm_operator").lstrip(".")
            out |= {f"{base}.{a.name}".lstrip(".") for a in node.names} | {base}
    return out


def _closure(trees: Mapping[str, ast.Module], roots: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in trees:
            continue
        seen.add(name)
        todo += _imports(trees[name])
    return seen


def needs_of(
    trees: Mapping[str, ast.Module], modules: Mapping[str, Mapping[str, Any]], *, clusterwide: bool
) -> Needs:
    """Every permission the given modules' code needs, with who needs it."""
    needs: Needs = {}
    takers: dict[str, set[str]] = {fn: set() for fn in BY_OBJECT}
    for name, tree in trees.items():
        for stmt, scope in _scopes(tree):
            for call in (n for n in ast.walk(stmt) if isinstance(n, ast.Call)):
                func = _dotted(call.func)
                if func.startswith("kube."):
                    takers.get(func.removeprefix("kube."), set()).add(name)
                    _kube_call(
                        needs, call, caller=f"llm_operator.{name}", scope=scope,
                        module=modules[name], clusterwide=clusterwide,
                    )  # fmt: skip
                elif func.startswith("kopf."):
                    _kopf_call(
                        needs, call, scope=scope, module=modules[name], clusterwide=clusterwide
                    )
    for fn, callers in takers.items():
        _objects_needs(needs, trees, modules, verbs=BY_OBJECT[fn], callers=callers)
    return needs


def _objects_needs(
    needs: Needs, trees: Mapping[str, ast.Module], modules: Mapping[str, Mapping[str, Any]], *,
    verbs: tuple[str, ...], callers: set[str],
) -> None:  # fmt: skip
    """`verbs` on every object literal in the modules the callers import (themselves included)."""
    named = {f"llm_operator.{c}" for c in callers}
    for name in _closure(trees, callers):
        for stmt, scope in _scopes(trees[name]):
            resolve = functools.partial(_resolve, scope=scope, module=modules[name])
            for node in (n for n in ast.walk(stmt) if isinstance(n, ast.Dict)):
                _built_objects(needs, node, verbs=verbs, callers=named, resolve=resolve)


def _operator_modules() -> dict[str, Path]:
    """The operator's modules by dotted name under the package, the door itself excluded (its
    functions are what the scan looks for)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if name not in {"kube", "__init__"} | NOT_THE_OPERATOR:
            out[name] = path
    return out


@functools.cache
def operator_needs(*, clusterwide: bool) -> Needs:
    paths = _operator_modules()
    trees = {name: ast.parse(path.read_text()) for name, path in paths.items()}
    modules = {name: vars(importlib.import_module(f"llm_operator.{name}")) for name in paths}
    return needs_of(trees, modules, clusterwide=clusterwide)


def _not_granted() -> set[tuple[str, str, str]]:
    return {
        (ng.api_group, resource, verb)
        for ng in rbac.NOT_GRANTED
        for resource in ng.resource.split(", ")
        for verb in ng.verbs
    }


def _granted(*, clusterwide: bool) -> frozenset[rbac.Permission]:
    cluster, namespaced = rbac.permissions(clusterwide=clusterwide)
    return cluster | namespaced


def _callers(*, clusterwide: bool) -> dict[rbac.Permission, str]:
    granted = _granted(clusterwide=clusterwide)
    return {
        p: v.caller
        for g in rbac.RULES
        for v in g.verbs
        if (p := rbac.Permission(g.api_group, g.resource, v.name, v.own_object)) in granted
    }


def test_every_kube_function_that_calls_the_api_is_known_to_the_scan() -> None:
    tree = ast.parse(Path(kube.__file__).read_text())
    public = {
        n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")
    }
    assert public - NO_CALL == {*BY_KIND, *BY_OBJECT, "patch_status", "ensure_peering"}


@pytest.mark.parametrize("clusterwide", [True, False])
def test_no_call_lacks_its_grant(clusterwide: bool) -> None:
    needs = operator_needs(clusterwide=clusterwide)
    granted, refused = _granted(clusterwide=clusterwide), _not_granted()
    missing = {p: who for p, who in needs.items() if p not in granted and p[:3] not in refused}
    assert not missing, f"add these to llm_operator/rbac.py (or NOT_GRANTED): {missing}"


@pytest.mark.parametrize("clusterwide", [True, False])
def test_no_grant_goes_unused(clusterwide: bool) -> None:
    unused = _granted(clusterwide=clusterwide) - operator_needs(clusterwide=clusterwide).keys()
    assert not unused, f"no code needs these; remove them from llm_operator/rbac.py: {unused}"


@pytest.mark.parametrize("clusterwide", [True, False])
def test_each_grant_names_a_caller_that_makes_the_call(clusterwide: bool) -> None:
    needs = operator_needs(clusterwide=clusterwide)
    for permission, caller in _callers(clusterwide=clusterwide).items():
        assert caller in needs.get(permission, set()), (permission, caller, needs.get(permission))


@pytest.mark.parametrize("clusterwide", [True, False])
def test_nothing_refused_on_purpose_is_granted(clusterwide: bool) -> None:
    granted = {p[:3] for p in _granted(clusterwide=clusterwide)}
    assert not granted & _not_granted()


def _scan(source: str, **module: Any) -> Needs:
    return needs_of({"planted": ast.parse(source)}, {"planted": module}, clusterwide=True)


def test_the_scan_sees_a_secret_read_with_its_kind_from_a_local_name() -> None:
    source = "def f(ns):\n    k = 'Secret'\n    kube.get(api_version='v1', kind=k, namespace=ns, name='x')\n"
    assert _scan(source, kube=kube) == {
        rbac.Permission("", "secrets", "get", False): {"llm_operator.planted"}
    }


def test_the_scan_sees_what_an_applier_builds_and_whose_deletion_it_blocks() -> None:
    source = (
        "def build():\n"
        "    ref = {'apiVersion': f'{G}/v1alpha1', 'kind': K, 'blockOwnerDeletion': True}\n"
        "    return {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'x': [ref]}}\n"
        "def run():\n"
        "    kube.apply(build())\n"
    )
    needs = _scan(source, kube=kube, G=GROUP, K="LLMDeployment")
    assert set(needs) == {
        rbac.Permission("", "configmaps", "create", False),
        rbac.Permission("", "configmaps", "patch", False),
        rbac.Permission(GROUP, f"{PLURAL}/finalizers", "update", False),
    }


def test_the_scan_refuses_a_kind_it_cannot_evaluate() -> None:
    source = "def f(kind):\n    kube.list_objects(api_version='v1', kind=kind, namespace='n')\n"
    with pytest.raises(UnresolvedError):
        _scan(source, kube=kube)


def test_a_module_imported_by_the_scan_is_a_real_one() -> None:
    modules = _operator_modules()
    assert {"handlers", "tick", "builders", "routing", "main"} <= modules.keys()
    assert all(
        isinstance(importlib.import_module(f"llm_operator.{m}"), ModuleType) for m in modules
    )
