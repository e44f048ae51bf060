"""The control plane as local processes: etcd, kube-apiserver, kube-controller-manager, scheduler.

The command lines are pure functions of the layout and the tools folder, so what runs is readable
and testable without starting anything. `start()` is idempotent: a component whose pid file names
a live process is left alone, so `up` twice only verifies. `stop()` takes them down in reverse
order and removes etcd's data, so the next `start()` begins with an empty cluster.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from localcluster import audit, cp_api, cp_kubeconfig, cp_layout, cp_net, cp_pki, cp_procs
from localcluster.cp_layout import Layout

Argv = list[str]
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
# Every on-by-default controller. The cloud loops (service-lb, node-route, cloud-node-lifecycle)
# left kube-controller-manager for the cloud-controller-manager, so `*` needs no exclusions on
# v1.37, and naming a controller it does not know is a startup error.
CONTROLLERS = "*"


def etcd_argv(layout: Layout, bindir: Path) -> Argv:
    """Single-member etcd on loopback; data under the state folder."""
    client = f"http://127.0.0.1:{cp_layout.ETCD_CLIENT_PORT}"
    peer = f"http://127.0.0.1:{cp_layout.ETCD_PEER_PORT}"
    return [
        str(bindir / "etcd"),
        "--name=llmop",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=llmop={peer}",
        "--initial-cluster-state=new",
        "--log-level=warn",
        # Small machine: keep etcd's memory and disk use modest.
        "--quota-backend-bytes=2147483648",
        "--snapshot-count=10000",
    ]


def apiserver_argv(layout: Layout, bindir: Path) -> Argv:
    """kube-apiserver: secure on every address, Node+RBAC, advertising the bridge address."""
    pki = layout.pki
    return [
        str(bindir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{cp_layout.ETCD_CLIENT_PORT}",
        "--bind-address=0.0.0.0",
        f"--secure-port={cp_layout.APISERVER_PORT}",
        f"--advertise-address={cp_layout.ADVERTISE_ADDRESS}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=Node,RBAC",
        # On top of the default plugins: a node may only touch its own Node and pods.
        "--enable-admission-plugins=NodeRestriction",
        f"--service-cluster-ip-range={cp_layout.SERVICE_CIDR}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
        # Who sent which request: the scale benchmark attributes API load to one operator.
        *audit.apiserver_flags(policy_file=layout.audit_policy, log_file=layout.audit_log),
    ]


def write_audit_policy(layout: Layout) -> None:
    """The policy file the apiserver reads at start (rewritten, so a changed policy applies)."""
    layout.audit_policy.write_text(audit.policy_text())


def _component_common(layout: Layout, name: str, port: int) -> Argv:
    kubeconfig = layout.component_kubeconfig(name)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        # One replica: leader election would only delay a restart by a lease duration.
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_argv(layout: Layout, bindir: Path) -> Argv:
    """kube-controller-manager with per-controller service-account identities, no cloud loops."""
    pki = layout.pki
    return [
        str(bindir / "kube-controller-manager"),
        *_component_common(layout, "controller-manager", cp_layout.CONTROLLER_MANAGER_PORT),
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        "--use-service-account-credentials=true",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--controllers={CONTROLLERS}",
        f"--service-cluster-ip-range={cp_layout.SERVICE_CIDR}",
        "--allocate-node-cidrs=false",
    ]


def scheduler_argv(layout: Layout, bindir: Path) -> Argv:
    return [
        str(bindir / "kube-scheduler"),
        *_component_common(layout, "scheduler", cp_layout.SCHEDULER_PORT),
    ]


ARGV_BUILDERS: dict[str, Callable[[Layout, Path], Argv]] = {
    "etcd": etcd_argv,
    "kube-apiserver": apiserver_argv,
    "kube-controller-manager": controller_manager_argv,
    "kube-scheduler": scheduler_argv,
}


def write_kubeconfigs(layout: Layout) -> None:
    """Admin, node and component kubeconfigs, all pointing at the loopback apiserver."""
    pki = layout.pki

    def kc(stem: str, user: str) -> cp_kubeconfig.Config:
        return cp_kubeconfig.build(
            name=cp_layout.CONTEXT,
            server=cp_layout.APISERVER_URL,
            ca=pki / "ca.crt",
            cert=pki / f"{stem}.crt",
            key=pki / f"{stem}.key",
            user=user,
        )

    cp_kubeconfig.write(layout.kubeconfig, kc("admin", f"{cp_layout.CONTEXT}-admin"))
    cp_kubeconfig.write(layout.node_kubeconfig, kc("node", f"{cp_layout.CONTEXT}-node"))
    for name in ("controller-manager", "scheduler"):
        cp_kubeconfig.write(layout.component_kubeconfig(name), kc(name, name))


def install_default_kubeconfig(layout: Layout, *, target: Path | None = None) -> Path:
    """Merge the admin context into `~/.kube/config` (or `target`) and make it current."""
    path = target or cp_kubeconfig.default_target()
    cp_kubeconfig.install_default(cp_kubeconfig.read(layout.kubeconfig), target=path)
    return path


class StartError(Exception):
    """A component died or did not become ready; the message points at its log."""


def _start_component(layout: Layout, name: str, bindir: Path) -> None:
    if cp_procs.running(layout.pidfile(name)) is not None:
        return
    # A fresh log per start keeps "why did it die" at the bottom of a short file.
    layout.log(name).unlink(missing_ok=True)
    cp_procs.start(
        ARGV_BUILDERS[name](layout, bindir), pidfile=layout.pidfile(name), log=layout.log(name)
    )


def _wait(
    layout: Layout,
    what: str,
    check: Callable[[], bool],
    *,
    owners: tuple[str, ...],
    timeout: float,
) -> None:
    """Poll `check` until true; fail early, naming the log, if one of `owners` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for owner in owners:
            if cp_procs.running(layout.pidfile(owner)) is None:
                log = layout.log(owner)
                raise StartError(f"{owner} exited while waiting for {what}; see {log}")
        time.sleep(0.2)
    logs = ", ".join(str(layout.log(o)) for o in owners)
    raise StartError(f"timed out after {timeout:.0f}s waiting for {what}; see {logs}")


def start(layout: Layout, *, bindir: Path, timeout: float = 90.0) -> None:
    """Bring the control plane up (or verify it is up) and install the admin kubeconfig.

    Returns once the apiserver is ready; `wait_controllers` then confirms the controller-manager
    works, so a caller can start the node agent in between and overlap the two waits.
    """
    missing = [n for n in COMPONENTS if not (bindir / n).exists()]
    if missing:
        raise StartError(f"missing {missing} in {bindir}: run `bash hack/tools/build.sh`")
    layout.make_dirs()
    cp_pki.ensure_pki(layout.pki, node_name=cp_layout.NODE_NAME)
    write_kubeconfigs(layout)
    write_audit_policy(layout)
    cp_net.ensure_bridge()
    api = cp_api.Client.from_layout(layout)
    _start_component(layout, "etcd", bindir)
    _start_component(layout, "kube-apiserver", bindir)
    _wait(
        layout,
        "the apiserver's /readyz",
        api.ready,
        owners=("etcd", "kube-apiserver"),
        timeout=timeout,
    )
    # The controller-manager and scheduler give up if the apiserver is not healthy within
    # seconds of their start, so they start only now.
    _start_component(layout, "kube-controller-manager", bindir)
    _start_component(layout, "kube-scheduler", bindir)
    cp_api.apply_node_rbac(api, node_name=cp_layout.NODE_NAME)
    install_default_kubeconfig(layout)


def wait_controllers(layout: Layout, *, timeout: float = 90.0) -> None:
    """Wait until the service-account controller created `default/default`.

    That proves the controller-manager works, and pods cannot be admitted into a namespace
    before its `default` ServiceAccount exists.
    """
    api = cp_api.Client.from_layout(layout)
    _wait(
        layout,
        "the default ServiceAccount",
        lambda: api.exists("/api/v1/namespaces/default/serviceaccounts/default"),
        owners=("kube-controller-manager",),
        timeout=timeout,
    )
    if cp_procs.running(layout.pidfile("kube-scheduler")) is None:
        raise StartError(f"kube-scheduler is not running; see {layout.log('kube-scheduler')}")


def status(layout: Layout) -> dict[str, bool]:
    """Which components run (by pid file and process identity)."""
    return {n: cp_procs.running(layout.pidfile(n)) is not None for n in COMPONENTS}


def stop(layout: Layout) -> list[str]:
    """Stop the components in reverse order, wipe etcd's data, delete the bridge.

    Returns the names that were running. PKI and kubeconfigs stay, so copies keep working.
    """
    stopped = [n for n in reversed(COMPONENTS) if cp_procs.stop(layout.pidfile(n))]
    shutil.rmtree(layout.etcd_data, ignore_errors=True)
    cp_net.delete_bridge()
    return stopped
