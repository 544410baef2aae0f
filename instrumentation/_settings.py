"""`InstrumentationSettings`: what `setup()` needs to know, checked when it is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DEFAULT_EXPORT_INTERVAL_S", "InstrumentationSettings", "Protocol"]

Protocol = Literal["http/protobuf", "grpc"]
PROTOCOLS: tuple[Protocol, ...] = ("http/protobuf", "grpc")
DEFAULT_EXPORT_INTERVAL_S = 5.0  # the SDK's 60 s is too slow for a gateway that shows live data


@dataclass(frozen=True, kw_only=True)
class InstrumentationSettings:
    """Settings for `setup()` / `instrument_app()`. Every field left None is decided by the
    standard `OTEL_*` variable the OpenTelemetry SDK reads for it, then by our default.

    >>> setup(InstrumentationSettings(service_name="billing", endpoint="http://gw:4318"))
    """

    #: `service.name`; None: OTEL_SERVICE_NAME, else the SDK's "unknown_service"
    service_name: str | None = None
    #: `service.namespace`; None: OTEL_RESOURCE_ATTRIBUTES, else "coderunner"
    service_namespace: str | None = None
    #: `service.version`; None: OTEL_RESOURCE_ATTRIBUTES, else "unknown"
    service_version: str | None = None
    #: `deployment.environment`; None: OTEL_RESOURCE_ATTRIBUTES, else "development" (and a
    #: warning at setup() when exporting: production must not say "development" silently)
    environment: str | None = None
    #: OTLP/HTTP URL ("http://127.0.0.1:4318" gets "/v1/metrics") or gRPC target;
    #: None: OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT, else the SDK's localhost default
    endpoint: str | None = None
    #: None: OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL, else "http/protobuf" ("grpc" needs the
    #: package's `grpc` extra)
    protocol: Protocol | None = None
    #: extra export headers; None: OTEL_EXPORTER_OTLP_[METRICS_]HEADERS
    headers: Mapping[str, str] | None = field(default=None, hash=False)
    #: seconds between exports; None: OTEL_METRIC_EXPORT_INTERVAL (ms), else 5 s
    export_interval_s: float | None = None
    #: False: no OTLP exporter (tests pass their own readers to `setup()`)
    export: bool = True
    #: time asyncpg's queries as `db.client.operation.duration`
    instrument_asyncpg: bool = True
    #: exemplars for the SDK's instruments (off: a context lookup per measurement, and the
    #: gateway keeps none; the HTTP histogram has none either way)
    exemplars: bool = False
    #: make the provider the API's global one (`opentelemetry.metrics.get_meter()` uses it)
    set_global: bool = True

    def __post_init__(self) -> None:
        if self.export_interval_s is not None and not self.export_interval_s > 0:
            raise ValueError(f"export_interval_s must be > 0, got {self.export_interval_s}")
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise ValueError(
                f"protocol {self.protocol!r} is not supported: use 'http/protobuf' or 'grpc' "
                "(the Python SDK has no http/json metric exporter)"
            )
        for name in ("service_name", "service_namespace", "service_version", "environment"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")
