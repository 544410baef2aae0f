"""Configuration: one YAML file, validated once at start into frozen typed objects.

Precedence, lowest first: embedded defaults, the standard `OTEL_*` variables that concern the
gateway (the forwarder's endpoint, protocol, headers and timeout; the gateway's own service name
and resource attributes: see `_otel_defaults`), the YAML file, `GATEWAY_*` environment
variables, command-line flags. Nothing downstream reads `os.environ`; `load()` takes the
environment as an argument.

Environment variables: `GATEWAY_HTTP_PORT`, `GATEWAY_GRPC_PORT`, `GATEWAY_HOST`,
`GATEWAY_NAMESPACE`, `GATEWAY_FORWARD_ENDPOINT`, and in general `GATEWAY_<SECTION>__<FIELD>`
to any depth (`GATEWAY_PROMETHEUS__METRIC_EXPIRATION_SECONDS=600`,
`GATEWAY_HEALTH__POSTGRES__DSN=postgresql://...`). `resolve()` keeps where every value came
from (file, variable, flag or default): `check-config` prints it, and an error names the
variable that set the bad value rather than the file.
"""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.health.config import HealthConfig
from gateway.observers.config import ObserversConfig
from gateway.processors.cardinality import CardinalityConfig
from gateway.processors.defaults import default_views
from gateway.processors.views import ViewConfig

__all__ = [
    "AuthConfig",
    "ConfigError",
    "ForwarderConfig",
    "GatewayConfig",
    "LimitsConfig",
    "MemoryLimiterConfig",
    "Origin",
    "PrometheusConfig",
    "QueueConfig",
    "Resolved",
    "ServerConfig",
    "TlsConfig",
    "ignored_variables",
    "load",
    "load_file",
    "resolve",
    "resolve_file",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerConfig(_Frozen):
    #: address both listeners bind to
    host: str = "127.0.0.1"
    #: OTLP/HTTP, /metrics and health endpoints
    http_port: int = Field(4318, ge=0, le=65535)
    #: OTLP/gRPC; 0 turns the gRPC listener off
    grpc_port: int = Field(4317, ge=0, le=65535)
    #: seconds SIGTERM waits for in-flight work and the flush before exiting
    shutdown_grace_seconds: float = Field(10.0, gt=0)
    #: after SIGTERM, seconds the listeners stay open while /ready fails, so that a load
    #: balancer stops sending first; the grace period starts after it
    drain_delay_seconds: float = Field(0.0, ge=0)


class LimitsConfig(_Frozen):
    #: largest request body, checked before and again after decompression
    max_body_bytes: int = Field(20 * 1024 * 1024, gt=0)
    #: OTLP/HTTP request bytes (received plus decompressed) all requests in progress may hold
    #: together; past it new data is refused with 503 + Retry-After; 0: no limit
    max_inflight_bytes: int = Field(256 * 1024 * 1024, ge=0)
    #: most memory parsing one protobuf request may take, bounded from its bytes before it is
    #: parsed (every byte that could start a nested message is charged the largest one it
    #: could start); more: 413 / gRPC RESOURCE_EXHAUSTED. Empty attributes or exemplars cost
    #: 27-47x their size; realistic bodies are bounded at 10-18x theirs, so the default lets
    #: 20 MiB of them through. Bodies under 1/92 of it are not scanned. 0: no limit
    max_decoded_bytes: int = Field(512 * 1024 * 1024, ge=0)
    #: OTLP/gRPC calls handled at once; more are refused with RESOURCE_EXHAUSTED (retryable),
    #: which bounds gRPC's in-flight memory to this many max_body_bytes messages
    max_concurrent_rpcs: int = Field(32, gt=0)
    #: most data points one export request may carry; more refuse the request (400). The
    #: default is above what a 20 MiB body holds at ~100 bytes a point: lower it on purpose
    max_points_per_request: int = Field(500_000, gt=0)
    #: most resources (ResourceMetrics), scopes (ScopeMetrics, over all resources) and metrics
    #: (over all scopes) one export request may carry; more refuse the request (400) before
    #: it is parsed: empty containers cost ~70 bytes of memory each for 2 bytes on the wire.
    #: 0: no limit
    max_resources_per_request: int = Field(10_000, ge=0)
    max_scopes_per_request: int = Field(10_000, ge=0)
    max_metrics_per_request: int = Field(100_000, ge=0)
    #: most attributes one data point may carry; such points are refused (partial_success).
    #: Checking costs ~0.45 us a point (a third of the store's work); 0 turns the check off
    max_attributes_per_point: int = Field(128, ge=0)
    #: longest string attribute value in characters; such points are refused (partial_success);
    #: 0: no limit (with all three at 0 the receivers do not look at points at all)
    max_attribute_value_length: int = Field(4096, ge=0)
    #: longest attribute key in characters (resource, scope and point attributes); such points
    #: are refused (partial_success). Keys become label names, which are never cut. 0: no limit
    max_attribute_key_length: int = Field(256, ge=0)
    #: most bytes of request line and headers (HTTP) or metadata (gRPC) one request may send;
    #: more: HTTP 431 (gRPC refuses the call), the connection closes
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    #: most header lines of one HTTP request; more: 431; 0: no limit
    max_header_count: int = Field(100, ge=0)
    #: seconds a connection may take to send its request headers, counted from its start (or
    #: from the first byte of a following request on it); then HTTP 408 and closed. gRPC: the
    #: time a new connection has to finish its TLS and HTTP/2 handshake
    header_read_timeout_seconds: float = Field(10.0, gt=0)
    #: HTTP connections open at once; a new one beyond it is closed at once, so that file
    #: descriptors remain for gRPC, the disk queue and /proc; 0: no limit
    max_connections: int = Field(4096, ge=0)


class QueueConfig(_Frozen):
    """Where forwarded batches wait for the upstream."""

    #: memory: lost on a crash; disk: a SQLite file (WAL), delivered after a restart
    kind: Literal["memory", "disk"] = "memory"
    #: the disk queue's file (created with its directory); required for kind: disk
    path: str = ""
    #: most bytes of queued payload the disk queue holds
    max_bytes: int = Field(256 * 1024 * 1024, gt=0)
    #: when full: refuse new data with a retryable error (HTTP 503 + Retry-After, gRPC
    #: UNAVAILABLE), or make room by dropping the oldest entries (counted as dropped)
    full_policy: Literal["refuse", "drop_oldest"] = "refuse"
    #: Retry-After sent to clients while the queue is full
    retry_after_seconds: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _disk_needs_path(self) -> QueueConfig:
        if self.kind == "disk" and not self.path:
            raise ValueError("queue.path is required when queue.kind is disk")
        return self


class MemoryLimiterConfig(_Frozen):
    """Backpressure on the process's resident memory, sampled in the background."""

    #: refuse ingest (HTTP 503 + Retry-After, gRPC UNAVAILABLE) above this RSS; 0 turns the
    #: limiter off
    soft_limit_bytes: int = Field(1536 * 1024 * 1024, ge=0)
    #: above this RSS also run a full garbage collection at each check; must be >= soft
    hard_limit_bytes: int = Field(2048 * 1024 * 1024, ge=0)
    #: how often RSS is sampled (one syscall per check, not per request)
    check_interval_seconds: float = Field(0.1, gt=0)
    #: Retry-After sent to clients while above the soft limit
    retry_after_seconds: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _hard_above_soft(self) -> MemoryLimiterConfig:
        if self.soft_limit_bytes and self.hard_limit_bytes < self.soft_limit_bytes:
            raise ValueError("memory_limiter.hard_limit_bytes must be >= soft_limit_bytes")
        return self


class AuthConfig(_Frozen):
    """Bearer tokens on OTLP/HTTP and OTLP/gRPC ingest (`Authorization: Bearer <token>`)."""

    #: require a token on ingest
    enabled: bool = False
    #: tenant (or service) -> token; set it from the environment with
    #: GATEWAY_AUTH__TOKENS='{team-a: s3cret}' rather than writing tokens into the file
    tokens: dict[str, str] = Field(default_factory=dict, repr=False)
    #: a YAML file mapping tenant -> token (or a list of tokens), read at start and re-read
    #: when it changes (see reload_interval_seconds)
    tokens_file: str = ""
    #: bearer tokens for reads (/metrics, /api/metrics/current, /api/status/..., /ui/,
    #: /openapi.json); empty with no read_tokens_file: reads are open. Probes (/live, /ready,
    #: /health) and /api/health (its own `health.details` policy) stay open. Set it from the
    #: environment: GATEWAY_AUTH__READ_TOKENS='[s3cret]'
    read_tokens: list[str] = Field(default_factory=list, repr=False)
    #: a file of read tokens, one per line (Prometheus' `authorization.credentials_file` can
    #: point at the same one-token file), read at start and re-read when it changes
    read_tokens_file: str = ""
    #: how often tokens_file, read_tokens_file and the TLS pair (tls.cert_file, tls.key_file)
    #: are checked for a change (one stat each; a Kubernetes Secret's symlink swap counts); a
    #: changed file that does not check out keeps what is in use. 0: only on SIGHUP. Inline
    #: tokens never change at run time
    reload_interval_seconds: float = Field(10.0, ge=0)

    @model_validator(mode="after")
    def _tokens_when_enabled(self) -> AuthConfig:
        if self.enabled and not self.tokens and not self.tokens_file:
            raise ValueError("auth.enabled needs auth.tokens or auth.tokens_file")
        if any(not t for t in self.tokens.values()):
            raise ValueError("auth.tokens: a token must not be empty")
        if any(not t.strip() for t in self.read_tokens):
            raise ValueError("auth.read_tokens: a token must not be empty")
        return self


class TlsConfig(_Frozen):
    """TLS for both listeners (OTLP/HTTP with /metrics, and OTLP/gRPC)."""

    #: PEM certificate chain; empty: plain TCP. The pair is re-read when either file
    #: changes (checked every auth.reload_interval_seconds, and on SIGHUP): new handshakes on
    #: both listeners use it, open connections keep theirs
    cert_file: str = ""
    #: PEM private key of the certificate
    key_file: str = ""

    @model_validator(mode="after")
    def _both_or_neither(self) -> TlsConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("tls.cert_file and tls.key_file go together")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


class PrometheusConfig(_Frozen):
    #: metric namespace of the catalogue (`coderunner_...`)
    namespace: str = "coderunner"
    #: a series not updated for this long disappears from /metrics
    metric_expiration_seconds: float = Field(300.0, gt=0)
    #: add `target_info` built from resource attributes
    target_info: bool = True
    #: resource attributes copied onto every series as labels (besides job and instance)
    resource_to_labels: tuple[str, ...] = ()
    #: keep each counter series' and histogram bucket's newest exemplar and show it in the
    #: OpenMetrics exposition (Prometheus needs --enable-feature=exemplar-storage to keep
    #: them). Off by default, like the Collector's prometheusexporter (enable_open_metrics):
    #: a point that carries exemplars then costs the store 3-9x its CPU (docs/performance.md)
    exemplars: bool = False

    @field_validator("namespace")
    @classmethod
    def _namespace_is_a_name(cls, value: str) -> str:
        if value and not value.replace("_", "a").isalnum():
            raise ValueError("must be letters, digits and underscores")
        return value


class ForwarderConfig(_Frozen):
    #: upstream OTLP endpoint (the Collector); empty turns forwarding off.
    #: http: "http://collector:4318" (the /v1/metrics path is added); grpc: "collector:4317"
    endpoint: str = ""
    #: OTLP transport to the upstream
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    #: extra request headers, such as an auth token for the upstream
    headers: dict[str, str] = Field(default_factory=dict)
    #: per-request timeout
    timeout_seconds: float = Field(10.0, gt=0)
    #: batches held in memory while the upstream is slow or down (queue.kind: memory; the disk
    #: queue is bounded by queue.max_bytes); when full, ingest is refused with a retryable error
    queue_size: int = Field(1000, gt=0)
    #: merge queued batches into requests of at most this many points
    max_batch_points: int = Field(8192, gt=0)
    #: retry backoff: first wait, cap, and how long one batch may be retried in all
    initial_backoff_seconds: float = Field(0.5, gt=0)
    max_backoff_seconds: float = Field(30.0, gt=0)
    #: 0: never give up (with the disk queue, the queue's full_policy then decides what goes)
    max_elapsed_seconds: float = Field(300.0, ge=0)


class TelemetryConfig(_Frozen):
    """Who the gateway says it is in its own metrics (target_info, job, instance)."""

    #: `service.name` of the gateway's own metrics (OTEL_SERVICE_NAME sets it too)
    service_name: str = "telemetry-gateway"
    #: more resource attributes of the gateway's own metrics, such as deployment.environment
    #: (OTEL_RESOURCE_ATTRIBUTES sets them too)
    resource_attributes: dict[str, str] = Field(default_factory=dict)


class GatewayConfig(_Frozen):
    server: ServerConfig = ServerConfig()
    limits: LimitsConfig = LimitsConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    forwarder: ForwarderConfig = ForwarderConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    #: health checks, circuit breakers and who sees /api/health details
    health: HealthConfig = HealthConfig()
    #: system observers: host and process metrics, adaptive interval, /api/metrics/current
    observers: ObserversConfig = ObserversConfig()
    #: the forwarder's queue: memory or durable on disk
    queue: QueueConfig = QueueConfig()
    #: backpressure on resident memory
    memory_limiter: MemoryLimiterConfig = MemoryLimiterConfig()
    #: bearer tokens on ingest
    auth: AuthConfig = AuthConfig()
    #: TLS for both listeners
    tls: TlsConfig = TlsConfig()
    #: views: what services emit -> the metric catalogue; the default list is
    #: gateway/processors/defaults.py (docs/metrics.md), `views: []` turns views off
    views: tuple[ViewConfig, ...] = Field(default_factory=default_views)
    #: series limits per stream, per metric and per service; label value length
    cardinality: CardinalityConfig = CardinalityConfig()

    @model_validator(mode="after")
    def _not_forwarding_to_itself(self) -> GatewayConfig:
        """A forwarder pointed at the gateway's own listener would feed every batch back in,
        forever (easy to do with OTEL_EXPORTER_OTLP_ENDPOINT set for the services)."""
        endpoint = self.forwarder.endpoint
        if not endpoint:
            return self
        parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
        try:
            port = parsed.port
        except ValueError:
            return self  # not ours to judge here; the forwarder reports an unusable endpoint
        local = {"localhost", "127.0.0.1", "::1", "0.0.0.0", self.server.host}
        own = {p for p in (self.server.http_port, self.server.grpc_port) if p}
        if parsed.hostname in local and port in own:
            raise ValueError(
                f"forwarder.endpoint {endpoint!r} is this gateway's own listener: forwarding "
                "there would loop (is OTEL_EXPORTER_OTLP_ENDPOINT set for your services?)"
            )
        return self


class ConfigError(Exception):
    """A configuration that does not validate; `errors` are "path: message" lines, `lines`
    the same prefixed with who set the value ("environment GATEWAY_QUEUE__KINDD: ...",
    "file gateway.yaml: ...", "default: ..."): print those."""

    def __init__(self, source: str, errors: list[str], lines: list[str] | None = None) -> None:
        self.source = source
        self.errors = errors
        self.lines = lines if lines is not None else [f"{source}: {e}" for e in errors]
        super().__init__("; ".join(self.lines))


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


# Short environment names for the settings people change most.
_ENV_SHORTCUTS: dict[str, tuple[str, ...]] = {
    "GATEWAY_HOST": ("server", "host"),
    "GATEWAY_HTTP_PORT": ("server", "http_port"),
    "GATEWAY_GRPC_PORT": ("server", "grpc_port"),
    "GATEWAY_NAMESPACE": ("prometheus", "namespace"),
    "GATEWAY_FORWARD_ENDPOINT": ("forwarder", "endpoint"),
}

Key = tuple[str, ...]


@dataclass(frozen=True)
class Origin:
    """Where one setting's value came from: `default`, `file` (name: the file), `environment`
    (name: the variable), `otel` (name: the OTEL_* variable) or `flag` (name: the flag)."""

    kind: Literal["default", "file", "environment", "otel", "flag"]
    name: str = ""

    def __str__(self) -> str:
        if self.kind == "default":
            return "default"
        if self.kind == "file":
            return f"file {self.name}"
        if self.kind == "flag":
            return f"flag {self.name}" if self.name else "command-line flag"
        return f"environment {self.name}"


class _Layer:
    """One source of settings: a nested mapping and, for every leaf in it, its origin."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origins: dict[Key, Origin] = {}

    def set(self, key: Key, value: Any, origin: Origin) -> None:
        node = self.data
        for part in key[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[key[-1]] = value
        self.note(key, value, origin)

    def note(self, key: Key, value: Any, origin: Origin) -> None:
        if isinstance(value, Mapping) and value:
            for sub, inner in value.items():
                self.note((*key, str(sub)), inner, origin)
        else:
            self.origins[key] = origin

    @classmethod
    def of(cls, data: Mapping[str, Any], origin: Origin) -> _Layer:
        layer = cls()
        layer.data = dict(data)
        for key, value in data.items():
            layer.note((str(key),), value, origin)
        return layer


def ignored_variables(environ: Mapping[str, str]) -> list[str]:
    """`GATEWAY_*` variables that are no setting (`GATEWAY_HTTP_PROT`): neither a short form
    nor `GATEWAY_<SECTION>__<KEY>`. Not an error (other tools may use the prefix), but
    check-config names them, since a typo there would otherwise change nothing, silently."""
    return sorted(
        name
        for name in environ
        if name.startswith("GATEWAY_") and name not in _ENV_SHORTCUTS and "__" not in name
    )


def _env_layer(environ: Mapping[str, str]) -> _Layer:
    """`GATEWAY_<SECTION>__<FIELD>[__<FIELD>...]` to any depth, and the short forms.

    Hand-written rather than pydantic-settings: that library parses complex values as JSON
    (the file and these variables take YAML, `{dsn: ...}`), reads `os.environ` itself, and its
    errors name the field, not the variable that set it; the split itself is these few lines.
    """
    layer = _Layer()
    for name in sorted(environ):
        value = environ[name]
        if name in _ENV_SHORTCUTS:
            key = _ENV_SHORTCUTS[name]
        elif name.startswith("GATEWAY_") and "__" in name:
            key = tuple(name.removeprefix("GATEWAY_").lower().split("__"))
            if not all(key):
                key = tuple(part or "(empty)" for part in key)
        else:
            continue
        # YAML parsing gives "600" -> 600, "true" -> True, "[a, b]" -> list, as in the file.
        try:
            parsed = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            parsed = value  # validation then names the variable and the bad value
        layer.set(key, parsed, Origin("environment", name))
    return layer


def _otel_pairs(value: str) -> dict[str, str]:
    """`k1=v1,k2=v2` with percent-encoded values, as OTEL_RESOURCE_ATTRIBUTES and
    OTEL_EXPORTER_OTLP_HEADERS are written."""
    out: dict[str, str] = {}
    for item in value.split(","):
        key, sep, val = item.partition("=")
        if sep and key.strip():
            out[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(val.strip())
    return out


def _otel_layer(environ: Mapping[str, str]) -> _Layer:
    """The standard OTEL_* variables that mean something to the gateway, as it reads them:

    - OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT: the forwarder's
      upstream (for HTTP the forwarder adds `/v1/metrics` when the path lacks it);
    - OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL (`grpc` or `http/protobuf`),
      OTEL_EXPORTER_OTLP_[METRICS_]HEADERS, OTEL_EXPORTER_OTLP_[METRICS_]TIMEOUT (milliseconds);
    - OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES: the gateway's own resource.

    They are defaults: the YAML file, then GATEWAY_* variables and flags, override them.
    """
    layer = _Layer()

    def pick(name: str) -> tuple[str, str] | None:
        for var in (f"OTEL_EXPORTER_OTLP_METRICS_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
            if environ.get(var):
                return var, environ[var]
        return None

    if found := pick("ENDPOINT"):
        layer.set(("forwarder", "endpoint"), found[1], Origin("otel", found[0]))
    if found := pick("PROTOCOL"):
        layer.set(("forwarder", "protocol"), found[1], Origin("otel", found[0]))
    if found := pick("HEADERS"):
        layer.set(("forwarder", "headers"), _otel_pairs(found[1]), Origin("otel", found[0]))
    if found := pick("TIMEOUT"):
        timeout: Any = found[1]  # not a number: validation names the bad value
        with contextlib.suppress(ValueError):
            timeout = float(found[1]) / 1000
        layer.set(("forwarder", "timeout_seconds"), timeout, Origin("otel", found[0]))
    if value := environ.get("OTEL_RESOURCE_ATTRIBUTES"):
        origin = Origin("otel", "OTEL_RESOURCE_ATTRIBUTES")
        layer.set(("telemetry", "resource_attributes"), _otel_pairs(value), origin)
    if value := environ.get("OTEL_SERVICE_NAME"):
        layer.set(("telemetry", "service_name"), value, Origin("otel", "OTEL_SERVICE_NAME"))
    return layer


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _related(a: Key, b: Key) -> bool:
    """One key lies on the other's path (`health.postgres` and `health.postgres.dsn`)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


class Resolved(NamedTuple):
    """A validated config and, for every setting not left at its default, where it came from."""

    config: GatewayConfig
    origins: dict[Key, Origin]

    def origin(self, key: Key) -> Origin:
        """Who set `key`: itself or a section above it, else (for a mapping such as
        `auth.tokens`) whoever set a key inside it, else the default."""
        for n in range(len(key), 0, -1):
            if key[:n] in self.origins:
                return self.origins[key[:n]]
        inside = [o for k, o in self.origins.items() if k[: len(key)] == key]
        return inside[-1] if inside else Origin("default")


def _blame(
    origins: Mapping[Key, Origin], loc: tuple[int | str, ...], message: str, fallback: Origin
) -> str:
    """Who set the value an error is about. A section's or the whole config's own check
    names the keys it is about in its message ("queue.path is required when queue.kind is
    disk"): those keys' sources. Otherwise the sources of the keys on the error's path."""
    key = tuple(str(p) for p in loc)
    for i, part in enumerate(loc):
        if isinstance(part, int):
            key = key[:i]  # a list is one value; its items have no origin of their own
            break
    named = [tuple(k.split(".")) for k in re.findall(r"\b[a-z_]+(?:\.[a-z_]+)+\b", message)]
    found = sorted({str(o) for k, o in origins.items() for n in named if _related(k, n)})
    if not found and key:
        found = sorted({str(o) for k, o in origins.items() if _related(k, key)})
    return ", ".join(found) if found else str(fallback)


def resolve(
    raw: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    source: str = "<defaults>",
) -> Resolved:
    """Validate a parsed YAML document with environment and flag overrides applied, keeping
    the origin of every value (what `check-config` prints, and what an error blames)."""
    layers: list[_Layer] = []
    if environ is not None:
        layers.append(_otel_layer(environ))
    if raw:
        layers.append(_Layer.of(raw, Origin("file", source)))
    if environ is not None:
        layers.append(_env_layer(environ))
    if overrides:
        layers.append(_Layer.of(overrides, Origin("flag", "")))
    data: dict[str, Any] = {}
    origins: dict[Key, Origin] = {}
    for layer in layers:
        data = _merge(data, layer.data)
        for key, origin in layer.origins.items():
            for old in [k for k in origins if _related(k, key)]:
                del origins[old]
            origins[key] = origin
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        fallback = Origin("file", source) if raw else Origin("default")
        errors: list[str] = []
        blamed: list[str] = []
        for e in exc.errors():
            message = f"{_path(e['loc'])}: {e['msg']}"
            errors.append(message)
            blamed.append(f"{_blame(origins, e['loc'], e['msg'], fallback)}: {message}")
        raise ConfigError(source, errors, blamed) from None
    return Resolved(config, origins)


def load(
    raw: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    source: str = "<defaults>",
) -> GatewayConfig:
    """Validate a parsed YAML document with environment and flag overrides applied."""
    return resolve(raw, environ=environ, overrides=overrides, source=source).config


def resolve_file(
    path: str | Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Resolved:
    """Read and validate a YAML file (`None`: embedded defaults only), with origins."""
    if path is None:
        return resolve(None, environ=environ, overrides=overrides)
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"(file): {exc.strerror}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(source, [f"{where}: {getattr(exc, 'problem', exc)}"]) from None
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError(source, ["(top level): must be a mapping"])
    return resolve(raw, environ=environ, overrides=overrides, source=source)


def load_file(
    path: str | Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """Read and validate a YAML file (`None`: embedded defaults only)."""
    return resolve_file(path, environ=environ, overrides=overrides).config
