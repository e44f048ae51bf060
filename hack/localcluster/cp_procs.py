"""Detached processes with pid files: start, find, stop.

Each process runs in its own session (so it outlives the CLI that started it and a terminal's ^C
does not reach it), logs to one file, and is recorded as `<pid> <starttime>` in its pid file. The
kernel's start time (field 22 of /proc/<pid>/stat) guards against a recycled pid: `down` never
signals a process it did not start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Recorded:
    """What a pid file says: the pid and the kernel start time of the process we started."""

    pid: int
    starttime: int


def parse_stat(stat: str) -> tuple[str, int]:
    """Pure: (state letter, start time in clock ticks) from a /proc/<pid>/stat line.

    The command name (field 2) may contain spaces and parentheses, so split after the last ')'.
    """
    rest = stat[stat.rindex(")") + 2 :].split()
    return rest[0], int(rest[19])


def parse_pidfile(text: str) -> Recorded | None:
    """Pure: a pid file's content, or None when it is not `<pid> <starttime>`."""
    parts = text.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return Recorded(pid=int(parts[0]), starttime=int(parts[1]))


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


def is_ours_and_alive(rec: Recorded) -> bool:
    """The recorded process still runs (not a zombie) and is the one we started."""
    stat = _stat(rec.pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[1] == rec.starttime


def recorded(pidfile: Path) -> Recorded | None:
    try:
        return parse_pidfile(pidfile.read_text())
    except FileNotFoundError:
        return None


def running(pidfile: Path) -> Recorded | None:
    """The process of this pid file if it is alive and ours, else None."""
    rec = recorded(pidfile)
    return rec if rec is not None and is_ours_and_alive(rec) else None


def start(
    argv: Sequence[str],
    *,
    pidfile: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Recorded:
    """Start argv detached (own session, stdin closed), logging to `log`; record it."""
    with open(log, "ab") as out:
        out.write(f"\n==== {time.strftime('%F %T')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    # Popen returns after exec; /proc/<pid>/stat then exists until the process is reaped.
    stat = _stat(proc.pid)
    rec = Recorded(pid=proc.pid, starttime=stat[1] if stat else 0)
    pidfile.write_text(f"{rec.pid} {rec.starttime}\n")
    return rec


def _signal_group(rec: Recorded, sig: signal.Signals) -> None:
    """Signal the process group the process leads (its whole session), or just it."""
    try:
        os.killpg(rec.pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(rec.pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _wait_gone(rec: Recorded, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(rec.pid)
        if not is_ours_and_alive(rec):
            return True
        time.sleep(0.05)
    return False


def stop(pidfile: Path, *, timeout: float = 10.0) -> bool:
    """SIGTERM the recorded process group, SIGKILL after `timeout`; remove the pid file.

    Returns whether something was running. A stale pid file (process gone or pid reused) is
    removed without signalling anyone.
    """
    rec = running(pidfile)
    if rec is not None:
        _signal_group(rec, signal.SIGTERM)
        if not _wait_gone(rec, timeout):
            _signal_group(rec, signal.SIGKILL)
            _wait_gone(rec, 5.0)
        if group_members(rec.pid):  # children that outlived their leader
            _signal_group(rec, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    return rec is not None


def group_members(pgid: int) -> list[int]:
    """Pids of live processes in process group `pgid` (children a component left behind)."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text()
        except OSError:
            continue
        rest = fields[fields.rindex(")") + 2 :].split()
        if int(rest[2]) == pgid and rest[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members
