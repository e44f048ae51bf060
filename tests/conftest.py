"""Fixtures shared by every test level.

`cluster` (session): the local cluster, started on first use only (unit tests never start it),
left running if it was already up, taken down at the end only if this session started it.
It refuses a kubeconfig that does not belong to the cluster it manages, and it puts that
kubeconfig in $KUBECONFIG and the cached tools first on $PATH for the whole session, so kubectl,
helm and the kubernetes client all talk to this cluster and nothing else.

`namespace` (function): a fresh namespace per test, deleted afterwards.

Tests marked `takes_cluster_down` run last: they stop the shared cluster.
"""

from __future__ import annotations

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
