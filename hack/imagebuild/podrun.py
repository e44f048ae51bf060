"""Run the project's images with podman the way the operator's pods run them.

The chart and the operator give every container: a read-only root file system, a non-root
numeric user (65532), no capabilities, no privilege escalation, and writable volumes only where
they are needed (/tmp, the model volume). `hardened_argv` is that as `podman run` flags (pure);
`Container` runs one detached and removes it afterwards, whatever happened.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from imagebuild import recipe

USER = "65532:65532"
# The size the operator gives a pod's /tmp emptyDir (llm_operator.pod.TMP_SIZE_LIMIT).
TMP_SIZE = "512m"


def hardened_argv(
    *,
    network: str,
    volumes: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    memory: str = "4g",
) -> list[str]:
    """`podman run` flags: the pods' securityContext, a tmpfs /tmp and nothing else writable
    (podman's own tmpfs on /run and /var/tmp is turned off), a memory limit (cgroup v1 here)."""
    argv = [
        f"--runtime={recipe.OCI_RUNTIME}",
        "--read-only",
        "--read-only-tmpfs=false",
        f"--tmpfs=/tmp:rw,size={TMP_SIZE},mode=1777",
        f"--user={USER}",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--memory={memory}",
        f"--network={network}",
    ]
    argv += [f"--ulimit={limit}" for limit in recipe.ULIMITS]  # as the builds: see recipe
    argv += [f"--volume={v}" for v in volumes]
    argv += [f"--env={k}={v}" for k, v in (env or {}).items()]
    return argv


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass(frozen=True)
class Container:
    """A running container, by name."""

    name: str

    def logs(self) -> str:
        done = podman("logs", self.name)
        return done.stdout + done.stderr

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """A command inside it, as its own user with its own (empty) capability sets."""
        return podman("exec", self.name, *argv)

    def running(self) -> bool:
        return (
            podman("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip() == "true"
        )

    def stop(self, *, grace: int = 30) -> int:
        """SIGTERM, SIGKILL after `grace` seconds; the exit code."""
        podman("stop", f"--time={grace}", self.name, timeout=grace + 60)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip()
        return int(code)


@contextmanager
def running(
    image: str, flags: Sequence[str], args: Sequence[str], *, prefix: str
) -> Iterator[Container]:
    """`podman run -d` of `image` with `flags` and `args`; removed on exit."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    done = podman("run", "--detach", f"--name={name}", *flags, image, *args)
    if done.returncode != 0:
        raise RuntimeError(f"podman run {image} failed: {done.stderr}")
    try:
        yield Container(name)
    finally:
        podman("rm", "--force", "--time=0", name)


def run_once(
    image: str, flags: Sequence[str], args: Sequence[str], *, timeout: float
) -> subprocess.CompletedProcess[str]:
    """`podman run --rm`: an init container, to completion."""
    return podman("run", "--rm", *flags, image, *args, timeout=timeout)
