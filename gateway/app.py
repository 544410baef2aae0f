"""`Gateway`: builds every component from the config and runs them. The one place where the
pipeline is wired.

Start order is consumers first (exporters, then the pipeline's producers: receivers and
observers), stop order producers first, so nothing is dropped on the way up or down.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import uvicorn
from fastapi import FastAPI
from fastapi.exception_handlers import http_exception_handler
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from gateway import __version__
from gateway.catalogue import by_name
from gateway.config import ConfigError, GatewayConfig
from gateway.config_files import ConfigFiles, Reloadable
from gateway.exporters.disk_queue import DiskQueue, QueueInUse, QueuePathError
from gateway.exporters.otlp_forwarder import OtlpForwarder
from gateway.exporters.prometheus.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    render,
    wants_openmetrics,
)
from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from gateway.health import (
    Check,
    CheckOutcome,
    Observation,
    PipelineCounters,
    Status,
    build_registry,
    health_router,
)
from gateway.memory import MemoryLimiter
from gateway.observers import SystemObserver, metrics_current_router
from gateway.pipeline import Component, Consumer, Pipeline
from gateway.pipeline.batch import MetricsBatch, count_points
from gateway.pipeline.lifecycle import Graceful, Lifecycle, Timed, Untimed
from gateway.processors.cardinality import OverflowFolder
from gateway.processors.views import ViewProcessor
from gateway.receivers.auth import ReadGuard, TokenAuth
from gateway.receivers.http_guard import GuardCounters, HeaderLimits, guarded_protocol
from gateway.receivers.limits import InputLimits
from gateway.receivers.otlp_grpc import OtlpGrpcReceiver
from gateway.receivers.otlp_http import OtlpHttpReceiver
from gateway.secret_reloader import SecretReloader
from gateway.selftelemetry import SelfTelemetry
from gateway.status import status_router

__all__ = ["Gateway"]

_GZIP_MIN_BYTES = 1024

log = logging.getLogger("gateway")


class _InternalProducers:
    """The pipeline entry for in-process producers (observers, health checks): counts their
    points for self-telemetry, then hands the batch on."""

    def __init__(self, pipeline: Consumer, telemetry: SelfTelemetry) -> None:
        self._pipeline = pipeline
        self._telemetry = telemetry

    def consume(self, batch: MetricsBatch) -> None:
        self._telemetry.record_internal(batch.source or "internal", count_points(batch.request))
        self._pipeline.consume(batch)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway installs its own so that it can
    turn not-ready before it stops accepting."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


# Descriptors kept for everything but HTTP connections: gRPC, the disk queue, /proc, logs.
_RESERVED_FILES = 256


def _raise_open_files_limit(max_connections: int) -> int:
    """Raise the soft limit on open files to the hard one (Debian's default soft limit, 1,024,
    is what ~1,100 silent sockets exhausted) and return the HTTP connection limit that leaves
    `_RESERVED_FILES` descriptors free: `max_connections`, or less if the limit is lower."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
    except ImportError:  # pragma: no cover - not on POSIX
        return max_connections
    room = max(16, soft - _RESERVED_FILES)
    if max_connections == 0 or max_connections > room:
        if max_connections:
            log.warning(
                "limits.max_connections %d is above what %d open files allow: using %d",
                max_connections,
                soft,
                room,
            )
        return room
    return max_connections


class Gateway:
    def __init__(self, config: GatewayConfig, files: ConfigFiles) -> None:
        """`files`: what the config names outside itself, read and checked by the config layer
        (`ConfigFiles.read(config)`) before the gateway is built; nothing here reads them."""
        self.config = config
        self.files = files
        ns = config.prometheus.namespace
        settings = StoreSettings(
            expiration_seconds=config.prometheus.metric_expiration_seconds,
            resource_to_labels=config.prometheus.resource_to_labels,
            target_info=config.prometheus.target_info,
            exemplars=config.prometheus.exemplars,
            cardinality=config.cardinality,
        )
        #: what one request and one data point may carry; the store applies the per-point part
        #: when it first sees a series, so known series pay nothing for it
        limits = InputLimits(config.limits)
        self.input_limits = limits
        #: everything the pipeline delivers: services' data, observers, health checks
        self.store = SeriesStore(
            settings, point_check=limits.point_problem if limits.checks_points else None
        )
        #: the gateway's own counters, kept apart so that `/metrics/self` can serve them alone
        #: (with a Collector, Prometheus scrapes the gateway for these only)
        self.self_store = SeriesStore(settings)
        self.forwarder: OtlpForwarder | None = None
        #: the forwarder's queue when it is on disk
        self.disk_queue: DiskQueue | None = None
        if config.forwarder.endpoint:
            q = config.queue
            queue = None
            if q.kind == "disk":
                try:
                    queue = DiskQueue(q.path, max_bytes=q.max_bytes, full_policy=q.full_policy)
                except (QueueInUse, QueuePathError) as exc:
                    raise ConfigError("queue", [f"queue.path: {exc}"]) from None
                except OSError as exc:
                    raise ConfigError("queue", [f"queue.path: {exc}"]) from None
            self.disk_queue = queue
            self.forwarder = OtlpForwarder(
                config.forwarder, queue, full_retry_after_seconds=q.retry_after_seconds
            )
        exporters: list[Consumer] = []
        if self.forwarder is not None:
            # Forwarded batches carry the store's overflow decisions (`batch.overflowed`).
            exporters.append(OverflowFolder(self.store, self.forwarder))
        #: services' semconv names -> the catalogue, before the fan-out so that the forwarder
        #: sends the catalogue's names too
        self.views = ViewProcessor(config.views, namespace=ns)
        # The store is the last processor, not an exporter in the fan-out: what it refuses or
        # folds holds for the forward path by construction (it once ran first in the fan-out
        # only because the list said so).
        self.pipeline = Pipeline(processors=[self.views, self.store], exporters=exporters)

        instance = f"{socket.gethostname()}:{config.server.http_port}"
        self.resource: Mapping[str, str] = {
            "service.instance.id": instance,
            "service.version": __version__,
            **config.telemetry.resource_attributes,
            "service.name": config.telemetry.service_name,
        }
        #: backpressure: refuses ingest above the soft RSS limit
        self.memory_limiter = MemoryLimiter(config.memory_limiter)
        self.telemetry = SelfTelemetry(self.resource, namespace=ns)
        #: connections the HTTP listener closed at its header and connection limits
        self.http_guard = GuardCounters()
        tokens = files.ingest_tokens
        auth = TokenAuth(tokens) if tokens is not None else None
        #: the ingest tokens' check, shared by both receivers so that a reload reaches both
        self.ingest_auth = auth
        #: the read tokens' check, shared with the `ReadGuard` so that a reload reaches it
        self.read_auth = TokenAuth({"read": files.read_tokens}) if files.read_tokens else None
        #: re-reads the token files and the TLS pair when they change (or on SIGHUP)
        self.secret_reloader = SecretReloader(config, files, self._apply_reload)
        #: builds the HTTP listener's TLS context from the files, as uvicorn does at start;
        #: the newest one built for a reload (None: uvicorn's own)
        self._new_http_context: Callable[[], ssl.SSLContext] | None = None
        self._http_context: ssl.SSLContext | None = None
        self._register_self_metrics()
        self.store.reserve(
            [
                (by_name(n).prometheus_name(ns), by_name(n).prometheus_type)
                for n in self.telemetry.names()
            ],
            owner=self.resource,
        )
        #: where in-process producers hand their batches
        self.internal: Consumer = _InternalProducers(self.pipeline, self.telemetry)

        admission: list[Callable[[], None]] = []
        if self.memory_limiter.enabled:
            admission.append(self.memory_limiter.check)
        if self.forwarder is not None:
            admission.append(self.forwarder.check_room)
        self.http_receiver = OtlpHttpReceiver(
            self.pipeline,
            self.telemetry,
            max_body_bytes=config.limits.max_body_bytes,
            auth=auth,
            admission=admission,
            limits=limits,
            max_inflight_bytes=config.limits.max_inflight_bytes,
        )
        self.grpc_receiver = (
            OtlpGrpcReceiver(
                self.pipeline,
                self.telemetry,
                host=config.server.host,
                port=config.server.grpc_port,
                max_message_bytes=config.limits.max_body_bytes,
                auth=auth,
                admission=admission,
                limits=limits,
                tls=files.tls,
                max_concurrent_rpcs=config.limits.max_concurrent_rpcs,
                max_metadata_bytes=config.limits.max_header_bytes,
                handshake_timeout_seconds=config.limits.header_read_timeout_seconds,
            )
            if config.server.grpc_port
            else None
        )
        #: other components (observers, health) in start order
        self.components: list[Component] = []
        #: host and process metrics into the pipeline; its history serves /api/metrics/current
        self.observer: SystemObserver | None = None
        if config.observers.enabled:
            self.observer = SystemObserver(
                self.internal, config.observers, namespace=ns, resource=self.resource
            )
            self.components.append(self.observer)
        #: health checks (/live, /ready, /health, /api/health); metrics into the pipeline
        counts = self.store.counters
        self.health = build_registry(
            config.health,
            version=__version__,
            consumer=self.internal,
            namespace=ns,
            resource=self.resource,
            pipeline=PipelineCounters(
                lambda: counts.accepted + sum(counts.rejected.values()),
                lambda: sum(counts.rejected.values()),
            ),
            upstream=self.forwarder,
        )
        if self.memory_limiter.enabled:
            # Refusing ingest for memory is not ready: Kubernetes should route elsewhere.
            self.health.add(
                Check(
                    "memory_limiter",
                    self._memory_check,
                    timeout=1.0,
                    interval=5.0,
                    required=True,
                    component_type="component",
                )
            )
        if self.secret_reloader.enabled:
            # What was in use still works after a failed reload: shown, not a reason to route
            # traffic away.
            self.health.add(
                Check(
                    "secret_reload",
                    self._secret_reload_check,
                    timeout=1.0,
                    interval=1.0,
                    required=False,
                    component_type="component",
                )
            )
            self.components.append(self.secret_reloader)
        self.components.append(self.health)
        #: every component in start order, consumers first (stopped in reverse, producers
        #: first); adding one is one line here
        grace = config.server.shutdown_grace_seconds
        stages: list[Timed] = [Untimed(self.memory_limiter)]
        if self.forwarder is not None:
            # Flushes last, with what is left but a margin for closing its connections.
            stages.append(Graceful(self.forwarder, margin=min(1.0, grace / 10)))
        if self.grpc_receiver is not None:
            # A quarter of what is left for in-flight calls; the rest is the forwarder's.
            stages.append(Graceful(self.grpc_receiver, share=0.25))
        stages += [Untimed(component) for component in self.components]
        self.lifecycle = Lifecycle(stages)
        self.accepting = False
        self.app = self._build_app()
        self._server: _Server | None = None
        self._stop_requested: float | None = None

    # ------------------------------------------------------------------ wiring

    async def _memory_check(self) -> CheckOutcome:
        limiter = self.memory_limiter
        status = Status.FAIL if limiter.refusing or limiter.error else Status.PASS
        output = "above the soft limit: ingest refused" if limiter.refusing else ""
        if limiter.error:
            output = f"{limiter.error}; the limit is not enforced"
        used = Observation(
            "utilization", limiter.last_rss >> 20, "MiB", status=status, output=output
        )
        return CheckOutcome.of(used)

    async def _apply_reload(self, files: ConfigFiles, which: Reloadable) -> None:
        """A reload that checked out: a token set swapped in one assignment (both receivers
        share `ingest_auth`; the read guard has `read_auth`), or the TLS pair for new
        handshakes on both listeners."""
        if which == "ingest" and self.ingest_auth is not None and files.ingest_tokens:
            self.ingest_auth.replace(files.ingest_tokens)
        elif which == "read" and self.read_auth is not None and files.read_tokens:
            self.read_auth.replace({"read": files.read_tokens})
        elif which == "tls" and files.tls is not None:
            if self._new_http_context is not None:
                # Built off the loop (it reads the files); raises if they changed again since
                # the check and no longer fit, and then neither listener changes.
                self._http_context = await asyncio.to_thread(self._new_http_context)
            if self.grpc_receiver is not None:
                self.grpc_receiver.replace_tls(files.tls)
        self.files = files

    def _http_ssl_context(
        self, config: uvicorn.Config, default: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        """uvicorn's context for the HTTP listener, which hands each new handshake to the
        newest reloaded context. An asyncio server keeps the context it started with, and
        calling `load_cert_chain` on it again would read files on the event loop while
        handshakes use it; switching a connection's context in the SNI callback is the
        standard library's documented way (called with or without SNI)."""
        self._new_http_context = default
        context = default()
        context.sni_callback = self._select_http_context
        return context

    def _select_http_context(
        self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        newest = self._http_context
        if newest is not None and newest is not context:
            connection.context = newest

    async def _secret_reload_check(self) -> CheckOutcome:
        reloader = self.secret_reloader
        problems = [p for file_problems in reloader.problems.values() for p in file_problems]
        if reloader.error is not None:
            problems.append(f"the reload task failed: {reloader.error}")
        status = Status.FAIL if problems else Status.PASS
        output = "; ".join(problems)
        if problems:
            output = f"last reload failed, what is in use stays: {output}"
        reloads = Observation(
            "reloads", reloader.reloads["success"], "reloads", status=status, output=output
        )
        return CheckOutcome.of(reloads)

    def _register_self_metrics(self) -> None:
        t, store, views = self.telemetry, self.store, self.views
        t.gauge("gateway.active_series", lambda: float(store.series_count))
        cap = float(store.limiter.config.max_series_total)
        t.gauge("gateway.series.limit", lambda: cap)
        t.counter("gateway.points.capped", "", lambda: {"": store.counters.capped})
        input_limits = self.input_limits

        def rejected() -> dict[str, int]:
            merged = dict(store.counters.rejected)
            for k, v in input_limits.rejected.items():
                merged[k] = merged.get(k, 0) + v
            return merged

        t.counter("gateway.points.rejected", "reason", rejected)
        forwarder = self.forwarder

        def dropped() -> dict[str, int]:
            merged = dict(store.counters.dropped)
            for source in (views.counters.dropped, store.limiter.counters.dropped):
                for k, v in source.items():
                    merged[k] = merged.get(k, 0) + v
            if forwarder is not None:
                for k, v in forwarder.dropped().items():
                    merged[k] = merged.get(k, 0) + v
            return merged

        t.counter("gateway.points.dropped", "reason", dropped)
        limits = store.limiter.counters
        t.counter("gateway.points.overflowed", "metric", lambda: limits.overflowed)
        guard = self.http_guard
        t.counter("gateway.connections.refused", "reason", lambda: guard.refused)
        memory = self.memory_limiter
        reloader = self.secret_reloader

        def background_errors() -> dict[str, int]:
            out = {"memory_limiter": memory.errors}
            if forwarder is not None:
                out["forwarder"] = forwarder.counters.errors
            if reloader.enabled:
                out["secret_reloader"] = reloader.errors
            return out

        t.counter("gateway.background.errors", "task", background_errors)
        t.counter("gateway.series.truncated", "metric", lambda: limits.truncated)
        if reloader.enabled:
            t.counter("gateway.config.reloads", "result", lambda: dict(reloader.reloads))
        if forwarder is not None:
            t.counter("gateway.points.forwarded", "", lambda: {"": forwarder.counters.forwarded})
            t.gauge("gateway.forward.queue.length", lambda: float(forwarder.queue_length))
            # A ratio, because the disk queue's capacity is in bytes and its length in batches.
            t.gauge("gateway.forward.queue.utilization", forwarder.queue_fill_ratio)
            if self.disk_queue is None:
                # In batches, so only for the memory queue (the disk queue's bound is bytes).
                size = float(self.config.forwarder.queue_size)
                t.gauge("gateway.forward.queue.capacity", lambda: size)
            t.counter(
                "gateway.points.redelivered", "", lambda: {"": forwarder.counters.redelivered}
            )
        disk = self.disk_queue
        if disk is not None:
            t.counter("gateway.forward.queue.corrupt", "", lambda: {"": disk.corrupt_files})

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="telemetry-gateway", version=__version__, docs_url=None, redoc_url=None)
        app.add_exception_handler(404, self._not_found)  # unknown paths are counted
        app.add_route("/v1/metrics", self.http_receiver.handle, methods=["POST"])
        app.add_route("/metrics", self._metrics, methods=["GET"])
        app.add_route("/api/metrics", self._metrics, methods=["GET"])
        app.add_route("/metrics/self", self._self_metrics, methods=["GET"])
        health = self.config.health
        app.include_router(health_router(self.health, details=health.details, token=health.token))
        if self.observer is not None:
            app.include_router(
                metrics_current_router(
                    self.observer.history,
                    namespace=self.config.prometheus.namespace,
                    history_minutes=self.config.observers.history_minutes,
                )
            )
        # The status page (/ui/) and its JSON (/api/status/...), read from the components.
        app.include_router(status_router(self))
        if self.read_auth is not None:
            app.add_middleware(ReadGuard, tokens=self.read_auth)
        return app

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        """A path no route serves is counted (`gateway.requests.refused{reason="not_found"}`):
        a service exporting to a wrong path (or sending traces here) lost its data silently.
        A route's own 404 (it matched, so `endpoint` is set) is answered as it was."""
        if "endpoint" in request.scope:
            return await http_exception_handler(request, exc)  # type: ignore[arg-type]
        self.telemetry.record_refused("http", "not_found")
        return PlainTextResponse(
            f"no such path: {request.method} {request.url.path} (OTLP metrics: POST "
            "/v1/metrics; Prometheus: GET /metrics; health: /health, /ready, /live)\n",
            status_code=404,
        )

    def _render(self, request: Request, stores: Sequence[SeriesStore]) -> Response:
        self.self_store.consume(self.telemetry.batch())
        om = wants_openmetrics(request.headers.get("accept"))
        body = render(stores, openmetrics=om)
        headers = {"Vary": "Accept, Accept-Encoding"}
        if len(body) > _GZIP_MIN_BYTES and "gzip" in request.headers.get("accept-encoding", ""):
            # Prometheus asks for gzip; level 1 shrinks an exposition about 10x for a few
            # milliseconds per megabyte.
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return Response(
            body,
            media_type=OPENMETRICS_CONTENT_TYPE if om else TEXT_CONTENT_TYPE,
            headers=headers,
        )

    async def _metrics(self, request: Request) -> Response:
        return self._render(request, (self.store, self.self_store))

    async def _self_metrics(self, request: Request) -> Response:
        return self._render(request, (self.self_store,))

    @property
    def accepting(self) -> bool:
        """The pipeline takes data: /ready needs it (false while starting and draining)."""
        return self.health.readiness().accepting

    @accepting.setter
    def accepting(self, value: bool) -> None:
        self.health.set_accepting(value)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Consumers first: the forwarder, then the producers (`self.lifecycle`)."""
        await self.lifecycle.start()

    async def shutdown(self) -> None:
        """Producers first, then flush the forwarder, all within the grace period counted from
        the stop request: the gRPC listener gets a quarter of what is left for its in-flight
        calls, the forwarder the rest but a margin for closing (with the disk queue whatever
        it cannot deliver stays on disk for the next start)."""
        self.accepting = False
        started = self._stop_requested or time.monotonic()
        await self.lifecycle.shutdown(started + self.config.server.shutdown_grace_seconds)

    def request_stop(self) -> None:
        """SIGTERM: not ready first; after `server.drain_delay_seconds` (for load balancers to
        see /ready fail) stop accepting connections, drain, flush. A second signal skips the
        rest of the delay."""
        delay = self.config.server.drain_delay_seconds
        if self.accepting and delay > 0:
            log.info("stopping: no longer ready; listeners close in %.1fs", delay)
            self.accepting = False
            asyncio.get_running_loop().call_later(delay, self._stop_listeners)
            return
        self.accepting = False
        self._stop_listeners()

    def _stop_listeners(self) -> None:
        if self._stop_requested is not None:
            return
        log.info("stopping: closing listeners, draining")
        self._stop_requested = time.monotonic()
        if self._server is not None:
            self._server.should_exit = True

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT; returns after a clean shutdown."""
        cfg = self.config.server
        lim = self.config.limits
        max_connections = _raise_open_files_limit(lim.max_connections)
        protocol = guarded_protocol(
            HeaderLimits(
                max_header_bytes=lim.max_header_bytes,
                max_header_count=lim.max_header_count,
                header_read_timeout_seconds=lim.header_read_timeout_seconds,
                max_connections=max_connections,
            ),
            self.http_guard,
        )
        uv_config = uvicorn.Config(
            self.app,
            host=cfg.host,
            port=cfg.http_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http=protocol,
            timeout_graceful_shutdown=max(1, int(cfg.shutdown_grace_seconds / 2)),
            # uvicorn takes only paths (the standard library loads a certificate chain from
            # files only): it loads the pair `ConfigFiles.read` checked before the build.
            ssl_certfile=self.config.tls.cert_file or None,
            ssl_keyfile=self.config.tls.key_file or None,
            ssl_context_factory=self._http_ssl_context if self.config.tls.enabled else None,
        )
        self._server = _Server(uv_config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            # SIGHUP re-reads the token files at once (and no longer ends the process).
            loop.add_signal_handler(signal.SIGHUP, self.secret_reloader.request)
        await self.start()
        try:
            serving = asyncio.create_task(self._server.serve())
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.01)
            if serving.done():
                await serving  # raises what made the server fail (port in use, ...)
                raise OSError(f"HTTP server on {cfg.host}:{cfg.http_port} did not start")
            self.accepting = True
            log.info(
                "telemetry-gateway %s: OTLP/HTTP and /metrics on http://%s:%d, OTLP/gRPC %s",
                __version__,
                cfg.host,
                cfg.http_port,
                f"on {cfg.host}:{self.grpc_receiver.port}" if self.grpc_receiver else "off",
            )
            await serving
        finally:
            await self.shutdown()
