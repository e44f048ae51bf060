"""Run the app with uvicorn inside the runtime's event loop, beside the gRPC server.

uvicorn's `Server.serve` normally takes over SIGINT/SIGTERM; the runtime process owns those (its
drain stops gRPC and HTTP together), so `_EmbeddedServer` leaves the signal handlers alone.
The socket is bound here, before serving starts, so port 0 gives a free port that `port` reports.
TLS uses the same certificate and key files as gRPC. uvicorn's access log is off: it would add
a line per request beside the runtime's own (which never holds a prompt or an output).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette import types as asgi

_STARTUP_POLL_SECONDS = 0.01


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """A started server: `port` is the bound port; `stop` shuts it down gracefully."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], port: int) -> None:
        self._server = server
        self._task = task
        self.port = port

    async def stop(self, *, grace: float = 0.0) -> None:
        """Stop accepting, let responses in progress finish within `grace` seconds, then cancel
        what is left (which closes their engine iterators)."""
        # uvicorn's setting is whole seconds: round up, never cut a grace short. At least 1 s,
        # as 0 always times out (and logs an error) even with nothing left to wait for.
        self._server.config.timeout_graceful_shutdown = max(1, math.ceil(grace))
        self._server.should_exit = True
        await self._task


def config_for(
    app: asgi.ASGIApp,
    *,
    host: str,
    port: int,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> uvicorn.Config:
    """uvicorn's settings: no lifespan, no websockets, no access log, no server header, and no
    change to the process's logging configuration."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=None if tls_cert is None else str(tls_cert),
        ssl_keyfile=None if tls_key is None else str(tls_key),
        lifespan="off",
        ws="none",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
    )


async def serve(
    app: asgi.ASGIApp,
    *,
    host: str,
    port: int,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> HttpServer:
    """Start serving `app`; return once it accepts connections (raise if it could not start)."""
    config = config_for(app, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)
    config.load()  # TLS files are read here: a bad one fails now, not on the first connection
    sock = config.bind_socket()
    bound_port = int(sock.getsockname()[1])
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="openai-http")
    while not server.started:
        if task.done():
            sock.close()
            task.result()  # raises why it stopped
            raise RuntimeError("the HTTP server stopped during startup")
        await asyncio.sleep(_STARTUP_POLL_SECONDS)
    return HttpServer(server, task, bound_port)
