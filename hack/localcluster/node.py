"""The process node: plays kubelet and kube-proxy for one Node, `local-node`, on this machine.

    python -m localcluster.node --state-dir DIR [--kubeconfig FILE] [--gpus N] [--backoff-cap S]
    python -m localcluster.node --state-dir DIR --cleanup

It registers the Node and keeps its Lease fresh, runs every pod bound to it as local processes
(pods.py), proxies ClusterIP Services (proxy.py), serves the cluster DNS on its address for the
real node's pods (dns.py), writes each pod's /etc/hosts, provisions
hostPath PVs for claims and serves container logs on :10250. `--cleanup` (or `cleanup()`)
removes everything it ever created: processes, namespaces, veths, addresses, files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from localcluster import (
    dns,
    events,
    kubeapi,
    logs,
    mounts,
    netns,
    pods,
    procs,
    proxy,
    registration,
    services,
)

log = logging.getLogger("localcluster.node")
Obj = dict[str, Any]
CREATED_PATHS = "created-paths.json"
NODE_SUBDIR = "node"
T = TypeVar("T")


def default_cluster_dir() -> Path:
    return Path(os.environ.get("LLMOP_CLUSTER_DIR", Path.home() / ".cache/llm-operator/cluster"))


async def informer(
    api: kubeapi.Api,
    path: str,
    *,
    params: dict[str, str],
    on_list: Callable[[list[Obj]], Awaitable[None]],
    on_event: Callable[[str, Obj], Awaitable[None]],
) -> None:
    """List, then watch from the list's resourceVersion; relist after any error or expiry."""
    while True:
        try:
            listing = await api.get(path, params=params)
            await on_list(listing.get("items", []))
            version = listing["metadata"]["resourceVersion"]
            while True:
                async for event in api.watch(path, params={**params, "resourceVersion": version}):
                    obj = event["object"]
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        await on_event(event["type"], obj)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("watch %s: %s; relisting", path, exc)
            await asyncio.sleep(1)


async def until_answered(call: Callable[[], Awaitable[T]], *, every: float = 1.0) -> T:
    """Retry a call while the apiserver is unreachable or failing (it may still be starting)."""
    while True:
        try:
            return await call()
        except kubeapi.ApiError as exc:
            if exc.status not in (kubeapi.UNREACHABLE, 429) and exc.status < 500:
                raise
            log.warning("apiserver not answering yet: %s", exc)
            await asyncio.sleep(every)


class Node:
    """The running node: workers by pod UID, the Service view, the proxy."""

    def __init__(
        self,
        *,
        api: kubeapi.Api,
        cfg: registration.NodeConfig,
        state_dir: Path,
        backoff_base: float,
        backoff_cap: float,
    ) -> None:
        self.api, self.cfg, self.state_dir = api, cfg, state_dir
        self.workers: dict[str, pods.PodWorker] = {}
        self.services: dict[str, Obj] = {}
        self.slices: dict[str, Obj] = {}
        self.proxy = proxy.Proxy()
        self.dns = dns.Server()
        self.changed = asyncio.Event()
        self.background: set[asyncio.Task[None]] = set()
        self.ctx = pods.NodeContext(
            api=api,
            state_dir=state_dir,
            node_name=cfg.name,
            host_ip=cfg.host_ip,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            hosts_for=self.hosts_for,
            service_env=self.service_env,
            events=events.EventSink(api, node=cfg.name),
        )

    # ----- services -------------------------------------------------------------------------
    def hosts_for(self, namespace: str, pod_name: str, pod_ip: str) -> str:
        return services.hosts_text(
            namespace=namespace,
            pod_name=pod_name,
            pod_ip=pod_ip,
            services=self.services.values(),
            slices=self.slices.values(),
        )

    def service_env(self, namespace: str) -> dict[str, str]:
        return services.service_env(namespace, self.services.values())

    @staticmethod
    def _key(obj: Obj) -> str:
        return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"

    def _store(self, store: dict[str, Obj]) -> tuple[Callable[..., Awaitable[None]], ...]:
        async def on_list(items: list[Obj]) -> None:
            store.clear()
            store.update({self._key(o): o for o in items})
            self.changed.set()

        async def on_event(kind: str, obj: Obj) -> None:
            if kind == "DELETED":
                store.pop(self._key(obj), None)
            else:
                store[self._key(obj)] = obj
            self.changed.set()

        return on_list, on_event

    async def sync_services(self) -> None:
        """Re-apply the proxy table and DNS records, and rewrite every pod's hosts file, after
        any change."""
        while True:
            await self.changed.wait()
            self.changed.clear()
            table = services.proxy_table(self.services.values(), self.slices.values())
            await self.proxy.apply(table)
            self.dns.records = services.dns_records(self.services.values(), self.slices.values())
            for w in list(self.workers.values()):
                if w.netns and w.pod_ip:
                    with contextlib.suppress(OSError):
                        netns.write_etc(
                            w.netns, hosts=self.hosts_for(w.namespace, w.name, w.pod_ip)
                        )
            self._save_created()
            await asyncio.sleep(0.2)

    # ----- pods -----------------------------------------------------------------------------
    async def on_pod(self, kind: str, pod: Obj) -> None:
        """Never let one odd pod stop the watch (an exception here would relist forever)."""
        try:
            await self._on_pod(kind, pod)
        except Exception:
            log.exception("pod event %s for %s", kind, pod.get("metadata", {}).get("name"))

    async def _on_pod(self, kind: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                del self.workers[uid]
                await worker.stop()
            return
        if pod["metadata"].get("deletionTimestamp"):
            action = worker.terminate(pod) if worker is not None else self._force_delete(pod)
            task = asyncio.create_task(action)
            self.background.add(task)
            task.add_done_callback(self.background.discard)
            return
        if worker is None and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
            try:
                worker = pods.PodWorker(self.ctx, pod)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring malformed pod %s: %s", self._key(pod), exc)
                return
            self.workers[uid] = worker
            names = [c["name"] for c in pod["spec"].get("containers", [])]
            logs.index_entry(
                worker.dir, namespace=worker.namespace, name=worker.name, containers=names
            )
            worker.start()

    async def _force_delete(self, pod: Obj) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(kubeapi.ApiError):
            await self.api.delete(
                kubeapi.pod_path(meta["namespace"], meta["name"]),
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
            )

    async def on_pod_list(self, items: list[Obj]) -> None:
        alive = {p["metadata"]["uid"] for p in items}
        for uid in [u for u in self.workers if u not in alive]:
            await self.workers.pop(uid).stop()
        for pod in items:
            await self.on_pod("ADDED", pod)

    def locate_log(self, namespace: str, name: str, container: str, previous: bool) -> Path | None:
        pod_dir = next(
            (w.dir for w in self.workers.values() if (w.namespace, w.name) == (namespace, name)),
            None,
        ) or logs.find_pod_dir(self.state_dir, namespace=namespace, name=name)
        return logs.latest_log(pod_dir, container, previous=previous) if pod_dir else None

    def _save_created(self) -> None:
        path = self.state_dir / CREATED_PATHS
        known = json.loads(path.read_text()) if path.exists() else []
        merged = sorted(set(known) | set(self.ctx.created_paths))
        if merged != known:
            path.write_text(json.dumps(merged))

    # ----- run ------------------------------------------------------------------------------
    async def run(self) -> None:
        node_uid = await until_answered(lambda: registration.register(self.api, self.cfg))
        log_server = await logs.serve(
            self.locate_log, folder=self.state_dir, ip=self.cfg.host_ip, port=self.cfg.kubelet_port
        )
        try:
            await self.dns.start(self.cfg.host_ip)
        except OSError as exc:  # the real node's pods then resolve no Service names
            log.warning("cluster DNS cannot listen on %s:%d: %s", self.cfg.host_ip, dns.PORT, exc)
        svc_list, svc_event = self._store(self.services)
        es_list, es_event = self._store(self.slices)
        pod_params = {"fieldSelector": f"spec.nodeName={self.cfg.name}"}
        tasks = [
            registration.heartbeat(self.api, self.cfg, node_uid),
            registration.provisioner(self.api, data_dir=self.state_dir / "pvc"),
            informer(self.api, "/api/v1/services", params={}, on_list=svc_list, on_event=svc_event),
            informer(
                self.api,
                "/apis/discovery.k8s.io/v1/endpointslices",
                params={},
                on_list=es_list,
                on_event=es_event,
            ),
            informer(
                self.api,
                "/api/v1/pods",
                params=pod_params,
                on_list=self.on_pod_list,
                on_event=self.on_pod,
            ),
            self.sync_services(),
            self._save_loop(),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            log_server.close()

    async def _save_loop(self) -> None:
        while True:
            self._save_created()
            await asyncio.sleep(5)

    async def shutdown(self) -> None:
        """Stop every pod's processes (pods stay in the API; a restarted node runs them again)."""
        await asyncio.gather(*(w.stop() for w in self.workers.values()), return_exceptions=True)
        self._save_created()
        self.dns.close()
        await self.proxy.close()


async def cleanup_async(node_dir: Path, *, keep_data: bool) -> None:
    """Remove every process, namespace, veth, address and file this node created."""
    names = await netns.list_ours()
    for pid in procs.pids_in_netns([Path("/run/netns") / n for n in names]):
        procs.signal_group(pid, signal.SIGKILL)
    for veth in await netns.list_our_veths():  # before the namespaces: see netns.delete
        await netns.ip("link", "del", veth, check=False)
    for name in names:
        await netns.delete_by_name(name)
    for folder in netns.NETNS_ETC.glob(netns.NETNS_PREFIX + "*"):
        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        netns.NETNS_ETC.rmdir()  # only when empty: other tools may keep namespaces there too
    await proxy.remove_service_addresses()
    created = node_dir / CREATED_PATHS
    if created.exists():
        mounts.remove_created(json.loads(created.read_text()))
        created.unlink()
    shutil.rmtree(node_dir / "pods", ignore_errors=True)
    if not keep_data:
        shutil.rmtree(node_dir, ignore_errors=True)


def node_dir_of(state_dir: Path) -> Path:
    """The node keeps everything under NODE_SUBDIR of the cluster's state folder."""
    return state_dir.resolve() / NODE_SUBDIR


def cleanup(state_dir: Path) -> None:
    """Everything the node created goes, PVC data included (what `cluster-down` calls)."""
    asyncio.run(cleanup_async(node_dir_of(state_dir), keep_data=False))


async def amain(args: argparse.Namespace) -> None:
    state_dir = node_dir_of(args.state_dir)
    await cleanup_async(state_dir, keep_data=True)  # leftovers of an earlier run
    state_dir.mkdir(parents=True, exist_ok=True)
    await netns.ensure_bridge()
    kubeconfig = args.kubeconfig or args.state_dir / "kubeconfig"
    creds = kubeapi.load_credentials(kubeconfig, scratch=state_dir / "credentials")
    api = kubeapi.Api(creds)
    version = (await until_answered(lambda: api.get("/version"))).get("gitVersion", "v1.37.0")
    cfg = registration.NodeConfig(
        name=args.node_name,
        gpus=args.gpus,
        memory_ki=registration.memory_ki(),
        version=version,
        kubelet_port=args.kubelet_port,
    )
    node = Node(
        api=api,
        cfg=cfg,
        state_dir=state_dir,
        backoff_base=args.backoff_base,
        backoff_cap=args.backoff_cap,
    )
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: main.cancel() if main else None)
    try:
        await node.run()
    except asyncio.CancelledError:
        log.info("stopping")
    finally:
        await node.shutdown()
        await api.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster.node",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default_cluster_dir(),
        help="the cluster's state folder; the node uses DIR/node",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="default DIR/kubeconfig (admin: the PV provisioner needs it)",
    )
    parser.add_argument("--cleanup", action="store_true", help="remove everything and exit")
    parser.add_argument("--node-name", default="local-node")
    env = os.environ.get
    parser.add_argument(
        "--gpus",
        type=int,
        default=int(env("LLMOP_NODE_GPUS", "1")),
        help="nvidia.com/gpu capacity to advertise ($LLMOP_NODE_GPUS)",
    )
    parser.add_argument("--kubelet-port", type=int, default=10250)
    parser.add_argument(
        "--backoff-base",
        type=float,
        default=float(env("LLMOP_NODE_BACKOFF_BASE", "10")),
        help="second restart's back-off, doubling after ($LLMOP_NODE_BACKOFF_BASE)",
    )
    parser.add_argument(
        "--backoff-cap",
        type=float,
        default=float(env("LLMOP_NODE_BACKOFF_CAP", "300")),
        help="CrashLoopBackOff cap in seconds ($LLMOP_NODE_BACKOFF_CAP)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.cleanup:
        cleanup(args.state_dir)
        return
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
