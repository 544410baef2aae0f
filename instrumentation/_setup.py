"""`setup()`: one MeterProvider with a periodic OTLP exporter, a resource, and the typed meters.

Configuration follows the OpenTelemetry SDK's rules, so an operator's `OTEL_*` variables mean what
the SDK documents: an argument given in code wins, then the environment, then our default. We do
not re-implement what the SDK reads itself (`OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT`,
`OTEL_EXPORTER_OTLP_[METRICS_]HEADERS`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_SDK_DISABLED`, ...); we only read the two it leaves to its
auto-configuration: `OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL` (which exporter class to build) and
whether `OTEL_METRIC_EXPORT_INTERVAL` is set (our default interval is 5 s, not the SDK's 60 s).

Fork safety: the provider owns an export thread and a `service.instance.id`, neither of which may
be shared by forked workers. Call `setup()` in the worker, after the fork; `instrument_app()` does
that for you in the application's lifespan startup, which every uvicorn/gunicorn worker runs.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry import metrics
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from instrumentation import _asyncpg
from instrumentation._exact import hook_reader
from instrumentation._http import HttpServerMetrics
from instrumentation._settings import (
    DEFAULT_EXPORT_INTERVAL_S,
    PROTOCOLS,
    InstrumentationSettings,
    Protocol,
)
from instrumentation.semconv import DEFAULT_NAMESPACE

__all__ = ["Instrumentation", "setup"]

_log = logging.getLogger("instrumentation")


@dataclass(eq=False)
class Instrumentation:
    """What `setup()` returns: the provider (`meter_provider.get_meter(...)` for the service's
    own metrics), its resource and settings, and `shutdown()` (flushes)."""

    meter_provider: MeterProvider
    resource: Resource
    settings: InstrumentationSettings
    #: the HTTP server instruments `instrument_app()` binds its middleware to
    http: HttpServerMetrics = field(repr=False)
    _closed: bool = field(default=False, repr=False)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return bool(self.meter_provider.force_flush(timeout_millis))

    def shutdown(self, timeout_millis: float = 10_000) -> None:
        """Collect and export what is pending, then stop the export thread. Safe twice."""
        if self._closed:
            return
        self._closed = True
        _asyncpg.unbind(self.meter_provider)
        self.meter_provider.shutdown(timeout_millis)


# Handles alive in this process, for the fork warning below.
_live: weakref.WeakSet[Instrumentation] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A provider inherited through fork shares the parent's service.instance.id and its
    # accumulated counts, so parent and child would overwrite each other's series. The SDK
    # restarts the export thread in the child, which hides the problem; say it loudly instead.
    for handle in list(_live):
        if not handle._closed:
            _log.warning(
                "instrumentation.setup() ran before this process was forked: the worker shares "
                "service.instance.id %s with its parent and their series collide; call setup() "
                "in each worker (instrument_app() does, in the app's lifespan)",
                handle.resource.attributes.get("service.instance.id"),
            )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _protocol(explicit: str | None) -> Protocol:
    value = (
        explicit
        or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if value not in PROTOCOLS:
        raise ValueError(
            f"OTLP protocol {value!r} is not supported: use 'http/protobuf' or 'grpc' "
            "(the Python SDK has no http/json metric exporter)"
        )
    return value


def _http_endpoint(endpoint: str) -> str:
    # A bare base URL ("http://gw:4318") gets the signal path, as OTEL_EXPORTER_OTLP_ENDPOINT does.
    stripped = endpoint.rstrip("/")
    scheme_sep = stripped.find("://")
    path_start = stripped.find("/", scheme_sep + 3 if scheme_sep >= 0 else 0)
    return stripped + "/v1/metrics" if path_start < 0 else endpoint


def _exporter(
    protocol: Protocol, endpoint: str | None, headers: Mapping[str, str] | None
) -> MetricExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=endpoint, headers=dict(headers) if headers else None)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(
        endpoint=_http_endpoint(endpoint) if endpoint else None,
        headers=dict(headers) if headers else None,
    )


def build_resource(
    *,
    service_name: str | None,
    service_namespace: str | None,
    service_version: str | None,
    environment: str | None,
) -> Resource:
    """Defaults < OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME < explicit arguments."""
    defaults = Resource(
        {
            "service.namespace": DEFAULT_NAMESPACE,
            "service.version": "unknown",
            "deployment.environment": "development",
            "host.name": socket.gethostname(),
            # Unique per process: each forked or spawned worker is its own series in the gateway.
            "service.instance.id": str(uuid.uuid4()),
        }
    )
    explicit: dict[str, str] = {}
    if service_name is not None:
        explicit["service.name"] = service_name
    if service_namespace is not None:
        explicit["service.namespace"] = service_namespace
    if service_version is not None:
        explicit["service.version"] = service_version
    if environment is not None:
        explicit["deployment.environment"] = environment
    # Resource.create merges the SDK's defaults, the OTEL_* detector and then `explicit`.
    return defaults.merge(Resource.create(explicit))


_environment_warned = False


def _warn_if_environment_defaulted(explicit: str | None) -> None:
    """`deployment.environment` falls back to "development" so that a laptop needs no setup;
    in production that default would silently mislabel every series (issue 19). So a process
    that exports without saying its environment is told, once."""
    global _environment_warned
    if explicit is not None or _environment_warned:
        return
    given = Resource.create({}).attributes  # OTEL_RESOURCE_ATTRIBUTES, as the SDK reads it
    if "deployment.environment" in given or "deployment.environment.name" in given:
        return
    _environment_warned = True
    _log.warning(
        'deployment.environment is not set: this service\'s metrics say "development". Set '
        "OTEL_RESOURCE_ATTRIBUTES=deployment.environment=production (or "
        "InstrumentationSettings(environment=...))"
    )


def setup(
    settings: InstrumentationSettings | None = None,
    /,
    *,
    readers: Sequence[MetricReader] = (),
) -> Instrumentation:
    """Build the MeterProvider for this process and return its handle.

    `settings`: see `InstrumentationSettings` (None: all from the `OTEL_*` environment).
    `readers`: more readers besides the OTLP exporter's (tests pass an `InMemoryMetricReader`
    and `InstrumentationSettings(export=False)`); each also receives the HTTP histogram.
    """
    settings = settings or InstrumentationSettings()
    all_readers: list[MetricReader] = list(readers)
    if settings.export:
        if settings.export_interval_s is not None:
            interval_ms: float | None = settings.export_interval_s * 1000
        elif os.environ.get("OTEL_METRIC_EXPORT_INTERVAL"):
            interval_ms = None  # the SDK reads it
        else:
            interval_ms = DEFAULT_EXPORT_INTERVAL_S * 1000
        all_readers.append(
            PeriodicExportingMetricReader(
                _exporter(_protocol(settings.protocol), settings.endpoint, settings.headers),
                export_interval_millis=interval_ms,
            )
        )
    resource = build_resource(
        service_name=settings.service_name,
        service_namespace=settings.service_namespace,
        service_version=settings.service_version,
        environment=settings.environment,
    )
    if settings.export:
        _warn_if_environment_defaulted(settings.environment)
    provider = MeterProvider(
        metric_readers=all_readers,
        resource=resource,
        exemplar_filter=None if settings.exemplars else AlwaysOffExemplarFilter(),
        # Our handle's shutdown() (or the lifespan) flushes; an atexit hook in a forked child
        # would flush a parent's copy.
        shutdown_on_exit=False,
    )
    http = HttpServerMetrics(provider)
    sources = [http.source]
    if settings.instrument_asyncpg:
        sources.append(_asyncpg.bind(provider))
    for reader in all_readers:
        hook_reader(reader, sources, resource)
    if settings.set_global:
        _set_global(provider)
    handle = Instrumentation(provider, resource, settings, http)
    _live.add(handle)
    return handle


def _set_global(provider: MeterProvider) -> None:
    # The API allows one global provider per process; a second setup() in the same process
    # (tests, a reloaded app) keeps the first as the global one and says so once.
    current = metrics.get_meter_provider()
    if type(current).__name__ == "_ProxyMeterProvider":
        metrics.set_meter_provider(provider)
    else:
        _log.info("a global MeterProvider is already set; this one is used by instrumentation only")
