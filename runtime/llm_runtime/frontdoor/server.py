"""The front door's process: the proxy, Health, reflection, /metrics and the config watcher.

Lifecycle:
1. start: the gRPC and metrics ports open; the config file is read at once. Health answers
   NOT_SERVING and proxied calls UNAVAILABLE until a valid config was read (a ConfigMap that is
   not mounted yet is waited for, polled like any change).
2. serving: Health SERVING (for "" and llm.runtime.v1.Runtime); every config change is applied
   to the next request; a bad one is refused and the last good one stays.
3. drain (SIGTERM/SIGINT): Health NOT_SERVING, the server stops accepting calls (GOAWAY: clients
   reconnect to another replica), in-flight calls get `grace_seconds` to finish, then the rest
   are cancelled (which cancels their backend calls) and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import prometheus_client
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from llm_runtime.api import contract
from llm_runtime.api.client import RUNTIME_SERVICE
from llm_runtime.frontdoor import metrics, proxy, routing, split, watch

log = logging.getLogger(__name__)

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclasses.dataclass(frozen=True)
class Settings:
    config: Path
    host: str = "0.0.0.0"
    port: int = contract.RUNTIME_GRPC_PORT
    metrics_port: int = contract.RUNTIME_METRICS_PORT
    grace_seconds: float = 30.0
    max_connection_age_seconds: float = 30.0
    max_connection_age_grace_seconds: float = 300.0
    poll_seconds: float = watch.DEFAULT_POLL_SECONDS


class FrontDoor:
    """One front door's servers and state; `run()` drives it from signals."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = metrics.FrontdoorMetrics()
        self.splitter = split.Splitter()
        self.channels = proxy.Channels(grace_seconds=settings.grace_seconds)
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]  # stubs lack aio
        self.watcher = watch.ConfigWatcher(
            settings.config,
            on_config=self._apply,
            on_result=lambda result: self.metrics.reloaded(result.value),
            poll_seconds=settings.poll_seconds,
        )
        self.port = 0
        self.metrics_port = 0
        self._server: aio.Server | None = None
        self._http: WSGIServer | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._health_tasks: set[asyncio.Task[None]] = set()

    def _apply(self, config: routing.RoutingConfig) -> None:
        """A valid config: route the next request by it, connect to its targets, say SERVING."""
        self.splitter.update(config)
        self.metrics.configured(config)
        self.channels.retain(config)
        for service in ("", RUNTIME_SERVICE):
            task = asyncio.create_task(self.health.set(service, _SERVING))
            self._health_tasks.add(task)
            task.add_done_callback(self._health_tasks.discard)

    async def start(self) -> None:
        for service in ("", RUNTIME_SERVICE):
            await self.health.set(service, _NOT_SERVING)
        age = proxy.connection_age_options(
            self.settings.max_connection_age_seconds,
            self.settings.max_connection_age_grace_seconds,
        )
        self._server = aio.server(options=[*proxy.SERVER_OPTIONS, *age])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        services = (RUNTIME_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(services, self._server)
        self._server.add_generic_rpc_handlers(
            [proxy.Proxy(self.splitter, self.channels, self.metrics)]
        )
        self.port = self._server.add_insecure_port(f"{self.settings.host}:{self.settings.port}")
        await self._server.start()
        self._http, _ = prometheus_client.start_http_server(
            self.settings.metrics_port, addr=self.settings.host, registry=self.metrics.registry
        )
        self.metrics_port = self._http.server_port
        self.watcher.check()
        await asyncio.gather(*self._health_tasks)
        self._watch_task = asyncio.create_task(self.watcher.run(), name="watch-config")
        log.info(
            "listening: grpc %s:%d, metrics :%d/metrics, config %s",
            self.settings.host,
            self.port,
            self.metrics_port,
            self.settings.config,
        )

    async def drain(self) -> None:
        """Stop accepting calls, let in-flight ones finish within the grace, close everything."""
        log.info("draining: grace %.1fs", self.settings.grace_seconds)
        await self.health.enter_graceful_shutdown()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        if self._server is not None:
            await self._server.stop(self.settings.grace_seconds)
        await self.channels.close()
        if self._http is not None:
            await asyncio.to_thread(self._http.shutdown)
            self._http.server_close()
        log.info("drained")


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[FrontDoor]:
    """A started front door inside this event loop (tests, benchmarks), drained on exit."""
    door = FrontDoor(settings)
    await door.start()
    try:
        yield door
    finally:
        await door.drain()


async def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT, then drain; exit 0."""
    door = FrontDoor(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await door.start()
    await stop.wait()
    await door.drain()
    return 0
