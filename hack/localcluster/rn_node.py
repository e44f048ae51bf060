"""The real node's processes: containerd and the kubelet, up, down and cleanup.

`up` is idempotent and needs the control plane running. `down` takes the kubelet down first, then
removes every pod sandbox through containerd (so CNI releases addresses and containerd removes
network namespaces and snapshots), stops containerd and the shims it left, and then sweeps what a
killed run could leave: mounts under our folders (pod netns included), our cgroups, host-local's
leases.
Configuration is in `rn_config` (pure); this module only runs things.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from localcluster import cp_api, cp_kubeconfig, cp_layout, cp_pki, cp_procs
from localcluster import rn_config as cfg
from localcluster.cp_layout import Layout
from localcluster.rn_config import RealLayout

NODE_BUILD_SCRIPT = cp_layout.HACK_DIR / "nodetools" / "build.sh"
CONTAINERD = "realnode-containerd"
KUBELET = "realnode-kubelet"
CGROUP_FS = Path("/sys/fs/cgroup")
CLIENT = cp_pki.ClientCert("real-node", f"system:node:{cfg.NODE_NAME}", ("system:nodes",))


class RealNodeError(Exception):
    """A step of the real node failed; the message names the step and its log."""


def node_bindir() -> Path:
    """The node tools' folder, as `hack/nodetools/build.sh --print-bindir` names it."""
    out = subprocess.run(
        ["bash", str(NODE_BUILD_SCRIPT), "--print-bindir"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def real_layout(layout: Layout) -> RealLayout:
    cache = Path(os.environ.get("LLMOP_CACHE", Path.home() / ".cache" / "llm-operator"))
    return RealLayout(root=layout.root / "realnode", cache=cache)


def _env(bindir: Path) -> dict[str, str]:
    """containerd finds its shim and the CNI plugins on PATH; runc is Debian's."""
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env.pop("KUBECONFIG", None)
    return env


def ctr(rl: RealLayout, bindir: Path, *args: str, timeout: float = 600) -> str:
    """Run `ctr` against our containerd in the CRI namespace; raise with its stderr."""
    argv = [str(bindir / "ctr"), "--address", str(rl.socket), "-n", cfg.K8S_NAMESPACE, *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RealNodeError(f"ctr {' '.join(args)}: {done.stderr.strip()[-1500:]}")
    return done.stdout


def crictl(rl: RealLayout, bindir: Path, *args: str, timeout: float = 120) -> str:
    argv = [str(bindir / "crictl"), "--runtime-endpoint", f"unix://{rl.socket}", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RealNodeError(f"crictl {' '.join(args)}: {done.stderr.strip()[-1500:]}")
    return done.stdout


def write_configs(layout: Layout, rl: RealLayout, *, bindir: Path) -> None:
    for folder in (rl.root, rl.logs, rl.cni_conf_dir, rl.cni_ipam_dir, rl.kubelet_dir):
        folder.mkdir(parents=True, exist_ok=True)
    rl.containerd_config.write_text(cfg.containerd_toml(rl, cni_bin=bindir / "cni"))
    (rl.cni_conf_dir / "10-llmop-real.conflist").write_text(cfg.to_json(cfg.cni_conflist(rl)))
    rl.kubelet_config.write_text(
        cfg.to_json(cfg.kubelet_config(rl, client_ca=layout.pki / "ca.crt"))
    )
    cp_pki.ensure_client(layout.pki, CLIENT)
    kubeconfig = cp_kubeconfig.build(
        name=cp_layout.CONTEXT,
        server=cp_layout.APISERVER_URL,
        ca=layout.pki / "ca.crt",
        cert=layout.pki / f"{CLIENT.stem}.crt",
        key=layout.pki / f"{CLIENT.stem}.key",
        user=f"{cp_layout.CONTEXT}-{cfg.NODE_NAME}",
    )
    cp_kubeconfig.write(rl.kubeconfig, kubeconfig)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def ensure_node_address() -> None:
    """198.18.0.2/32 on the bridge: where the kubelet serves logs, exec and port-forward."""
    if f"inet {cfg.NODE_IP}/32" not in _ip("-4", "addr", "show", "dev", cfg.BRIDGE).stdout:
        done = _ip("addr", "add", f"{cfg.NODE_IP}/32", "dev", cfg.BRIDGE)
        if done.returncode != 0 and "File exists" not in done.stderr:
            raise RealNodeError(f"cannot add {cfg.NODE_IP} to {cfg.BRIDGE}: {done.stderr.strip()}")


def wait_for(
    predicate: Callable[[], bool], *, what: str, timeout: float, pidfile: Path, log: Path
) -> None:
    """Poll `predicate()` until true; fail fast, naming the log, if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if cp_procs.running(pidfile) is None:
            raise RealNodeError(f"{what}: the process exited; see {log}")
        time.sleep(0.3)
    raise RealNodeError(f"{what}: not ready after {timeout:.0f}s; see {log}")


def start_containerd(layout: Layout, rl: RealLayout, *, bindir: Path) -> None:
    pidfile, log = layout.pidfile(CONTAINERD), rl.logs / "containerd.log"
    if cp_procs.running(pidfile) is None:
        rl.containerd_root.mkdir(parents=True, exist_ok=True)
        cp_procs.start(
            cfg.containerd_argv(rl, bindir=bindir), pidfile=pidfile, log=log, env=_env(bindir)
        )

    def answers() -> bool:
        try:
            ctr(rl, bindir, "version", timeout=10)
        except (RealNodeError, subprocess.TimeoutExpired):
            return False
        return True

    wait_for(answers, what="containerd", timeout=60, pidfile=pidfile, log=log)


def start_kubelet(layout: Layout, rl: RealLayout, *, bindir: Path, timeout: float) -> None:
    pidfile, log = layout.pidfile(KUBELET), rl.logs / "kubelet.log"
    if cp_procs.running(pidfile) is None:
        cp_procs.start(
            cfg.kubelet_argv(rl, bindir=bindir), pidfile=pidfile, log=log, env=_env(bindir)
        )
    client = cp_api.Client.from_layout(layout)

    def ready() -> bool:
        # The kubelet's own health first: a Node object left Ready by the previous kubelet
        # says nothing about this one.
        return healthy() and cfg.NODE_NAME in cp_api.ready_nodes(client)

    wait_for(ready, what=f"Node {cfg.NODE_NAME}", timeout=timeout, pidfile=pidfile, log=log)


def healthy() -> bool:
    """The kubelet's /healthz on loopback answers ok."""
    url = f"http://127.0.0.1:{cfg.KUBELET_HEALTHZ_PORT}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.read() == b"ok")
    except OSError:
        return False


def images(rl: RealLayout, bindir: Path) -> set[str]:
    """The image references containerd holds in the CRI namespace."""
    return set(ctr(rl, bindir, "images", "ls", "-q").split())


def import_archive(
    rl: RealLayout, bindir: Path, archive: Path, *, ref: str, stamp: Path | None = None
) -> bool:
    """Import an image archive whose image is named `ref`, the name the kubelet asks for
    (`llm-operator/runtime:0.1.0` is `docker.io/llm-operator/runtime:0.1.0`). `stamp` (a file beside containerd's kept store) records which archive was
    imported last, so a rebuilt image under the same tag replaces the old one, while an unchanged
    one is not imported again. Returns False when nothing was imported.
    """
    held = images(rl, bindir)
    current = stamp is None or (stamp.is_file() and stamp.read_text() == archive.name)
    if ref in held and current:
        return False
    ctr(rl, bindir, "images", "import", "--snapshotter", "overlayfs", str(archive))
    if stamp is not None:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(archive.name)
    return True


def load_project_images(layout: Layout) -> list[str]:
    """Build (or reuse) the project's images and import them: what `kind load docker-image` does.

    Returns one line per image: its Kubernetes name and whether it was imported or already there.
    """
    from imagebuild import engine, recipe  # the image tooling, only when images are wanted

    rl, bindir = real_layout(layout), node_bindir()
    lines = []
    for built, archive in engine.export():
        began = time.monotonic()
        # The archive already names the image as Kubernetes resolves it (recipe.kubernetes_name).
        ref = recipe.kubernetes_name(built.ref)
        stamp = rl.containerd_root / "llmop-imported" / built.image.name
        imported = import_archive(rl, bindir, archive, ref=ref, stamp=stamp)
        took = time.monotonic() - began
        lines.append(f"{ref} " + (f"imported in {took:.0f}s" if imported else "already there"))
    return lines


def up(layout: Layout, *, timeout: float = 120.0) -> float:
    """Start containerd and the kubelet (idempotent); returns the seconds it took."""
    began = time.monotonic()
    bindir = node_bindir()
    missing = [b for b in ("kubelet", "containerd", "ctr", "crictl") if not (bindir / b).exists()]
    if missing:
        raise RealNodeError(
            f"node tools missing in {bindir}: {missing}; run bash {NODE_BUILD_SCRIPT}"
        )
    rl = real_layout(layout)
    write_configs(layout, rl, bindir=bindir)
    ensure_node_address()
    ensure_cgroups()
    start_containerd(layout, rl, bindir=bindir)
    # The sandbox image first: the kubelet cannot start a pod without it, and cannot pull it.
    import_archive(rl, bindir, bindir / "pause.oci.tar", ref=cfg.SANDBOX_IMAGE)
    start_kubelet(layout, rl, bindir=bindir, timeout=timeout)
    return time.monotonic() - began


def _mountpoints() -> list[str]:
    """Every mount point, from /proc/self/mountinfo (field 5, octal escapes decoded)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        field = line.split()[4]
        points.append(field.encode().decode("unicode_escape"))
    return points


def under(points: Iterable[str], prefixes: Iterable[Path]) -> list[str]:
    """Pure: the mount points inside any prefix, deepest first (so children go before parents)."""
    roots = [str(p).rstrip("/") for p in prefixes]
    inside = {p for p in points if any(p == r or p.startswith(r + "/") for r in roots)}
    return sorted(inside, key=lambda p: (-p.count("/"), p))


def unmount_under(prefixes: Iterable[Path]) -> list[str]:
    """Lazily unmount whatever is mounted inside our folders; returns what was unmounted."""
    gone = []
    for point in under(_mountpoints(), prefixes):
        if (
            subprocess.run(["umount", "-l", point], capture_output=True, check=False).returncode
            == 0
        ):
            gone.append(point)
    return gone


def ensure_cgroups(root: str = cfg.CGROUP_ROOT) -> None:
    """Create our cgroup parent in every v1 controller: the kubelet requires `cgroupRoot` to exist.

    A new cpuset cgroup starts with no CPUs and no memory nodes (nothing could run in it), so
    it gets its parent's.
    """
    for controller in _controllers():
        top = controller / root.strip("/")
        top.mkdir(exist_ok=True)
        if controller.name == "cpuset":
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not (top / name).read_text().strip():
                    (top / name).write_text((controller / name).read_text())


def _controllers(*, unified: bool = False) -> list[Path]:
    """The v1 hierarchies; with `unified`, also the hybrid layout's cgroup2 mount, where the
    kubelet makes a folder too (no controllers there, but it must go as well)."""
    if not CGROUP_FS.exists():
        return []
    return [
        p
        for p in CGROUP_FS.iterdir()
        if p.is_dir() and not p.is_symlink() and (unified or p.name != "unified")
    ]


def remove_cgroups(root: str = cfg.CGROUP_ROOT) -> None:
    """rmdir our cgroup tree in every hierarchy, leaves first (processes must be gone)."""
    for controller in _controllers(unified=True):
        top = controller / root.strip("/")
        if not top.is_dir():
            continue
        folders = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for folder in [*folders, top]:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _kill_shims(rl: RealLayout) -> None:
    """Shims outlive containerd by design; ours name our socket on their command line."""
    marker = str(rl.socket).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and marker in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def down(layout: Layout) -> list[str]:
    """Stop the kubelet and containerd, remove every pod and what they left; returns what ran."""
    rl = real_layout(layout)
    stopped = [KUBELET] if cp_procs.stop(layout.pidfile(KUBELET), timeout=30.0) else []
    if cp_procs.running(layout.pidfile(CONTAINERD)) is not None:
        bindir = node_bindir()
        with contextlib.suppress(RealNodeError, subprocess.TimeoutExpired):
            # Stop and remove every sandbox: CNI DEL frees the address and the veth, and
            # containerd unmounts the container snapshots and removes the network namespace.
            crictl(rl, bindir, "rmp", "--all", "--force", timeout=180)
        with contextlib.suppress(RealNodeError, subprocess.TimeoutExpired):
            for container in ctr(rl, bindir, "containers", "ls", "-q").split():
                ctr(rl, bindir, "tasks", "kill", "-s", "SIGKILL", container, timeout=30)
        with contextlib.suppress(RealNodeError, subprocess.TimeoutExpired):
            for container in ctr(rl, bindir, "containers", "ls", "-q").split():
                ctr(rl, bindir, "containers", "rm", container, timeout=60)
    if cp_procs.stop(layout.pidfile(CONTAINERD), timeout=30.0):
        stopped.append(CONTAINERD)
    _kill_shims(rl)
    # Pod network namespaces live under the state folder (netns_mounts_under_state_dir), so
    # this never touches another engine's (podman's) namespaces in /run/netns.
    unmount_under([rl.root, rl.state, rl.containerd_root])
    remove_cgroups()
    _ip("addr", "del", f"{cfg.NODE_IP}/32", "dev", cfg.BRIDGE)
    shutil.rmtree(rl.root, ignore_errors=True)
    shutil.rmtree(rl.state, ignore_errors=True)
    return stopped
