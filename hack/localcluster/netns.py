"""One network namespace per pod, wired to the host bridge llmop0 by a veth pair.

Names derive from the pod UID, so a pod recreated under the same name never meets its
predecessor's namespace, and `cleanup` can find everything by prefix. Pod IPs come from
198.18.0.10 to 198.18.127.254 (the lower half of 198.18.0.0/16); the bridge holds 198.18.0.1, the
pods' default gateway. The upper half, 198.18.128.0/17, is the real node's CNI range (`realnode`),
so both nodes' pods share one bridge and reach each other without overlapping.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

BRIDGE = "llmop0"
GATEWAY = "198.18.0.1"
POD_NET = ipaddress.ip_network("198.18.0.0/16")
FIRST_POD_IP = ipaddress.ip_address("198.18.0.10")
# The last address this node hands out: 198.18.128.0/17 belongs to the real node's CNI.
LAST_POD_IP = ipaddress.ip_address("198.18.127.254")
NETNS_PREFIX = "llmop-"
VETH_PREFIX = "llv"
NETNS_ETC = Path("/etc/netns")
RESOLV_CONF = "# Written by the llm-operator process node: no outside DNS; names come from hosts.\noptions ndots:1\n"


class NetError(Exception):
    """An `ip` command failed."""


def netns_name(pod_uid: str) -> str:
    """The pod's network namespace name."""
    return NETNS_PREFIX + pod_uid.replace("-", "")[:16]


def veth_name(pod_uid: str) -> str:
    """The host end of the pod's veth (interface names stop at 15 characters)."""
    return VETH_PREFIX + pod_uid.replace("-", "")[:12]


def allocate_ip(used: Iterable[str], *, after: str | None = None) -> str:
    """The next free pod IP after `after` (wrapping), from .0.10 up to LAST_POD_IP.

    Handing out addresses round-robin rather than lowest-first keeps a just-freed IP (whose
    MAC the host may still have cached) from going straight to the next pod.
    """
    taken = set(used)
    first, end = int(FIRST_POD_IP), int(LAST_POD_IP) + 1
    start = int(ipaddress.ip_address(after)) + 1 if after else first
    start = start if first <= start < end else first
    for value in [*range(start, end), *range(first, start)]:
        candidate = str(ipaddress.ip_address(value))
        if candidate not in taken:
            return candidate
    raise NetError(f"pod range {FIRST_POD_IP}-{LAST_POD_IP} is exhausted")


async def ip(*args: str, check: bool = True) -> str:
    """Run `ip ARGS` and return its stdout; raise NetError when it fails and check is set."""
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {err.decode().strip()}")
    return out.decode()


async def ensure_bridge() -> None:
    """Make sure llmop0 exists; the control plane usually created it already."""
    if (await ip("link", "show", BRIDGE, check=False)).strip():
        return
    try:
        from localcluster import cp_net  # the control plane's owner of the bridge

        await asyncio.to_thread(cp_net.ensure_bridge)
    except ImportError:
        await ip("link", "add", BRIDGE, "type", "bridge")
        await ip("addr", "add", f"{GATEWAY}/16", "dev", BRIDGE)
        await ip("link", "set", BRIDGE, "up")


def write_etc(name: str, *, hosts: str) -> None:
    """Files `ip netns exec` bind-mounts over /etc for every process of the namespace.

    Written in place (same inode) so running processes see the update through their bind mount.
    """
    folder = NETNS_ETC / name
    folder.mkdir(parents=True, exist_ok=True)
    for fname, text in (("hosts", hosts), ("resolv.conf", RESOLV_CONF)):
        path = folder / fname
        with open(path, "a+") as out:
            out.seek(0)
            if out.read() == text:
                continue
            out.seek(0)
            out.truncate()
            out.write(text)
        path.chmod(0o644)


async def create(*, pod_uid: str, pod_ip: str, hosts: str) -> str:
    """Create the namespace, its eth0 with pod_ip/16, lo up, default route via the bridge."""
    name, veth = netns_name(pod_uid), veth_name(pod_uid)
    await delete(pod_uid=pod_uid)
    write_etc(name, hosts=hosts)
    await ip("netns", "add", name)
    await ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
    await ip("link", "set", veth, "master", BRIDGE, "up")
    await ip("-n", name, "addr", "add", f"{pod_ip}/{POD_NET.prefixlen}", "dev", "eth0")
    await ip("-n", name, "link", "set", "eth0", "up")
    await ip("-n", name, "link", "set", "lo", "up")
    await ip("-n", name, "route", "add", "default", "via", GATEWAY)
    return name


async def delete(*, pod_uid: str, pod_ip: str | None = None) -> None:
    """Remove the namespace (its veth goes with it), the host end if left, and /etc/netns files.

    The host's neighbour entry for the IP goes too, so the next pod with it is reached at once.
    """
    # The veth first: deleting a namespace removes its veths only asynchronously.
    await ip("link", "del", veth_name(pod_uid), check=False)
    await delete_by_name(netns_name(pod_uid))
    if pod_ip:
        await ip("neigh", "flush", "to", pod_ip, check=False)


async def delete_by_name(name: str) -> None:
    await ip("netns", "del", name, check=False)
    shutil.rmtree(NETNS_ETC / name, ignore_errors=True)


async def list_ours() -> list[str]:
    """Every network namespace this node created (by prefix), also from an earlier run."""
    out = await ip("netns", "list", check=False)
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(NETNS_PREFIX)]


async def list_our_veths() -> list[str]:
    out = await ip("-o", "link", "show", check=False)
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [n for n in names if n.startswith(VETH_PREFIX)]
