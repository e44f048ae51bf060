"""Fixtures shared by every test level.

`cluster` (session): the local cluster, started on first use only (unit tests never start it),
left running if it was already up, taken down at the end only if this session started it.
It refuses a kubeconfig that does not belong to the cluster it manages, and it puts that
kubeconfig in $KUBECONFIG and the cached tools first on $PATH for the whole session, so kubectl,
helm and the kubernetes client all talk to this cluster and nothing else.

`namespace` (function): a fresh namespace per test, deleted afterwards.

Tests marked `takes_cluster_down` run last: they stop the shared cluster.

LLMOP_E2E_NODE=real: every pod that does not choose a node runs on the real node (kubelet,
containerd, runc) from the project's images: the session loads the images, removes the real
node's taint and cordons the process node, and undoes both at the end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from localcluster import cp_layout, cp_testing
from localcluster.cp_layout import Layout
from localcluster.cp_testing import Cluster

TAKES_CLUSTER_DOWN = "takes_cluster_down"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{TAKES_CLUSTER_DOWN}: stops the shared local cluster, so it is ordered after all others",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move tests that take the cluster down to the end (stable order otherwise)."""
    items.sort(key=lambda item: item.get_closest_marker(TAKES_CLUSTER_DOWN) is not None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The selected tests (after -m and -k), counted for the summary."""
    session.config.stash[_E2E_WHERE] = where_e2e_runs(session.items)


# e2e modules whose pods are real containers from the project's images.
REAL_CONTAINER_MODULES = {
    "test_realnode_e2e.py": "on the real node (kubelet, containerd, runc)",
    "test_images_e2e.py": "under podman with the pods' hardening",
}
_E2E_WHERE = pytest.StashKey[dict[str, int]]()


def where_e2e_runs(items: list[pytest.Item]) -> dict[str, int]:
    """How many selected e2e tests run real containers from the images (per module), and the others."""
    counts: dict[str, int] = {}
    for item in items:
        if item.get_closest_marker("e2e") is None:
            continue
        module = item.path.name
        key = module if module in REAL_CONTAINER_MODULES else "others"
        counts[key] = counts.get(key, 0) + 1
    return counts


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where the e2e tests ran: issue 13 asks the output to name what is not on real
    containers, and why."""
    counts = terminalreporter.config.stash.get(_E2E_WHERE, {})
    if not counts:
        return
    terminalreporter.section("where the e2e tests ran")
    for module, how in REAL_CONTAINER_MODULES.items():
        if counts.get(module):
            terminalreporter.write_line(
                f"{counts[module]:4d} in {module}: real containers from the images, {how}"
            )
    if counts.get("others"):
        terminalreporter.write_line(
            f"{counts['others']:4d} others: in-process, or with pods on "
            + (
                "the real node (LLMOP_E2E_NODE=real: the process node cordoned)"
                if cp_testing.e2e_node() == "real"
                else "the process node, which runs them as local processes (no cgroups: limits, "
                "OOMKilled, exec and port-forward are not real there); LLMOP_E2E_NODE=real puts "
                "them on the real node, see README.md, 'What is not done yet'"
            )
        )


@contextlib.contextmanager
def everything_on_the_real_node(handle: Cluster) -> Iterator[None]:
    """LLMOP_E2E_NODE=real: the real node up with the project's images, its taint removed and
    the process node cordoned, so every new pod lands in a real container; undone afterwards."""
    from localcluster import rn_config, rn_node

    rn_node.up(handle.layout)
    print("\n".join(rn_node.load_project_images(handle.layout)))
    handle.kubectl("taint", "node", rn_config.NODE_NAME, f"{rn_config.TAINT_KEY}-", check=False)
    handle.kubectl("cordon", cp_layout.NODE_NAME)
    try:
        yield
    finally:
        handle.kubectl("uncordon", cp_layout.NODE_NAME, check=False)
        handle.kubectl(
            "taint", "node", rn_config.NODE_NAME, rn_config.TAINT_ARG, "--overwrite", check=False
        )


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    layout = Layout(cp_layout.default_state_dir())
    started_here = not cp_testing.cluster_is_up(layout)
    if started_here:
        cp_testing.localcluster_cli("up", layout=layout)
    cp_testing.guard_kubeconfig(layout.kubeconfig, layout=layout)
    handle = Cluster(layout=layout, bin_dir=cp_layout.bin_dir(), started_here=started_here)
    saved = {k: os.environ.get(k) for k in ("KUBECONFIG", "PATH")}
    os.environ["KUBECONFIG"] = str(layout.kubeconfig)
    os.environ["PATH"] = f"{handle.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        with (
            everything_on_the_real_node(handle)
            if cp_testing.e2e_node() == "real"
            else contextlib.nullcontext()
        ):
            yield handle
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if started_here:
            cp_testing.localcluster_cli("down", layout=layout)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = cp_testing.namespace_name(request.node.name)
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        # Do not wait for finalizers: the next test gets its own namespace anyway.
        cluster.kubectl(
            "delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False
        )
