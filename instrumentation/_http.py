"""HTTP server metrics for ASGI apps, exact, at about a tenth of the stock instrumentation's cost.

Why not `opentelemetry-instrumentation-fastapi`? It measured +127 us CPU per request on a
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
after the response). The duration histogram is aggregated by `_exact.ExactHistogram` (one SDK
`Histogram.record()` alone cost 16 us a request; see that module for how the data still reaches
every reader), and in-flight counts are kept in a dict that an observable up-down counter
reports at collection. Both are kept per thread, so counts stay exact with several threads or
event loops and no lock is taken per request. Users who want traces turn tracing on and get
the stock instrumentor for spans, with its metrics switched off so nothing is counted twice.

Counts exactly what the app served: a request is recorded when the inner app returns or raises
(an exception with no response started is recorded as 500, which is what the outer
ServerErrorMiddleware sends). WebSocket and lifespan scopes pass straight through, and so does a
request already measured by an outer instance (an instrumented app mounted in another one).

`http.route` keeps the mount prefix: a `Mount` sets `scope["root_path"]` to the prefix it
matched before handing the request to its app, whose router then leaves its own route (relative
to the mount) in `scope["route"]`. The route is therefore the root path added by mounts, plus the
route's template: `/v1` + `/items/{item_id}`. A request that stops at a mount (its app has no
routes, or none matched) gets `/v1/{path}`, as FastAPI's own telemetry writes it.
"""

from __future__ import annotations

import threading
from bisect import bisect_left as _bisect
from collections.abc import Hashable, Iterable
from threading import get_ident
from time import perf_counter as _now
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.util.types import Attributes

from instrumentation import semconv
from instrumentation._exact import ExactHistogram, MetricsSource

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from instrumentation._excluded import ExcludedUrls

try:  # the middleware serves any ASGI app; only Starlette's routing has mounts to resolve
    from starlette.routing import Mount as _Mount
except ImportError:  # pragma: no cover - starlette is there whenever FastAPI is
    _Mount = None  # type: ignore[assignment,misc]

__all__ = ["HttpMetricsMiddleware", "HttpServerMetrics", "MiddlewareBinding"]

SCOPE_NAME = "instrumentation.http"
_VERSION = "0.1.0"
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
#: set in the scope by the outermost instance, so a mounted, instrumented app is not counted twice
_MEASURED = "instrumentation.measured"

# (method, scheme, route, status, error)
_Key = tuple[str, str, str | None, int, str | None]


def _duration_attributes(key: _Key) -> Attributes:
    method, scheme, route, status, error = key
    attrs: dict[str, Any] = {semconv.HTTP_REQUEST_METHOD: method, semconv.URL_SCHEME: scheme}
    if route is not None:
        attrs[semconv.HTTP_ROUTE] = route
    if status:
        attrs[semconv.HTTP_RESPONSE_STATUS_CODE] = status
    if error is not None:
        attrs[semconv.ERROR_TYPE] = error
    return attrs


class HttpServerMetrics:
    """The two semconv instruments of one provider: the duration histogram (aggregated here,
    `source` hands it to the readers) and active requests (an observable up-down counter).

    Like the histogram, in-flight counts are kept per thread (a request starts and ends on its
    event loop's thread), so the middleware takes no lock; `local()` gives the calling
    thread's histogram shard and in-flight counts in one lookup.
    """

    def __init__(self, provider: MeterProvider) -> None:
        self.duration = ExactHistogram(
            semconv.HTTP_SERVER_REQUEST_DURATION,
            unit="s",
            description="Duration of HTTP server requests.",
            boundaries=semconv.HTTP_DURATION_BUCKETS,
            attributes=_duration_attributes,
        )
        self.boundaries = self.duration.boundaries
        self.source = MetricsSource(InstrumentationScope(SCOPE_NAME, _VERSION), [self.duration])
        #: thread ident -> (its histogram shard, its in-flight requests per (method, scheme)),
        #: for the collection; `this_thread.state` is the calling thread's entry
        self.locals: dict[int, tuple[dict[Hashable, Any], dict[tuple[str, str], int]]] = {}
        self.this_thread = threading.local()
        self._lock = threading.Lock()
        # In-flight requests are reported at collection: the exported data is the
        # non-monotonic sum an UpDownCounter gives, without two SDK measurements a request.
        provider.get_meter(SCOPE_NAME, _VERSION).create_observable_up_down_counter(
            semconv.HTTP_SERVER_ACTIVE_REQUESTS,
            callbacks=[self._observe_in_flight],
            unit="{request}",
            description="Number of active HTTP server requests.",
        )

    def local(self) -> tuple[dict[Hashable, Any], dict[tuple[str, str], int]]:
        """The calling thread's histogram shard and in-flight counts (created on first use)."""
        ident = get_ident()
        found = self.locals.get(ident)
        if found is None:
            with self._lock:
                found = self.locals.setdefault(ident, (self.duration.shard(), {}))
        self.this_thread.state = found
        return found

    def _observe_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        totals: dict[tuple[str, str], int] = {}
        for _, in_flight in list(self.locals.values()):
            for key, n in list(in_flight.items()):
                totals[key] = totals.get(key, 0) + n
        return [
            Observation(n, {semconv.HTTP_REQUEST_METHOD: method, semconv.URL_SCHEME: scheme})
            for (method, scheme), n in totals.items()
        ]


class MiddlewareBinding:
    """Where the middleware finds its instruments. Empty until the provider exists: the
    middleware is installed at import time, the provider after the worker forks."""

    __slots__ = ("exclude_paths", "excluded_urls", "metrics")

    def __init__(self) -> None:
        self.metrics: HttpServerMetrics | None = None
        #: exact paths not measured
        self.exclude_paths: frozenset[str] = frozenset()
        #: URL regexes not measured (OTEL_PYTHON_[FASTAPI_]EXCLUDED_URLS)
        self.excluded_urls: ExcludedUrls | None = None


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, binding: MiddlewareBinding) -> None:
        self.app = app
        self.binding = binding

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        binding = self.binding
        metrics = binding.metrics
        if (
            scope["type"] != "http"
            or metrics is None
            or _MEASURED in scope
            or (binding.exclude_paths and scope["path"] in binding.exclude_paths)
            or (binding.excluded_urls is not None and binding.excluded_urls.excludes(scope))
        ):
            await self.app(scope, receive, send)
            return
        scope[_MEASURED] = True
        method = scope["method"]
        if method not in _KNOWN_METHODS:
            method = "_OTHER"
        # Per request, every call counts (about 0.1 us each on the CI VM): try/except costs
        # nothing when nothing is raised, a `.get()` is a call. Servers set both keys.
        try:
            scheme = scope["scheme"]
            root_path = scope["root_path"]
        except KeyError:
            scheme = scope.get("scheme", "http")
            root_path = scope.get("root_path", "")
        try:
            shard, in_flight = metrics.this_thread.state
        except AttributeError:
            shard, in_flight = metrics.local()
        flight_key = (method, scheme)
        try:
            in_flight[flight_key] += 1
        except KeyError:
            in_flight[flight_key] = 1
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
            try:
                route = scope["route"]
            except KeyError:  # no route matched (404), or stopped at a mount
                route = None
            mounted = scope.get("root_path", root_path)
            if mounted is not root_path and mounted != root_path:
                template = _mounted_template(route, mounted[len(root_path) :])
            elif route is None:
                template = None
            else:
                try:
                    template = route.path
                except AttributeError:  # a route without a path (Host)
                    template = None
            key = (method, scheme, template, status, error)
            # ExactHistogram.record() inlined (this runs for every request), into this
            # thread's shard, which only this thread writes: no lock.
            try:
                series = shard[key]
            except KeyError:
                series = metrics.duration.add_series(shard, key)
            series.counts[_bisect(metrics.boundaries, elapsed)] += 1
            series.sum += elapsed
            if elapsed < series.min:
                series.min = elapsed
            if elapsed > series.max:
                series.max = elapsed
            in_flight[flight_key] -= 1


def _mounted_template(route: object, prefix: str) -> str | None:
    """`http.route` of a request routed through mounts that added `prefix` to the root path."""
    if route is None:
        # FastAPI's router records no route for a mount: stopped there, or no route matched.
        return prefix + "/{path}"
    if _Mount is not None and isinstance(route, _Mount):  # Starlette's router does
        return prefix + "/{path}"
    template = getattr(route, "path", None)
    return None if template is None else prefix + template
