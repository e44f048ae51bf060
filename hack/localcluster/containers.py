"""One container of a pod: start it in the pod's namespaces, probe it, stop it gracefully.

The pod worker owns restart policy and back-off; these functions own a single run of a single
container and report through its `status.Container` record and the `changed` callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcluster import containerspec, images, mounts, procs, status
from localcluster import probes as probing

log = logging.getLogger("localcluster.containers")
Obj = dict[str, Any]
Process = asyncio.subprocess.Process
# (reason, message, warning, container name) -> an Event about the pod
Recorder = Callable[[str, str, bool, str | None], None]


@dataclass(frozen=True)
class PodShared:
    """What every container of one pod starts from."""

    pod: Obj
    pod_dir: Path
    netns: str
    pod_ip: str
    host_ip: str
    objects: Mapping[containerspec.ObjectKey, Mapping[str, str] | None]
    sources: Mapping[str, str]
    service_env: Mapping[str, str]
    record: Recorder = field(default=lambda reason, message, warning, container: None)


def identity(pod: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """runAsUser/runAsGroup, the container's securityContext over the pod's."""
    security = {**pod["spec"].get("securityContext", {}), **spec.get("securityContext", {})}
    return security.get("runAsUser"), security.get("runAsGroup")


def non_root_required(pod: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    """runAsNonRoot, the container's securityContext over the pod's."""
    security = {**pod["spec"].get("securityContext", {}), **spec.get("securityContext", {})}
    return bool(security.get("runAsNonRoot"))


def supplemental_groups(pod: Mapping[str, Any]) -> list[int]:
    """supplementalGroups plus fsGroup, as a kubelet gives them to every container process."""
    security = pod["spec"].get("securityContext", {})
    groups = [int(g) for g in security.get("supplementalGroups", [])]
    if security.get("fsGroup") is not None:
        groups.append(int(security["fsGroup"]))
    return sorted(set(groups))


async def start(
    c: status.Container,
    *,
    spec: Obj,
    rule: images.ImageRule,
    shared: PodShared,
    created_paths: list[str],
) -> tuple[Process, dict[str, str]]:
    """Build env, argv and binds, then spawn; ConfigError when the container cannot start."""
    env = containerspec.build_env(
        pod=shared.pod,
        container=spec,
        rule=rule,
        objects=shared.objects,
        service_env=shared.service_env,
        pod_ip=shared.pod_ip,
        host_ip=shared.host_ip,
    )
    argv = containerspec.argv(spec, rule, env)
    read_only = mounts.read_only_volumes(shared.pod)
    binds = mounts.container_mounts(spec, shared.sources, read_only=read_only)
    hidden = mounts.shadowed(binds, procs.needed_paths(argv[0]))
    # Pods share the host's filesystem, so a volume at /tmp hides a checkout under /tmp (CI clones
    # anywhere): the launcher binds such folders back, read-only, on top of the volume.
    reexpose = mounts.reexposed(hidden)
    unsaveable = [t for t, _ in hidden if t.rstrip("/") in reexpose]
    if unsaveable:
        raise containerspec.ConfigError(
            f"volume at {unsaveable[0]} would replace a folder the process node runs this "
            "container from (pods share the host's filesystem here); mount it elsewhere"
        )
    for bind in binds:
        created_paths.extend(await asyncio.to_thread(mounts.ensure_mountpoint, bind))
    uid, gid = identity(shared.pod, spec)
    if non_root_required(shared.pod, spec) and not uid:
        raise containerspec.ConfigError("container has runAsNonRoot and image will run as root")
    launch = procs.launch_spec(
        argv=argv,
        env=env,
        mounts=[{"source": b.source, "target": b.target, "readOnly": b.read_only} for b in binds],
        working_dir=spec.get("workingDir"),
        uid=uid,
        gid=gid,
        groups=supplemental_groups(shared.pod),
        expose=await asyncio.to_thread(procs.exposures_for, argv[0]) if uid else [],
        read_only_root=bool(spec.get("securityContext", {}).get("readOnlyRootFilesystem")),
        reexpose=reexpose,
    )
    proc = await procs.spawn(
        netns=shared.netns,
        spec=launch,
        spec_file=shared.pod_dir / "specs" / f"{c.name}.json",
        log_file=procs.log_path(shared.pod_dir, c.name, c.restart_count),
    )
    await procs.wait_exec(proc.pid)  # mounts in place before hooks and probes enter
    c.run(pid=proc.pid, at=status.now_rfc3339())
    if spec.get("lifecycle", {}).get("postStart"):
        # Like a kubelet: the container reaches Running only once its postStart hook completed
        # (`probe` runs the hook and then marks it running).
        c.wait("ContainerCreating")
    shared.record("Started", f"Started container {c.name}", False, c.name)
    return proc, env


async def probe(
    c: status.Container,
    proc: Process,
    *,
    spec: Obj,
    shared: PodShared,
    env: Mapping[str, str],
    grace: float,
    changed: Callable[[], None],
) -> None:
    """postStart, then the startup probe; then liveness and readiness until the process ends.

    A failed postStart hook kills the container (FailedPostStartHook), as a kubelet does.
    """
    post_start = spec.get("lifecycle", {}).get("postStart")
    if post_start:
        began = c.started_at or status.now_rfc3339()
        if not await _run_hook(post_start, proc, spec=spec, shared=shared, env=env):
            shared.record("FailedPostStartHook", f"PostStartHook failed for {c.name}", True, c.name)
            await procs.stop(proc, grace=grace)
            return
        c.run(pid=proc.pid, at=began)
        changed()

    async def loop(kind: str) -> bool:
        return await _probe_loop(
            c, proc, kind=kind, spec=spec, shared=shared, env=env, grace=grace, changed=changed
        )

    if spec.get("startupProbe") and not await loop("startup"):
        return
    c.started = True
    if not spec.get("readinessProbe"):
        c.ready = True
    changed()
    await asyncio.gather(*(loop(k) for k in ("liveness", "readiness") if spec.get(f"{k}Probe")))


async def _probe_loop(
    c: status.Container,
    proc: Process,
    *,
    kind: str,
    spec: Obj,
    shared: PodShared,
    env: Mapping[str, str],
    grace: float,
    changed: Callable[[], None],
) -> bool:
    """Probe until this loop's verdict is final; True when a startup probe succeeded."""
    check = spec[f"{kind}Probe"]
    timing, tracker = probing.Timing.of(check), probing.Tracker()
    uid, gid = identity(shared.pod, spec)
    await asyncio.sleep(timing.initial_delay)
    while proc.returncode is None:
        ok = await probing.check(
            check, container=spec, pod_ip=shared.pod_ip, pid=proc.pid, uid=uid, gid=gid, env=env
        )
        before, tracker = tracker.result, tracker.record(ok, timing)
        if kind == "startup" and tracker.result:
            return True
        if not ok and tracker.failures == timing.failure_threshold:
            shared.record("Unhealthy", f"{kind.capitalize()} probe failed", True, c.name)
        if kind != "readiness" and tracker.result is False:
            log.info("container %s failed its %s probe; killing it", c.name, kind)
            message = f"Container {c.name} failed {kind} probe, will be restarted"
            shared.record("Killing", message, False, c.name)
            await procs.stop(proc, grace=grace)
            return False
        if kind == "readiness" and tracker.result is not None and tracker.result != before:
            c.ready = bool(tracker.result)
            changed()
        await asyncio.sleep(timing.period)
    return False


async def stop(
    c: status.Container,
    proc: Process,
    *,
    spec: Obj,
    shared: PodShared,
    env: Mapping[str, str],
    grace: float,
) -> None:
    """preStop within the grace period, then SIGTERM, the rest of it, SIGKILL."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    shared.record("Killing", f"Stopping container {c.name}", False, c.name)
    hook = spec.get("lifecycle", {}).get("preStop")
    if hook:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_run_hook(hook, proc, spec=spec, shared=shared, env=env), grace)
    code = await procs.stop(proc, grace=max(grace - (loop.time() - began), 0.0))
    c.finish(exit_code=code, at=status.now_rfc3339())


async def _run_hook(
    hook: Obj, proc: Process, *, spec: Obj, shared: PodShared, env: Mapping[str, str]
) -> bool:
    """A lifecycle handler: sleep, exec (in the container's namespaces) or httpGet; True if ok."""
    if "sleep" in hook:
        await asyncio.sleep(float(hook["sleep"]["seconds"]))
        return True
    uid, gid = identity(shared.pod, spec)
    return await probing.check(
        {**hook, "timeoutSeconds": 3600},
        container=spec,
        pod_ip=shared.pod_ip,
        pid=proc.pid,
        uid=uid,
        gid=gid,
        env=env,
    )
