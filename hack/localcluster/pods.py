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

from localcluster import containerspec, images, kubeapi, mounts, netns, podsetup, procs, status
from localcluster import probes as probing

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
        self.netns: str | None = None
        self.start_time = status.now_rfc3339()
        self.objects: dict[containerspec.ObjectKey, dict[str, str] | None] = {}
        self.sources: dict[str, str] = {}
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.main_task: asyncio.Task[None] | None = None
        self.terminating = False

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
            log.warning("pod %s/%s status: %s", self.namespace, self.name, exc)

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
                try:
                    rules[c.name] = images.resolve(c.image, table)
                except images.ImageNotFoundError as exc:
                    missing.append(c)
                    c.wait("ErrImagePull" if attempt == 0 else "ImagePullBackOff", str(exc))
            if not missing:
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
                for c in [*self.inits, *self.mains]:
                    c.message = str(exc)
                self.dirty()
                await asyncio.sleep(RETRY_SECONDS)
        for c in self.mains if not self.inits else self.inits[:1]:
            c.message = ""
        interval = podsetup.token_refresh_interval(self.pod)
        if interval:
            self._tasks.append(asyncio.create_task(self._refresh_volumes(interval)))
        self.dirty()

    async def _refresh_volumes(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(containerspec.ConfigError, kubeapi.ApiError):
                await podsetup.prepare_volumes(
                    self.ctx.api,
                    self.pod,
                    pod_dir=self.dir,
                    objects=self.objects,
                    pod_ip=self.pod_ip or "",
                    host_ip=self.ctx.host_ip,
                )

    def _identity(self, spec: Obj) -> tuple[int | None, int | None]:
        """runAsUser/runAsGroup, the container's securityContext over the pod's."""
        security = {
            **self.pod["spec"].get("securityContext", {}),
            **spec.get("securityContext", {}),
        }
        return security.get("runAsUser"), security.get("runAsGroup")

    async def _start(
        self, c: status.Container, rule: images.ImageRule
    ) -> asyncio.subprocess.Process:
        """Build env, argv and mounts, then spawn; ConfigError when the container cannot start."""
        spec = self.specs()[c.name]
        env = containerspec.build_env(
            pod=self.pod,
            container=spec,
            rule=rule,
            objects=self.objects,
            service_env=self.ctx.service_env(self.namespace),
            pod_ip=self.pod_ip or "",
            host_ip=self.ctx.host_ip,
        )
        argv = containerspec.argv(spec, rule, env)
        binds = mounts.container_mounts(spec, self.sources)
        for bind in binds:
            self.ctx.created_paths.extend(await asyncio.to_thread(mounts.ensure_mountpoint, bind))
        uid, gid = self._identity(spec)
        launch = procs.launch_spec(
            argv=argv,
            env=env,
            mounts=[
                {"source": b.source, "target": b.target, "readOnly": b.read_only} for b in binds
            ],
            working_dir=spec.get("workingDir"),
            uid=uid,
            gid=gid,
            groups=self.pod["spec"].get("securityContext", {}).get("supplementalGroups", []),
            expose=procs.exposures_for(argv[0]) if uid else [],
        )
        self.envs[c.name] = env
        proc = await procs.spawn(
            netns=self.netns or "",
            spec=launch,
            spec_file=self.dir / "specs" / f"{c.name}.json",
            log_file=procs.log_path(self.dir, c.name, c.restart_count),
        )
        self.procs[c.name] = proc
        c.run(pid=proc.pid, at=status.now_rfc3339())
        self.dirty()
        return proc

    async def _start_retrying(
        self, c: status.Container, rule: images.ImageRule
    ) -> asyncio.subprocess.Process:
        while True:
            try:
                return await self._start(c, rule)
            except (containerspec.ConfigError, OSError) as exc:
                c.wait("CreateContainerConfigError", str(exc))
                self.dirty()
                await asyncio.sleep(RETRY_SECONDS)

    async def _backoff(self, c: status.Container, crashes: int) -> None:
        delay = status.backoff_delay(crashes, base=self.ctx.backoff_base, cap=self.ctx.backoff_cap)
        if delay > 0:
            c.wait(
                "CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container={c.name}"
            )
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
            prober = asyncio.create_task(self._probe(c, proc))
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

    # ----- probes ---------------------------------------------------------------------------
    async def _probe(self, c: status.Container, proc: asyncio.subprocess.Process) -> None:
        spec = self.specs()[c.name]
        startup = spec.get("startupProbe")
        if startup and not await self._probe_loop(c, proc, spec, startup, "startup"):
            return
        c.started = True
        if not spec.get("readinessProbe"):
            c.ready = True
        self.dirty()
        loops = [
            self._probe_loop(c, proc, spec, spec[k], k.removesuffix("Probe"))
            for k in ("livenessProbe", "readinessProbe")
            if spec.get(k)
        ]
        await asyncio.gather(*loops)

    async def _probe_loop(
        self,
        c: status.Container,
        proc: asyncio.subprocess.Process,
        spec: Obj,
        probe: Obj,
        kind: str,
    ) -> bool:
        """Probe until the verdict ends this loop's job; True when a startup probe succeeded."""
        timing, tracker = probing.Timing.of(probe), probing.Tracker()
        uid, gid = self._identity(spec)
        await asyncio.sleep(timing.initial_delay)
        while proc.returncode is None:
            ok = await probing.check(
                probe,
                container=spec,
                pod_ip=self.pod_ip or "",
                pid=proc.pid,
                uid=uid,
                gid=gid,
                env=self.envs.get(c.name, {}),
            )
            before, tracker = tracker.result, tracker.record(ok, timing)
            if kind == "startup" and tracker.result is not None:
                if tracker.result:
                    return True
                await self._kill_for_probe(c, proc, kind)
                return False
            if kind == "liveness" and tracker.result is False:
                await self._kill_for_probe(c, proc, kind)
                return False
            if kind == "readiness" and tracker.result is not None and tracker.result != before:
                c.ready = bool(tracker.result)
                self.dirty()
            await asyncio.sleep(timing.period)
        return False

    async def _kill_for_probe(
        self, c: status.Container, proc: asyncio.subprocess.Process, kind: str
    ) -> None:
        log.info(
            "pod %s/%s container %s failed its %s probe; killing",
            self.namespace,
            self.name,
            c.name,
            kind,
        )
        await procs.stop(proc, grace=self.grace())

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
        await asyncio.gather(*(self._stop_container(c, grace) for c in running))
        self.dirty()
        await self.write_status()
        await self.stop()
        with contextlib.suppress(kubeapi.ApiError):
            await self.ctx.api.delete(
                kubeapi.pod_path(self.namespace, self.name),
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
            )

    async def _stop_container(self, c: status.Container, grace: float) -> None:
        proc = self.procs[c.name]
        loop = asyncio.get_running_loop()
        began = loop.time()
        pre_stop = self.specs()[c.name].get("lifecycle", {}).get("preStop")
        if pre_stop:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._run_hook(c, proc, pre_stop), timeout=grace)
        left = grace - (loop.time() - began)
        code = await procs.stop(proc, grace=max(left, 2.0 if left > 0 else 0.0))
        c.finish(exit_code=code, at=status.now_rfc3339())

    async def _run_hook(
        self, c: status.Container, proc: asyncio.subprocess.Process, hook: Obj
    ) -> None:
        if "sleep" in hook:
            await asyncio.sleep(float(hook["sleep"]["seconds"]))
            return
        probe = {**hook, "timeoutSeconds": int(self.grace()) or 1}
        await probing.check(
            probe,
            container=self.specs()[c.name],
            pod_ip=self.pod_ip or "",
            pid=proc.pid,
            uid=None,
            gid=None,
            env=self.envs.get(c.name, {}),
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
        if self.netns is not None:
            await netns.delete(pod_uid=self.uid, pod_ip=self.pod_ip)
            self.netns = None
        if self.pod_ip is not None:
            self.ctx.used_ips.discard(self.pod_ip)
