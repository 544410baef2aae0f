"""HTTP server metrics for ASGI apps, at a fraction of the stock instrumentation's cost.

Why not just `opentelemetry-instrumentation-fastapi`? It measured +127 us CPU per request on a
trivial endpoint (bench/instrumentation_overhead.py). Reading its code (0.66b1) shows where that
goes, and that almost none of it is the metrics:
  * it rebuilds the middleware stack with three extra layers (ServerErrorMiddleware twice, an
    exception-recording layer, OpenTelemetryMiddleware);
  * per request it resolves the route a second time (`_get_route_details` walks `app.routes` and
    calls `matches()` on each until one matches: Starlette has already done exactly this);
  * it always starts a span (a non-recording one without an SDK TracerProvider, but still: context
    extraction from headers through the propagator, `context.attach/detach`, `use_span`), and
    wraps `receive` and `send` so each ASGI message opens an internal "send"/"receive" span;
  * it builds the full semconv attribute dict per request (host/port/URL parsing, user agent,
    target), then filters it twice for old and new semconv, and by default (no
    OTEL_SEMCONV_STABILITY_OPT_IN) records the *old* `http.server.duration` in ms plus request
    and response size histograms: four SDK measurements instead of the two we want.
This middleware complements it rather than replacing it: the same semconv instruments
(`http.server.request.duration` in s with `http.request.method`, `url.scheme`, `http.route`,
`http.response.status_code`, `error.type`; `http.server.active_requests`), no span path, no
second route match (Starlette/FastAPI leave the matched route in `scope["route"]`, which we read
after the response), attribute dicts pre-built per (method, route, status), and in-flight counts
kept in a dict that an observable up-down counter reports at collection, so a request costs one
SDK measurement (the histogram record) and a few dict operations. Users who want traces turn
tracing on and get the stock instrumentor for spans, with its metrics switched off so nothing is
counted twice.

Counts exactly what the app served: a request is recorded when the inner app returns or raises
(an exception with no response started is recorded as 500, which is what the outer
ServerErrorMiddleware sends). WebSocket and lifespan scopes pass straight through.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from time import perf_counter as _now
from typing import Any

from opentelemetry.metrics import CallbackOptions, Histogram, MeterProvider, Observation
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HttpInstruments", "HttpMetricsMiddleware", "MiddlewareBinding"]

# Semconv's advisory boundaries for http.server.request.duration.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
_MAX_CACHED = 4096

_Key = tuple[str, str, str | None, int, str | None]


class HttpInstruments:
    """The two semconv instruments on one provider, with pre-built attribute sets."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("instrumentation.http")
        self.duration: Histogram = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        # In-flight requests per (method, scheme), counted here and reported by an observable
        # up-down counter at collection: the exported data is the same non-monotonic sum an
        # UpDownCounter gives, without two SDK measurements (~6 us each) on every request.
        self.in_flight: dict[tuple[str, str], int] = {}
        meter.create_observable_up_down_counter(
            "http.server.active_requests",
            callbacks=[self._observe_in_flight],
            unit="{request}",
            description="Number of active HTTP server requests.",
        )
        self._duration_attrs: dict[_Key, dict[str, Any]] = {}

    def _observe_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        # Runs on the exporter's thread; list() copies the dict atomically under the GIL.
        return [
            Observation(n, {"http.request.method": method, "url.scheme": scheme})
            for (method, scheme), n in list(self.in_flight.items())
        ]

    def duration_attrs(
        self, method: str, scheme: str, route: str | None, status: int, error: str | None
    ) -> dict[str, Any]:
        key = (method, scheme, route, status, error)
        attrs = self._duration_attrs.get(key)
        if attrs is None:
            attrs = {"http.request.method": method, "url.scheme": scheme}
            if route is not None:
                attrs["http.route"] = route
            if status:
                attrs["http.response.status_code"] = status
            if error is not None:
                attrs["error.type"] = error
            if len(self._duration_attrs) < _MAX_CACHED:
                self._duration_attrs[key] = attrs
        return attrs


class MiddlewareBinding:
    """Where the middleware finds its instruments. Empty until the provider exists: the
    middleware is installed at import time, the provider after the worker forks."""

    __slots__ = ("instruments",)

    def __init__(self) -> None:
        self.instruments: HttpInstruments | None = None


class HttpMetricsMiddleware:
    def __init__(
        self, app: ASGIApp, binding: MiddlewareBinding, exclude_paths: Collection[str] = ()
    ) -> None:
        self.app = app
        self.binding = binding
        self.exclude_paths = frozenset(exclude_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inst = self.binding.instruments
        if scope["type"] != "http" or inst is None or scope["path"] in self.exclude_paths:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method not in _KNOWN_METHODS:
            method = "_OTHER"
        scheme = scope.get("scheme", "http")
        key = (method, scheme)
        in_flight = inst.in_flight
        in_flight[key] = in_flight.get(key, 0) + 1
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = _now()
        error: str | None = None
        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            error = type(exc).__qualname__
            if status == 0:
                status = 500
            raise
        finally:
            elapsed = _now() - start
            if error is None and (status >= 500 or status == 0):
                # semconv: the status code when no exception is known; an app that returned
                # without starting a response gets the value FastAPI's own telemetry uses.
                error = str(status) if status else "incomplete_response"
            route = scope.get("route")
            template = getattr(route, "path", None) if route is not None else None
            inst.duration.record(
                elapsed, inst.duration_attrs(method, scheme, template, status, error)
            )
            in_flight[key] -= 1
