"""The host bridge `llmop0` (198.18.0.1/16): the pods' gateway and the apiserver's advertised address.

The control plane creates it before the apiserver starts, because `--advertise-address=198.18.0.1`
is what the `kubernetes` Service's endpoints point at and what pods dial. The node agent calls the
same `ensure_bridge()` when it starts first. Both functions are idempotent and synchronous.
"""

from __future__ import annotations

import json
import subprocess

BRIDGE = "llmop0"
GATEWAY_CIDR = "198.18.0.1/16"
# The Service range. Every ClusterIP the proxy serves is a /32 on the bridge (the local table wins);
# this route makes any other address in the range fail here instead of following the default route
# off the machine: cluster traffic must never leave it.
SERVICE_CIDR = "198.19.0.0/16"


class BridgeError(Exception):
    """An `ip` command that shapes the bridge failed."""


def _ip(*args: str, check: bool = True) -> str:
    """Run `ip ARGS`; return stdout, raise BridgeError on failure when check is set."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise BridgeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def link_exists(name: str = BRIDGE) -> bool:
    """Whether a network link of that name exists in the host namespace."""
    return bool(_ip("-o", "link", "show", "dev", name, check=False).strip())


def addresses(name: str = BRIDGE) -> list[str]:
    """The IPv4 addresses (CIDR form) the link holds, empty when it does not exist."""
    out = _ip("-j", "-4", "addr", "show", "dev", name, check=False).strip()
    if not out:
        return []
    return _cidrs(json.loads(out))


def _cidrs(ip_json: list[dict[str, object]]) -> list[str]:
    """Pure: pull `local/prefixlen` pairs out of `ip -j addr` output."""
    found: list[str] = []
    for link in ip_json:
        infos = link.get("addr_info", [])
        assert isinstance(infos, list)
        found.extend(f"{a['local']}/{a['prefixlen']}" for a in infos if a.get("family") == "inet")
    return found


def ensure_bridge(name: str = BRIDGE, cidr: str = GATEWAY_CIDR) -> None:
    """Create the bridge if missing, give it the gateway address, bring it up (idempotent)."""
    if not link_exists(name):
        # Racing the node agent is harmless: whoever loses sees "File exists" and re-checks.
        created = subprocess.run(
            ["ip", "link", "add", name, "type", "bridge"], capture_output=True, check=False
        )
        if created.returncode != 0 and not link_exists(name):
            raise BridgeError(f"cannot create bridge {name}: {created.stderr.decode().strip()}")
    if cidr not in addresses(name):
        _ip("addr", "replace", cidr, "dev", name)
    _ip("link", "set", name, "up")
    _ip("route", "replace", "unreachable", SERVICE_CIDR)


def delete_bridge(name: str = BRIDGE) -> None:
    """Remove the bridge and with it its address (idempotent). Pod veths are the node's to delete."""
    if link_exists(name):
        _ip("link", "del", name)
    if _ip("route", "show", "type", "unreachable", SERVICE_CIDR, check=False).strip():
        _ip("route", "del", "unreachable", SERVICE_CIDR)
