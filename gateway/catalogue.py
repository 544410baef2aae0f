"""The metric catalogue: every metric the project defines, written once.

Views, instrumentation, observers, the dashboards generator, the alert rules' tests and
`docs/metrics.md` all read this module. An entry names the metric as OpenTelemetry sees it
(`name` under the namespace, `unit`, `kind`); the Prometheus name follows from the OpenTelemetry
compatibility rules (`prometheus_name`), so the gateway's exposition and a Collector's
translation of the forwarded OTLP give the same name.

Worked example: `Metric("api.requests", "{request}", Kind.COUNTER, ...)` under the default
namespace is forwarded as `coderunner.api.requests` (a monotonic Sum) and exposed as
`coderunner_api_requests_total`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.naming import metric_name
from instrumentation.semconv import DEFAULT_NAMESPACE  # shared with the service-side package

__all__ = ["CATALOGUE", "DEFAULT_NAMESPACE", "RENAMED", "Kind", "Layer", "Metric", "by_name"]


class Kind(enum.Enum):
    COUNTER = "counter"  # OTLP monotonic Sum
    UPDOWN = "updowncounter"  # OTLP non-monotonic Sum, a Prometheus gauge
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class Layer(enum.Enum):
    SYSTEM = "system"
    APPLICATION = "application"
    BUSINESS = "business"
    HEALTH = "health"
    GATEWAY = "gateway"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str  # under the namespace, dotted: "api.requests"
    unit: str  # UCUM, as OpenTelemetry writes it: "s", "By", "{request}", "1"
    kind: Kind
    labels: tuple[str, ...]
    help: str
    layer: Layer

    def otel_name(self, namespace: str = DEFAULT_NAMESPACE) -> str:
        return f"{namespace}.{self.name}" if namespace else self.name

    def prometheus_name(self, namespace: str = DEFAULT_NAMESPACE) -> str:
        """The family name as the 0.0.4 text format writes it (counters end in `_total`)."""
        return metric_name(
            self.otel_name(namespace),
            self.unit,
            monotonic_counter=self.kind is Kind.COUNTER,
            gauge=self.kind is Kind.GAUGE,
        )

    @property
    def prometheus_type(self) -> str:
        return {
            Kind.COUNTER: "counter",
            Kind.UPDOWN: "gauge",
            Kind.GAUGE: "gauge",
            Kind.HISTOGRAM: "histogram",
        }[self.kind]


_S, _A, _B, _H, _G = Layer.SYSTEM, Layer.APPLICATION, Layer.BUSINESS, Layer.HEALTH, Layer.GATEWAY
_C, _U, _GA, _HI = Kind.COUNTER, Kind.UPDOWN, Kind.GAUGE, Kind.HISTOGRAM

CATALOGUE: tuple[Metric, ...] = (
    # --- system (gateway observers) ---
    Metric(
        "system.cpu.usage_percent",
        "%",
        _GA,
        ("core", "type"),
        "CPU usage by core ('total' for all) and type (user, system, iowait, idle, usage).",
        _S,
    ),
    Metric(
        "system.cpu.time",
        "s",
        _C,
        ("core", "mode"),
        "CPU time spent by core and mode, as node_exporter's node_cpu_seconds_total.",
        _S,
    ),
    Metric(
        "system.memory.usage",
        "By",
        _GA,
        ("type",),
        "Memory by type: total, used, available, cached, buffers, swap_total, swap_used.",
        _S,
    ),
    Metric(
        "system.memory.utilization",
        "1",
        _GA,
        (),
        "Memory in use as a ratio of total (0-1): (total - available) / total.",
        _S,
    ),
    Metric(
        "system.load_average", "", _GA, ("period",), "System load average over 1m, 5m and 15m.", _S
    ),
    Metric("system.uptime", "s", _GA, (), "Seconds since the host booted.", _S),
    Metric(
        "system.network.io",
        "By",
        _C,
        ("interface", "direction"),
        "Network bytes by interface and direction (receive, transmit).",
        _S,
    ),
    Metric(
        "system.network.packets",
        "{packet}",
        _C,
        ("interface", "direction"),
        "Network packets by interface and direction.",
        _S,
    ),
    Metric(
        "system.network.errors",
        "{error}",
        _C,
        ("interface", "direction"),
        "Network errors by interface and direction.",
        _S,
    ),
    Metric(
        "system.network.dropped",
        "{packet}",
        _C,
        ("interface", "direction"),
        "Network packets dropped by interface and direction.",
        _S,
    ),
    Metric(
        "system.disk.io",
        "By",
        _C,
        ("device", "direction"),
        "Disk bytes by device and direction (read, write).",
        _S,
    ),
    Metric(
        "system.disk.operations",
        "{operation}",
        _C,
        ("device", "direction"),
        "Disk operations by device and direction (read, write).",
        _S,
    ),
    Metric(
        "system.filesystem.size",
        "By",
        _GA,
        ("device", "mountpoint", "fstype"),
        "Filesystem size by mountpoint (pseudo filesystems filtered).",
        _S,
    ),
    Metric(
        "system.filesystem.free",
        "By",
        _GA,
        ("device", "mountpoint", "fstype"),
        "Filesystem bytes available to unprivileged users, by mountpoint.",
        _S,
    ),
    Metric(
        "system.filesystem.utilization",
        "1",
        _GA,
        ("device", "mountpoint", "fstype"),
        "Filesystem space in use as a ratio of size (0-1).",
        _S,
    ),
    Metric(
        "process.cpu.time",
        "s",
        _C,
        ("mode",),
        "CPU time of the gateway process by mode (user, system).",
        _S,
    ),
    Metric("process.memory.rss", "By", _GA, (), "Resident memory of the gateway process.", _S),
    Metric("process.open_fds", "{fd}", _GA, (), "Open file descriptors of the gateway.", _S),
    Metric("process.threads", "{thread}", _GA, (), "Threads of the gateway process.", _S),
    # --- application (services, through the gateway's views) ---
    Metric(
        "api.requests",
        "{request}",
        _C,
        ("method", "endpoint", "status"),
        "API requests by method, route template and status class (2xx..5xx).",
        _A,
    ),
    Metric(
        "api.duration",
        "s",
        _HI,
        ("method", "endpoint"),
        "API request duration by method and route template.",
        _A,
    ),
    Metric("api.active_requests", "{request}", _U, ("method",), "API requests in flight.", _A),
    Metric(
        "deployments",
        "{deployment}",
        _C,
        ("status", "type"),
        "Deployments by final status (success, failed) and runtime type.",
        _A,
    ),
    Metric(
        "deployment.duration",
        "s",
        _HI,
        ("type", "status"),
        "Deployment build-and-start duration by runtime type and status.",
        _A,
    ),
    Metric(
        "websocket.connections",
        "{connection}",
        _C,
        ("status",),
        "WebSocket connection events by status (authenticated, rejected, closed).",
        _A,
    ),
    Metric(
        "websocket.active_connections",
        "{connection}",
        _U,
        (),
        "WebSocket connections open now.",
        _A,
    ),
    Metric(
        "errors",
        "{error}",
        _C,
        ("type", "service", "severity"),
        "Errors by type, service and severity.",
        _A,
    ),
    Metric(
        "db.operation.duration",
        "s",
        _HI,
        ("operation", "outcome"),
        "Database operation duration by operation (SELECT, INSERT, ...) and outcome.",
        _A,
    ),
    # --- business ---
    Metric(
        "user.activity",
        "{action}",
        _C,
        ("action", "plan_type"),
        "User actions by action and the user's plan.",
        _B,
    ),
    Metric(
        "feature.usage",
        "{use}",
        _C,
        ("feature", "user_type"),
        "Feature uses by feature and user type.",
        _B,
    ),
    Metric(
        "resource.costs",
        "{USD}",
        _C,
        ("resource_type", "plan"),
        "Accrued resource cost in US dollars by resource type and plan.",
        _B,
    ),
    Metric("plan.distribution", "{user}", _GA, ("plan_type",), "Users on each plan now.", _B),
    # --- health (health module) ---
    Metric(
        "health.check.status",
        "",
        _GA,
        ("component",),
        "Last result of a health check: 1 pass, 0.5 warn, 0 fail.",
        _H,
    ),
    Metric(
        "health.check.duration",
        "s",
        _GA,
        ("component",),
        "Duration of the last run of a health check.",
        _H,
    ),
    Metric(
        "circuit_breaker.state",
        "",
        _GA,
        ("component", "state"),
        "Circuit breaker state: 1 for the current state (closed, open, half_open), else 0.",
        _H,
    ),
    Metric(
        "circuit_breaker.transitions",
        "{transition}",
        _C,
        ("component", "from", "to"),
        "Circuit breaker state changes.",
        _H,
    ),
    # --- the gateway itself ---
    Metric(
        "gateway.points.received",
        "{point}",
        _C,
        ("transport",),
        "Data points received, by transport (http, grpc) and internal producers.",
        _G,
    ),
    Metric(
        "gateway.points.rejected", "{point}", _C, ("reason",), "Data points refused, by reason.", _G
    ),
    Metric(
        "gateway.points.forwarded",
        "{point}",
        _C,
        (),
        "Data points forwarded upstream and taken (points an upstream rejects in a partial "
        "success count in gateway.points.dropped instead).",
        _G,
    ),
    Metric(
        "gateway.points.dropped",
        "{point}",
        _C,
        ("reason",),
        "Data points accepted but then dropped, by reason: queue_full, upstream_unauthorized "
        "(401/403), upstream_not_found (404), rejected_upstream (other refusals, and points "
        "an upstream's partial success rejected), ...",
        _G,
    ),
    Metric(
        "gateway.points.redelivered",
        "{point}",
        _C,
        (),
        "Data points forwarded again after a send with an unknown outcome (timeout, crash "
        "before the ack): the upstream may have them twice.",
        _G,
    ),
    Metric(
        "gateway.points.overflowed",
        "{point}",
        _C,
        ("metric",),
        "Data points folded into the overflow series by the cardinality limiter.",
        _G,
    ),
    Metric(
        "gateway.points.capped",
        "{point}",
        _C,
        (),
        "Data points of new series refused because the gateway holds "
        "cardinality.max_series_total series (all services together).",
        _G,
    ),
    Metric(
        "gateway.series.limit",
        "{series}",
        _GA,
        (),
        "The gateway-wide series cap, cardinality.max_series_total (0: none).",
        _G,
    ),
    Metric(
        "gateway.series.truncated",
        "{series}",
        _C,
        ("metric",),
        "Series whose label values were cut to cardinality.max_label_value_length.",
        _G,
    ),
    Metric(
        "gateway.requests.refused",
        "{request}",
        _C,
        ("transport", "reason"),
        "Export requests refused whole (undecodable, too large, unsupported type, overload; "
        "queue_write_error: the disk queue cannot write; not_found: a path the gateway does "
        "not serve).",
        _G,
    ),
    Metric(
        "gateway.connections.refused",
        "{connection}",
        _C,
        ("reason",),
        "HTTP connections the gateway closed at its limits (header_too_large, "
        "too_many_headers, header_timeout, connection_limit), by reason.",
        _G,
    ),
    Metric(
        "gateway.background.errors",
        "{error}",
        _C,
        ("task",),
        "Unexpected errors a background task (memory_limiter, forwarder, secret_reloader) "
        "survived, by task; its health check fails while they recur.",
        _G,
    ),
    Metric(
        "gateway.config.reloads",
        "{reload}",
        _C,
        ("result",),
        "Re-reads of a changed token file (auth.tokens_file, auth.read_tokens_file) or TLS "
        "pair (tls.cert_file, tls.key_file), or of all on SIGHUP, by result: success (the new "
        "tokens or pair are in use) or error (it did not check out; what is in use stays).",
        _G,
    ),
    Metric(
        "gateway.forward.queue.corrupt",
        "{file}",
        _C,
        (),
        "Disk queue files found damaged at start and moved aside (the queue started empty).",
        _G,
    ),
    Metric(
        "gateway.request.duration",
        "s",
        _HI,
        ("transport",),
        "Time to handle one export request.",
        _G,
    ),
    Metric("gateway.active_series", "{series}", _GA, (), "Series held for exposition.", _G),
    Metric(
        "gateway.forward.queue.length",
        "{batch}",
        _GA,
        (),
        "Batches waiting to be forwarded upstream.",
        _G,
    ),
    Metric(
        "gateway.forward.queue.capacity",
        "{batch}",
        _GA,
        (),
        "Batches the forward queue holds before it drops (forwarder.queue_size).",
        _G,
    ),
    Metric(
        "gateway.forward.queue.utilization",
        "1",
        _GA,
        (),
        "How full the forward queue is (0-1): batches for the memory queue, bytes on disk.",
        _G,
    ),
    Metric(
        "gateway.observer.interval",
        "s",
        _GA,
        (),
        "Current interval of the adaptive system observer.",
        _G,
    ),
    Metric(
        "gateway.observer.cycle.cpu", "s", _GA, (), "CPU time the last observer cycle cost.", _G
    ),
    Metric(
        "gateway.observer.overhead",
        "1",
        _GA,
        (),
        "Observer CPU time as a ratio of one core, over recent cycles.",
        _G,
    ),
)

# Names of the original system that the catalogue changed, and why (docs/metrics.md lists them).
RENAMED: dict[str, tuple[str, str]] = {
    'coderunner_system_memory_usage_bytes{type="usage_percent"}': (
        "coderunner_system_memory_utilization_ratio",
        "a percentage inside a _bytes metric; now a 0-1 ratio with its own name",
    ),
    "coderunner_plan_distribution_total": (
        "coderunner_plan_distribution",
        "a gauge (users per plan now) must not end in _total",
    ),
    "coderunner_websocket_connections_total (as a gauge)": (
        "coderunner_websocket_active_connections",
        "open connections are a gauge; coderunner_websocket_connections_total stays a counter "
        "of connection events by status",
    ),
}

_BY_NAME = {m.name: m for m in CATALOGUE}


def by_name(name: str) -> Metric:
    """The entry for a catalogue name (without namespace): `by_name("api.requests")`."""
    return _BY_NAME[name]
