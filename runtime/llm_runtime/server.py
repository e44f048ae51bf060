"""The runtime's process: gRPC (Runtime, Health, reflection), the OpenAI-compatible HTTP API,
the Prometheus endpoint, and their lifecycle.

Lifecycle, as the kubelet and clients see it:
1. start: all ports open at once (gRPC, the plaintext health-only port, the OpenAI-compatible
   HTTP API, metrics); Health answers NOT_SERVING, Generate UNAVAILABLE and HTTP 503 while the
   model loads (in a daemon thread, so the event loop keeps answering probes).
2. ready: the engine started and its warm-up generation succeeded -> Health SERVING.
3. drain (SIGTERM/SIGINT): Health NOT_SERVING, new calls UNAVAILABLE (HTTP 503), in-flight calls get
   `grace_seconds` to finish (then `server.stop` cancels the rest, which frees their slots),
   the engine stops, the process exits 0. A model that fails to load exits 1.

Connections do not live for ever: each is closed `max_connection_age_seconds` after it opened
(a GOAWAY: the client reconnects, re-resolving its target, so existing clients reach new pods),
and the calls still running on it get `max_connection_age_grace_seconds` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
import prometheus_client
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from llm_runtime import auth, config, decoding, metrics, servicer, types
from llm_runtime.api.v1 import runtime_pb2
from llm_runtime.openai_api import app as openai_app
from llm_runtime.openai_api import serve as openai_serve

log = logging.getLogger(__name__)

RUNTIME_SERVICE: str = runtime_pb2.DESCRIPTOR.services_by_name["Runtime"].full_name
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclasses.dataclass(frozen=True)
class BuiltEngine:
    """An engine ready to `start()`, and how long loading its model took (a metric)."""

    engine: types.Engine
    load_seconds: float


EngineFactory = Callable[[config.Settings], Awaitable[BuiltEngine]]


def _build_engine(settings: config.Settings) -> BuiltEngine:
    """Import torch, load the model and build the engine: all slow, all off the event loop."""
    from llm_runtime import engine, models
    from llm_runtime.models import loading

    path = settings.model or str(models.default_model_path())
    loaded = loading.load_model(path, dtype=settings.dtype, device=settings.device)
    limits = engine.EngineLimits(
        max_batch_size=settings.max_batch_size,
        max_waiting=settings.max_waiting,
        max_input_tokens=settings.max_input_tokens,
        max_new_tokens=settings.max_new_tokens,
        prefill_token_budget=settings.prefill_token_budget,
        max_prompt_bytes=config.prompt_bytes_limit(settings),
    )
    return BuiltEngine(
        engine=engine.BatchingEngine(loaded, limits), load_seconds=loaded.load_seconds
    )


async def load_engine(settings: config.Settings) -> BuiltEngine:
    """The default factory: `_build_engine` in a daemon thread, so probes keep being answered
    and a SIGTERM during a long load exits at once (asyncio.run would join a pool thread)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[BuiltEngine] = loop.create_future()

    def target() -> None:
        try:
            built = _build_engine(settings)
        except BaseException as exc:  # handed to the awaiting task, which logs it
            _settle(loop, functools.partial(done.set_exception, exc), done)
        else:
            _settle(loop, functools.partial(done.set_result, built), done)

    threading.Thread(target=target, name="load-model", daemon=True).start()
    return await done


def _settle(
    loop: asyncio.AbstractEventLoop, action: Callable[[], None], future: asyncio.Future[Any]
) -> None:
    """Run `action` on the loop unless the future was abandoned (drain before ready) or the
    loop is gone (the process is exiting)."""

    def apply() -> None:
        if not future.done():
            action()

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(apply)


def advertised_info(info: types.ModelInfo, settings: config.Settings) -> types.ModelInfo:
    """The engine's ModelInfo with the operator's name/revision (LLM_MODEL_*) when set."""
    return dataclasses.replace(
        info,
        name=settings.model_name or info.name,
        revision=settings.model_revision or info.revision,
    )


# Keepalive, compatible with the clients' (llm_runtime.api.client.KEEPALIVE_OPTIONS, a ping every
# 20 s, idle or not): the server pings each client every 30 s and drops one that does not answer
# within 10 s (its streams' batch slots are freed), and it accepts client pings down to one per 10 s
# even on a connection with no call. Without `permit_without_calls` an idle connection may be
# pinged only every 2 h: a client's third early ping gets GOAWAY too_many_pings and its connection
# is closed, and the client then doubles its keepalive time.
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
)
_MAX_INT_ARG = 2**31 - 1  # gRPC channel arguments are C ints


def _millis(seconds: float) -> int:
    return min(round(seconds * 1000), _MAX_INT_ARG)


def grpc_options(settings: config.Settings) -> list[tuple[str, int]]:
    """The gRPC server's channel arguments: no port sharing, keepalive, the message size bound,
    the connection age."""
    # No SO_REUSEPORT: a second runtime on the same port must fail, not share it silently.
    # A message over max_message_bytes is refused by gRPC (RESOURCE_EXHAUSTED) before it is parsed.
    options = [
        ("grpc.so_reuseport", 0),
        *KEEPALIVE_OPTIONS,
        ("grpc.max_receive_message_length", min(settings.max_message_bytes, _MAX_INT_ARG)),
    ]
    if settings.max_connection_age_seconds > 0:  # 0: gRPC's default, connections live for ever
        options += [
            ("grpc.max_connection_age_ms", max(1, _millis(settings.max_connection_age_seconds))),
            (
                "grpc.max_connection_age_grace_ms",
                _millis(settings.max_connection_age_grace_seconds),
            ),
        ]
    return options


def _read_tls(settings: config.Settings) -> grpc.ServerCredentials | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    pair = (settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())
    return grpc.ssl_server_credentials([pair])


class RuntimeServer:
    """One serving process's servers and state; `run()` drives it from signals."""

    def __init__(
        self, settings: config.Settings, *, engine_factory: EngineFactory = load_engine
    ) -> None:
        self.settings = settings
        self.state = servicer.ServingState()
        self.metrics = metrics.RuntimeMetrics()
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]  # stubs lack aio
        self.grpc_port = 0
        self.metrics_port = 0
        self.load_failed = asyncio.Event()
        self._factory = engine_factory
        self._engine: types.Engine | None = None
        self._ready = asyncio.Event()
        self._load_task: asyncio.Task[None] | None = None
        self._server: aio.Server | None = None
        self._health_server: aio.Server | None = None
        self.health_port = 0
        self.http_port = 0
        self._http: WSGIServer | None = None
        self._openai: openai_serve.HttpServer | None = None

    async def start(self) -> None:
        """Open both ports and start loading the model in the background."""
        for service in ("", RUNTIME_SERVICE):
            await self.health.set(service, _NOT_SERVING)
        self._server = aio.server(
            interceptors=self._interceptors(),
            options=grpc_options(self.settings),
            maximum_concurrent_rpcs=config.concurrent_rpcs_limit(self.settings),
        )
        decoding.add_runtime_servicer(  # bytes that do not parse: INVALID_ARGUMENT, not UNKNOWN
            servicer.RuntimeServicer(self.state, log_payloads=self.settings.log_payloads),
            self._server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        services = (RUNTIME_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(services, self._server)
        address = f"{self.settings.host}:{self.settings.grpc_port}"
        creds = _read_tls(self.settings)
        self.grpc_port = (
            self._server.add_secure_port(address, creds)
            if creds
            else self._server.add_insecure_port(address)
        )
        await self._server.start()
        await self._start_health_port()
        await self._start_openai_port()
        self._http, _ = prometheus_client.start_http_server(
            self.settings.metrics_port, addr=self.settings.host, registry=self.metrics.registry
        )
        self.metrics_port = self._http.server_port
        age = self.settings.max_connection_age_seconds
        grace = self.settings.max_connection_age_grace_seconds
        log.info(
            "listening: grpc %s:%d (%s), metrics :%d/metrics; %s",
            self.settings.host,
            self.grpc_port,
            "tls" if creds else "plaintext",
            self.metrics_port,
            f"connections closed after {age:g}s ({grace:g}s grace)" if age else "no connection age",
        )
        self._load_task = asyncio.create_task(self._load(), name="load-model")

    async def _start_health_port(self) -> None:
        """The plaintext, health-only port (unless `health_port` is 0): the same HealthServicer,
        so the same status, without TLS or the token, for the kubelet's gRPC probe, which can
        speak neither. It serves nothing else, so it exposes no prompt and no model."""
        if not self.settings.health_port:
            return
        self._health_server = aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health_server)
        address = f"{self.settings.host}:{self.settings.health_port}"
        self.health_port = self._health_server.add_insecure_port(address)
        await self._health_server.start()
        log.info(
            "listening: health-only grpc %s:%d (plaintext)", self.settings.host, self.health_port
        )

    async def _start_openai_port(self) -> None:
        """The OpenAI-compatible HTTP API (unless `http_port` is 0) over the same serving state,
        so it loads, serves and drains with gRPC, with the same TLS files and token."""
        if not self.settings.http_port:
            return
        self._openai = await openai_serve.serve(
            openai_app.build_app(self.state, self.settings),
            host=self.settings.host,
            port=self.settings.http_port,
            tls_cert=self.settings.tls_cert,
            tls_key=self.settings.tls_key,
        )
        self.http_port = self._openai.port
        log.info(
            "listening: openai http %s:%d (%s)",
            self.settings.host,
            self.http_port,
            "tls" if self.settings.tls_cert else "plaintext",
        )

    def _interceptors(self) -> list[aio.ServerInterceptor[object, object]]:
        if self.settings.auth_token_file is None:
            return []
        token = config.read_token(self.settings.auth_token_file)
        return [auth.BearerTokenInterceptor(token, on_denied=self._count_denied)]

    def _count_denied(self, method: str) -> None:
        serving = self.state.serving
        if serving is not None and method in metrics.METHODS:
            serving.metrics.reject(method=method, code=grpc.StatusCode.UNAUTHENTICATED.name)

    async def _load(self) -> None:
        """Load, start (the engine warms up) and only then report SERVING."""
        try:
            built = await self._factory(self.settings)
            self._engine = built.engine
            await built.engine.start()
        except Exception:
            log.exception("the model failed to load or warm up; exiting")
            self.load_failed.set()
            return
        info = advertised_info(built.engine.info, self.settings)
        model_metrics = self.metrics.for_model(
            model=info.name,
            revision=info.revision,
            load_seconds=built.load_seconds,
            stats=built.engine.stats,
        )
        self.state.serving = servicer.Serving(engine=built.engine, metrics=model_metrics, info=info)
        for service in ("", RUNTIME_SERVICE):
            await self.health.set(service, _SERVING)
        self._ready.set()
        log.info(
            "serving %s@%s (%s on %s, loaded in %.1fs)",
            info.name,
            info.revision,
            info.dtype,
            info.device,
            built.load_seconds,
        )

    async def wait_ready(self) -> None:
        """Return once SERVING; raise if the model failed to load."""
        ready = asyncio.create_task(self._ready.wait())
        failed = asyncio.create_task(self.load_failed.wait())
        await asyncio.wait({ready, failed}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        failed.cancel()
        if self.load_failed.is_set():
            raise RuntimeError("the model failed to load; see the log")

    async def drain(self) -> None:
        """Stop taking work, let in-flight calls finish within the grace, then stop everything."""
        grace = self.settings.grace_seconds
        log.info("draining: %d calls in flight, grace %.1fs", self.state.in_flight, grace)
        self.state.draining = True
        await self.health.enter_graceful_shutdown()
        # The server keeps answering during the grace, so probes read NOT_SERVING and new calls
        # get a clear UNAVAILABLE; generation calls still running after it are cancelled by
        # stop(0), which frees their slots. Only long-lived Health.Watch streams are cut at once.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.state.wait_idle(), timeout=grace)
        servers = [s for s in (self._server, self._health_server) if s is not None]
        stopping = [s.stop(0) for s in servers]
        if self._openai is not None:  # its responses still running are cancelled, like gRPC's
            stopping.append(self._openai.stop(grace=0))
        await asyncio.gather(*stopping)
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._load_task
        # The metrics thread notices shutdown within its 0.5 s poll: overlap that with the engine.
        stops = [] if self._http is None else [asyncio.to_thread(self._http.shutdown)]
        if self._engine is not None:
            stops.append(self._engine.stop())
        await asyncio.gather(*stops)
        if self._http is not None:
            self._http.server_close()
        log.info("drained")


@contextlib.asynccontextmanager
async def serving(
    settings: config.Settings,
    *,
    engine_factory: EngineFactory = load_engine,
    wait_ready: bool = True,
) -> AsyncIterator[RuntimeServer]:
    """A started server inside this event loop (tests, benchmarks, embedding), drained on exit."""
    server = RuntimeServer(settings, engine_factory=engine_factory)
    await server.start()
    try:
        if wait_ready:
            await server.wait_ready()
        yield server
    finally:
        await server.drain()


async def run(settings: config.Settings, *, engine_factory: EngineFactory = load_engine) -> int:
    """Serve until SIGTERM/SIGINT (exit 0 after draining) or a failed model load (exit 1)."""
    server = RuntimeServer(settings, engine_factory=engine_factory)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    stopped = asyncio.create_task(stop.wait())
    failed = asyncio.create_task(server.load_failed.wait())
    await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    failed.cancel()
    await server.drain()
    return 1 if server.load_failed.is_set() else 0
