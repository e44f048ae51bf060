"""One asyncio worker per pod bound to this node: set up, init containers, supervise, terminate.

The worker owns its `status.Container` records and marks itself dirty on every change; a writer
task patches the pod's status subresource from them (merge patch, whole lists). Container
processes run in the pod's network namespace with its volumes bound (see procs/launch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcluster import (
    containers,
    containerspec,
    events,
    images,
    kubeapi,
    netns,
    podsetup,
    procs,
    status,
)

log = logging.getLogger("localcluster.pods")
Obj = dict[str, Any]
RETRY_SECONDS = 3.0


@dataclass
class NodeContext:
    """What every pod worker shares with the node."""

    api: kubeapi.Api
    state_dir: Path
    node_name: str
    host_ip: str
    backoff_base: float = 10.0
    backoff_cap: float = 300.0
    used_ips: set[str] = field(default_factory=set)
    last_ip: str | None = None
    hosts_for: Callable[[str, str, str], str] = lambda ns, name, ip: f"{ip} {name}\n"
    service_env: Callable[[str], dict[str, str]] = lambda ns: {}
    created_paths: list[str] = field(default_factory=list)
    events: events.EventSink | None = None


class PodWorker:
    """Runs one pod as local processes until it ends or is deleted."""

    def __init__(self, ctx: NodeContext, pod: Obj) -> None:
        self.ctx, self.pod = ctx, pod
        meta, spec = pod["metadata"], pod["spec"]
        self.uid, self.name, self.namespace = meta["uid"], meta["name"], meta["namespace"]
        self.policy: str = spec.get("restartPolicy", "Always")
        self.dir = ctx.state_dir / "pods" / self.uid
        self.inits = [
            status.Container(c["name"], c["image"], "PodInitializing")
            for c in spec.get("initContainers", [])
        ]
        first = "PodInitializing" if self.inits else "ContainerCreating"
        self.mains = [status.Container(c["name"], c["image"], first) for c in spec["containers"]]
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.envs: dict[str, dict[str, str]] = {}
        self.pod_ip: str | None = None
        self.holds_ip = False
        self.netns: str | None = None
        self.start_time = status.now_rfc3339()
        self.objects: dict[containerspec.ObjectKey, dict[str, str] | None] = {}
        self.sources: dict[str, str] = {}
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.main_task: asyncio.Task[None] | None = None
        self.terminating = False

    # ----- events ---------------------------------------------------------------------------
    def event(self, reason: str, message: str, warning: bool, container: str | None) -> None:
        """Record an Event about this pod (in the background)."""
        if self.ctx.events is not None:
            self.ctx.events.record(self.pod, reason, message, warning, container)

    # ----- status ---------------------------------------------------------------------------
    def dirty(self) -> None:
        self._dirty.set()

    def build_status(self) -> Obj:
        return status.pod_status(
            inits=self.inits,
            mains=self.mains,
            policy=self.policy,
            previous_conditions=self.pod.get("status", {}).get("conditions", []),
            pod_ip=self.pod_ip,
            host_ip=self.ctx.host_ip,
            start_time=self.start_time,
            at=status.now_rfc3339(),
        )

    async def write_status(self) -> None:
        path = kubeapi.pod_path(self.namespace, self.name, "status")
        body = {"metadata": {"uid": self.uid}, "status": self.build_status()}
        try:
            self.pod = await self.ctx.api.patch(path, body)
        except kubeapi.ApiError as exc:
            level = logging.DEBUG if exc.status == 404 else logging.WARNING  # deleted meanwhile
            log.log(level, "pod %s/%s status: %s", self.namespace, self.name, exc)
            if exc.status == kubeapi.UNREACHABLE or exc.status >= 500:
                await asyncio.sleep(RETRY_SECONDS)  # the apiserver is back soon: write again
                self.dirty()

    async def _status_writer(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self.write_status()
            await asyncio.sleep(0.2)

    # ----- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._status_writer()))
        self.main_task = asyncio.create_task(self._run())
        self.dirty()

    async def _run(self) -> None:
        try:
            rules = await self._resolve_images()
            await self._setup(rules)
            if not await self._run_inits(rules):
                return
            supervisors = [asyncio.create_task(self._supervise(c, rules)) for c in self.mains]
            await asyncio.gather(*supervisors)
            log.info("pod %s/%s finished", self.namespace, self.name)
            await self._teardown_network()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s worker failed", self.namespace, self.name)

    def shared(self) -> containers.PodShared:
        """What every container of this pod starts from."""
        return containers.PodShared(
            pod=self.pod,
            pod_dir=self.dir,
            netns=self.netns or "",
            pod_ip=self.pod_ip or "",
            host_ip=self.ctx.host_ip,
            objects=self.objects,
            sources=self.sources,
            service_env=self.ctx.service_env(self.namespace),
            record=self.event,
        )

    def specs(self) -> dict[str, Obj]:
        spec = self.pod["spec"]
        return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}

    async def _resolve_images(self) -> dict[str, images.ImageRule]:
        """Map every image; unmapped ones wait in ErrImagePull then ImagePullBackOff."""
        attempt = 0
        while True:
            rules, missing = {}, []
            table = images.load_rules()
            for c in [*self.inits, *self.mains]:
                with contextlib.suppress(images.ImageNotFoundError):
                    rules[c.name] = images.resolve(c.image, table)
                policy = str(self.specs()[c.name].get("imagePullPolicy") or "IfNotPresent")
                failure = images.pull_failure(c.image, policy=policy, mapped=c.name in rules)
                if failure is None:
                    continue
                missing.append(c)
                reason, message = failure
                if reason == "ErrImagePull" and attempt > 0:
                    reason = "ImagePullBackOff"  # a kubelet's state between pull attempts
                c.wait(reason, message)
                if attempt == 0:  # one Event, as a kubelet's repeats fold into its count
                    self.event(images.IMAGE_EVENTS.get(reason, "Failed"), message, True, c.name)
            if not missing:
                for c in [*self.inits, *self.mains]:
                    message = f"Container image {c.image!r} maps to {rules[c.name].match!r}"
                    self.event("Pulled", message, False, c.name)
                    if c.waiting in images.PULL_REASONS:
                        c.wait("PodInitializing" if self.inits else "ContainerCreating")
                return rules
            self.dirty()
            attempt += 1
            await asyncio.sleep(
                status.backoff_delay(attempt, base=self.ctx.backoff_base, cap=self.ctx.backoff_cap)
            )

    async def _setup(self, rules: Mapping[str, images.ImageRule]) -> None:
        """Network namespace, pod IP and volumes; config errors keep the pod ContainerCreating."""
        self.pod_ip = netns.allocate_ip(self.ctx.used_ips, after=self.ctx.last_ip)
        self.ctx.used_ips.add(self.pod_ip)
        self.holds_ip = True
        self.ctx.last_ip = self.pod_ip
        hosts = self.ctx.hosts_for(self.namespace, self.name, self.pod_ip)
        while self.netns is None:
            try:
                self.netns = await netns.create(pod_uid=self.uid, pod_ip=self.pod_ip, hosts=hosts)
            except netns.NetError as exc:
                log.warning("pod %s/%s network: %s", self.namespace, self.name, exc)
                for c in [*self.inits, *self.mains]:
                    c.message = f"network set-up failed: {exc}"
                self.dirty()
                await asyncio.sleep(RETRY_SECONDS)
        # Services may have changed while the namespace was being made.
        netns.write_etc(
            self.netns, hosts=self.ctx.hosts_for(self.namespace, self.name, self.pod_ip)
        )
        failed_mount = ""
        while True:
            try:
                self.objects = await podsetup.fetch_objects(self.ctx.api, self.pod)
                self.sources = await podsetup.prepare_volumes(
                    self.ctx.api,
                    self.pod,
                    pod_dir=self.dir,
                    objects=self.objects,
                    pod_ip=self.pod_ip,
                    host_ip=self.ctx.host_ip,
                )
                break
            except (containerspec.ConfigError, kubeapi.ApiError) as exc:
                if str(exc) != failed_mount and isinstance(exc, containerspec.ConfigError):
                    # A kubelet's FailedMount (a missing Secret or ConfigMap, an unbound claim),
                    # posted when the reason changes rather than on every retry.
                    failed_mount = str(exc)
                    self.event("FailedMount", f"MountVolume.SetUp failed: {exc}", True, None)
                for c in [*self.inits, *self.mains]:
                    c.message = str(exc)
                self.dirty()
                await asyncio.sleep(RETRY_SECONDS)
        for c in [*self.inits, *self.mains]:
            c.message = ""
        interval = podsetup.token_refresh_interval(self.pod)
        if interval:
            self._tasks.append(asyncio.create_task(self._refresh_volumes(interval)))
        self.dirty()

    async def _refresh_volumes(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(containerspec.ConfigError, kubeapi.ApiError):
                # ConfigMaps and Secrets change while pods run; a kubelet updates their volumes.
                self.objects = await podsetup.fetch_objects(self.ctx.api, self.pod)
                await podsetup.prepare_volumes(
                    self.ctx.api,
                    self.pod,
                    pod_dir=self.dir,
                    objects=self.objects,
                    pod_ip=self.pod_ip or "",
                    host_ip=self.ctx.host_ip,
                )

    async def _start_retrying(
        self, c: status.Container, rule: images.ImageRule
    ) -> asyncio.subprocess.Process:
        while True:
            try:
                proc, self.envs[c.name] = await containers.start(
                    c,
                    spec=self.specs()[c.name],
                    rule=rule,
                    shared=self.shared(),
                    created_paths=self.ctx.created_paths,
                )
            except (containerspec.ConfigError, OSError) as exc:
                c.wait("CreateContainerConfigError", str(exc))
                self.dirty()
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self.procs[c.name] = proc
            self.dirty()
            return proc

    async def _backoff(self, c: status.Container, crashes: int) -> None:
        delay = status.backoff_delay(crashes, base=self.ctx.backoff_base, cap=self.ctx.backoff_cap)
        if delay > 0:
            c.wait(
                "CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container={c.name}"
            )
            self.event("BackOff", "Back-off restarting failed container", True, c.name)
            self.dirty()
            await asyncio.sleep(delay)
        c.restart_count += 1

    async def _run_inits(self, rules: Mapping[str, images.ImageRule]) -> bool:
        """Init containers one after another; False when the pod failed for good."""
        for c in self.inits:
            crashes = 0
            while True:
                proc = await self._start_retrying(c, rules[c.name])
                code = procs.exit_code(await proc.wait())
                c.finish(exit_code=code, at=status.now_rfc3339())
                self.dirty()
                if code == 0:
                    break
                if self.policy == "Never":
                    await self._teardown_network()
                    return False
                crashes += 1
                await self._backoff(c, crashes)
        for c in self.mains:
            c.wait("ContainerCreating")
        return True

    async def _supervise(self, c: status.Container, rules: Mapping[str, images.ImageRule]) -> None:
        """Run one main container, restarting it as restartPolicy and back-off say."""
        crashes = 0
        while True:
            proc = await self._start_retrying(c, rules[c.name])
            prober = asyncio.create_task(
                containers.probe(
                    c,
                    proc,
                    spec=self.specs()[c.name],
                    shared=self.shared(),
                    env=self.envs.get(c.name, {}),
                    grace=self.grace(),
                    changed=self.dirty,
                )
            )
            started = asyncio.get_running_loop().time()
            try:
                code = procs.exit_code(await proc.wait())
            finally:
                prober.cancel()
            c.finish(exit_code=code, at=status.now_rfc3339())
            self.dirty()
            if not status.should_restart(self.policy, code):
                return
            ran = asyncio.get_running_loop().time() - started
            crashes = 1 if ran > 2 * self.ctx.backoff_cap else crashes + 1
            await self._backoff(c, crashes - 1)

    # ----- termination ----------------------------------------------------------------------
    def grace(self) -> float:
        meta_grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        spec_grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        return float(meta_grace if meta_grace is not None else spec_grace)

    async def terminate(self, pod: Obj) -> None:
        """preStop, SIGTERM, grace period, SIGKILL, final status, then delete with grace 0."""
        if self.terminating:
            return
        self.terminating = True
        self.pod = {**pod, "status": self.pod.get("status", {})}
        if self.main_task is not None:
            self.main_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.main_task
        grace = self.grace()
        running = [
            c for c in self.mains if c.name in self.procs and self.procs[c.name].returncode is None
        ]
        await asyncio.gather(
            *(
                containers.stop(
                    c,
                    self.procs[c.name],
                    spec=self.specs()[c.name],
                    shared=self.shared(),
                    env=self.envs.get(c.name, {}),
                    grace=grace,
                )
                for c in running
            )
        )
        self.dirty()
        await self.write_status()
        await self.stop()
        with contextlib.suppress(kubeapi.ApiError):
            await self.ctx.api.delete(
                kubeapi.pod_path(self.namespace, self.name),
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
            )

    async def stop(self) -> None:
        """Kill whatever still runs and remove the pod's namespace and folder (no status write)."""
        if self.main_task is not None and not self.main_task.done():
            self.main_task.cancel()
        for proc in self.procs.values():
            if proc.returncode is None:
                await procs.stop(proc, grace=0)
        for task in self._tasks:
            task.cancel()
        await self._teardown_network()
        await asyncio.to_thread(shutil.rmtree, self.dir / "volumes", True)

    async def _teardown_network(self) -> None:
        """Remove the namespace whenever set-up began (it may have been cancelled half-way).

        `netns` is cleared before the first await, so a hosts-file rewrite running meanwhile
        cannot recreate /etc/netns/<name> after it is removed.
        """
        self.netns = None
        if self.pod_ip is not None and self.holds_ip:
            self.holds_ip = False  # before the await: never release an IP twice
            await netns.delete(pod_uid=self.uid, pod_ip=self.pod_ip)
            self.ctx.used_ips.discard(self.pod_ip)
