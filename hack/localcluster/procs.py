"""Container processes: started through `ip netns exec` + launch.py, stopped by process group.

`ip netns exec` execs (no fork), so the Popen PID is the container's PID, and a new session
makes the container's children one process group that SIGTERM/SIGKILL reach together.
Logs go to one file per container and restart: DIR/logs/<container>/<restartCount>.log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

LAUNCHER = Path(__file__).with_name("launch.py")
log = logging.getLogger(__name__)


def log_path(pod_dir: Path, container: str, restart: int) -> Path:
    """Where one run of a container writes stdout and stderr."""
    return pod_dir / "logs" / container / f"{restart}.log"


def exit_code(returncode: int) -> int:
    """A shell-style exit code: death by signal N reads 128+N, as container runtimes report."""
    return 128 - returncode if returncode < 0 else returncode


def launch_spec(
    *,
    argv: Sequence[str],
    env: Mapping[str, str],
    mounts: Sequence[Mapping[str, Any]],
    working_dir: str | None,
    uid: int | None,
    gid: int | None,
    groups: Sequence[int],
    expose: Sequence[tuple[str, list[str]]] = (),
    read_only_root: bool = False,
    reexpose: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON document launch.py reads."""
    return {
        "readOnlyRoot": read_only_root,
        "reexpose": list(reexpose),
        "expose": [[folder, children] for folder, children in expose],
        "argv": list(argv),
        "env": dict(env),
        "mounts": list(mounts),
        "workingDir": working_dir,
        "uid": uid,
        "gid": gid,
        "groups": list(groups),
    }


def _prepare(*, spec: Mapping[str, Any], spec_file: Path, log_file: Path) -> BinaryIO:
    """Write the launch spec (root-only) and open the log for appending."""
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(json.dumps(spec))
    spec_file.chmod(0o600)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    return open(log_file, "ab")


def blocked_folders(
    paths: Sequence[str], *, is_open: Callable[[str], bool]
) -> list[tuple[str, list[str]]]:
    """Folders on the way to `paths` that others cannot traverse, with the child each path needs.

    Pure given `is_open` (does this folder grant others execute?). Only the first closed folder
    of each path counts: exposing its child makes the rest reachable if it is open.
    """
    found: dict[str, set[str]] = {}
    for path in paths:
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts) - 1):
            folder = "/" + "/".join(parts[:depth])
            if not is_open(folder):
                found.setdefault(folder, set()).add(parts[depth])
                break
    return [(folder, sorted(children)) for folder, children in sorted(found.items())]


def others_may_enter(folder: str) -> bool:
    """Whether a folder's mode lets any user traverse it."""
    try:
        return bool(os.stat(folder).st_mode & 0o001)
    except OSError:
        return True


def needed_paths(program: str) -> list[str]:
    """Files a container process runs from: its program, this Python and its prefixes."""
    return sorted(
        {
            program,
            os.path.realpath(program),
            sys.executable,
            os.path.realpath(sys.executable),
            sys.prefix,
            sys.base_prefix,
            str(LAUNCHER),
        }
    )


def exposures_for(program: str) -> list[tuple[str, list[str]]]:
    """What a non-root container needs exposed to run `program` and this Python."""
    return blocked_folders(needed_paths(program), is_open=others_may_enter)


async def spawn(
    *, netns: str, spec: Mapping[str, Any], spec_file: Path, log_file: Path
) -> asyncio.subprocess.Process:
    """Start one container process in the pod's namespaces, output appended to log_file."""
    log = await asyncio.to_thread(_prepare, spec=spec, spec_file=spec_file, log_file=log_file)
    with log:
        return await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-I",
            str(LAUNCHER),
            str(spec_file),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _cmdline(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return None


def past_launcher(cmdline: bytes | None) -> bool:
    """Whether a container process has exec'd its own program (or is gone).

    Until then it is `ip netns exec` or launch.py, whose bind mounts are not all in place yet,
    so hooks and exec probes entering its mount namespace would see the host's folders. An
    empty command line is not past it: a process in the middle of an execve has its new memory
    but not yet its arguments, and reads as empty (a postStart hook that took that for "past"
    ran before the mounts and wrote into the host's /out; see wait_exec for zombies).
    """
    if cmdline is None:
        return True
    if not cmdline:
        return False
    return not cmdline.startswith(b"ip\0netns\0exec\0") and str(LAUNCHER).encode() not in cmdline


def exited(stat: str | None) -> bool:
    """Pure: whether /proc/PID/stat (None: unreadable) shows a process that is gone or a zombie
    (its command line reads empty for good)."""
    if stat is None:
        return True
    state = stat.rpartition(")")[2].split()
    return not state or state[0] in ("Z", "X")


def _stat(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read()
    except OSError:
        return None


async def wait_exec(pid: int, *, limit: float = 60.0) -> None:
    """Wait (bounded) until the process runs the container's program, or has exited."""
    step = 0.02
    for _ in range(int(limit / step)):
        cmdline = _cmdline(pid)
        if past_launcher(cmdline) or (not cmdline and exited(_stat(pid))):
            return
        await asyncio.sleep(step)
    log.warning("pid %s still in its launcher after %.0f s: hooks and probes go ahead", pid, limit)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the container's process group (falls back to the PID); gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            os.kill(pid, sig)


async def stop(proc: asyncio.subprocess.Process, *, grace: float) -> int:
    """SIGTERM, wait up to grace seconds, then SIGKILL; returns the exit code."""
    if proc.returncode is None:
        signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=max(grace, 0.0))
        except TimeoutError:
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    # The group may outlive its leader; make sure nothing of the container stays.
    signal_group(proc.pid, signal.SIGKILL)
    return exit_code(proc.returncode or 0)


def pids_in_netns(netns_files: Sequence[Path]) -> list[int]:
    """Every process whose network namespace is one of the given /run/netns files."""
    inodes = set()
    for path in netns_files:
        with contextlib.suppress(OSError):
            inodes.add(os.stat(path).st_ino)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                found.append(int(entry))
    return found
