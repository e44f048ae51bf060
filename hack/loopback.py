"""One helper every test and benchmark that starts its own server needs."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now. Servers that take port 0 report their own port and
    need none of this; this is for those told a port up front (a config file, a command line).
    Another process may take it before it is used: callers bind it at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
