"""`status_router`: the JSON endpoints under `/api/status/` and the page under `/ui/`.

- `GET /api/status/pipeline`: points/s in, refused and dropped by reason, request latency,
  forward queue, upstream breaker, memory limiter;
- `GET /api/status/cardinality[?metric=M[&service=S]][&top=N]`: series per metric and per
  service with overflow counts; with `metric`, its labels ranked by distinct values;
- `GET /api/status/tail?metric=M[&service=S][&limit=N]`: a metric's latest points, newest
  first (at most 200);
- `GET /api/status/health`: every health check with its last result and circuit breaker;
- `GET /api/status/host[?minutes=N]`: CPU, memory, load and network from the observers' ring.

The README's endpoint table documents the JSON.

Read protection: with read tokens configured (`auth.read_tokens_file`), `ReadGuard`
(gateway/receivers/auth.py) guards these routes like `/metrics`; the health endpoint shows
per-check details under the same `health.details` policy as `/api/health`.
"""

from __future__ import annotations

import functools
import hmac
import time
from importlib import resources
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from gateway.config import GatewayConfig
from gateway.exporters.otlp_forwarder import OtlpForwarder
from gateway.exporters.prometheus.store import SeriesStore
from gateway.health import HealthRegistry, Status
from gateway.health.breaker import CircuitBreaker
from gateway.health.checks.upstream import COMPONENT as UPSTREAM_CHECK
from gateway.memory import MemoryLimiter
from gateway.observers import SystemObserver
from gateway.processors.views import ViewProcessor
from gateway.selftelemetry import SelfTelemetry
from gateway.status.cardinality import cardinality_report, label_ranking
from gateway.status.pipeline import PipelineReadings
from gateway.status.runbooks import RUNBOOKS, runbooks_page
from gateway.status.tail import MAX_TAIL, tail

__all__ = ["StatusParts", "status_router"]

_NO_CACHE = {"Cache-Control": "no-cache, no-store"}
_NS = 1_000_000_000
# The page's files: a fixed list, so no request path ever reaches the file system.
_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


class StatusParts(Protocol):
    """What the status endpoints read: the gateway's components (`gateway.app.Gateway`)."""

    @property
    def config(self) -> GatewayConfig: ...
    @property
    def store(self) -> SeriesStore: ...
    @property
    def telemetry(self) -> SelfTelemetry: ...
    @property
    def views(self) -> ViewProcessor: ...
    @property
    def forwarder(self) -> OtlpForwarder | None: ...
    @property
    def health(self) -> HealthRegistry: ...
    @property
    def memory_limiter(self) -> MemoryLimiter: ...
    @property
    def observer(self) -> SystemObserver | None: ...


def _json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status, headers=_NO_CACHE)


def _breaker(breaker: CircuitBreaker | None) -> dict[str, Any] | None:
    if breaker is None:
        return None
    return {
        "state": breaker.state.value,
        "retry_in_seconds": breaker.retry_in(),
        "consecutive_failures": breaker.consecutive_failures,
        "failure_rate": breaker.failure_rate(),
    }


def _merge(*counts: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def _page_file(name: str) -> bytes:
    return (resources.files("gateway.status") / "static" / name).read_bytes()


def status_router(parts: StatusParts) -> APIRouter:
    """The status endpoints and page over the running gateway `parts`."""
    config = parts.config
    readings = PipelineReadings()
    details_policy = config.health.details
    expected = f"Bearer {config.health.token}".encode()

    def health_details_allowed(request: Request) -> bool:
        # The same rule as /api/health (gateway.health.http).
        if details_policy == "always":
            return True
        if details_policy == "never" or not config.health.token:
            return False
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    router = APIRouter(tags=["status"])

    @router.get("/api/status/pipeline")
    async def pipeline() -> JSONResponse:
        store, telemetry, forwarder = parts.store, parts.telemetry, parts.forwarder
        base, now = readings.add(telemetry.received, telemetry.request_durations())
        body = readings.rates(base, now)
        refused: dict[str, int] = {}
        for (transport, reason), n in telemetry.refused.items():
            refused[f"{transport}: {reason}"] = n
        dropped = _merge(
            store.counters.dropped,
            parts.views.counters.dropped,
            store.limiter.counters.dropped,
            forwarder.dropped() if forwarder is not None else {},
        )
        body.update(
            {
                "timestamp": time.time(),
                "accepted_points_total": store.counters.accepted,
                "rejected_points": dict(sorted(store.counters.rejected.items())),
                "refused_requests": dict(sorted(refused.items())),
                "dropped_points": dropped,
                "active_series": store.series_count,
                "forwarder": None,
                "memory_limiter": {
                    "enabled": parts.memory_limiter.enabled,
                    "refusing": parts.memory_limiter.refusing,
                    "rss_bytes": parts.memory_limiter.last_rss,
                    "soft_limit_bytes": config.memory_limiter.soft_limit_bytes,
                    "hard_limit_bytes": config.memory_limiter.hard_limit_bytes,
                    "episodes": parts.memory_limiter.episodes,
                    "refused_requests": parts.memory_limiter.refused,
                },
            }
        )
        if forwarder is not None:
            check = parts.health.checks.get(UPSTREAM_CHECK)
            body["forwarder"] = {
                "endpoint": config.forwarder.endpoint,
                "protocol": config.forwarder.protocol,
                "queue_kind": config.queue.kind,
                "queue_length": forwarder.queue_length,
                "queue_fill_ratio": forwarder.queue_fill_ratio(),
                "oldest_entry_age_seconds": forwarder.oldest_entry_age_seconds(),
                "forwarded_points": forwarder.counters.forwarded,
                "redelivered_points": forwarder.counters.redelivered,
                "last_success_timestamp": forwarder.last_success_unix(),
                "breaker": _breaker(check.breaker) if check is not None else None,
            }
        return _json(body)

    @router.get("/api/status/cardinality")
    async def cardinality(
        metric: Annotated[
            str | None, Query(max_length=512, description="rank this metric's labels")
        ] = None,
        service: Annotated[
            str | None, Query(max_length=512, description="only this service's streams")
        ] = None,
        top: Annotated[int, Query(ge=1, le=500, description="metrics and services listed")] = 50,
    ) -> JSONResponse:
        store = parts.store
        limiter = store.limiter
        cfg = limiter.config
        body = cardinality_report(
            store.stream_views(),
            overflowed_points=limiter.counters.overflowed,
            truncated=limiter.counters.truncated,
            limit_of=lambda name: cfg.per_metric.get(name, cfg.max_series_per_stream),
            top=top,
        )
        body["limits"] = {
            "max_series_per_stream": cfg.max_series_per_stream,
            "max_series_per_service": cfg.max_series_per_service,
            "max_label_value_length": cfg.max_label_value_length,
            "per_metric": dict(cfg.per_metric),
        }
        body["labels"] = None
        if metric is not None:
            ranking = await label_ranking(store.stream_views(), metric, service=service)
            if ranking is None:
                return _json({"detail": f"no live series of metric {metric!r}"}, 404)
            body["labels"] = ranking
        return _json(body)

    @router.get("/api/status/tail")
    async def tail_points(
        metric: Annotated[str, Query(min_length=1, max_length=512)],
        service: Annotated[str | None, Query(max_length=512)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_TAIL)] = 20,
    ) -> JSONResponse:
        body = tail(parts.store.stream_views(), metric, service=service or None, limit=limit)
        if body is None:
            where = f" from service {service!r}" if service else ""
            return _json({"detail": f"no live series of metric {metric!r}{where}"}, 404)
        return _json(body)

    @router.get("/api/status/health")
    async def health(request: Request) -> JSONResponse:
        registry = parts.health
        status = registry.status()
        body: dict[str, Any] = {
            "status": status.value,
            "ready": registry.readiness().ready,
            "details": health_details_allowed(request),
        }
        if not body["details"]:
            body["output"] = (
                "check details are hidden: health.details is "
                f"{details_policy!r} (as on /api/health)"
            )
            body["checks"] = []
            return _json(body, 503 if status is Status.FAIL else 200)
        checks = registry.checks
        out = []
        for name, result in sorted(registry.results().items()):
            check = checks.get(name)
            out.append(
                {
                    "name": name,
                    "status": result.status.value,
                    "required": result.required,
                    "component_type": result.component_type,
                    "output": result.output,
                    "ran": result.ran,
                    "timestamp": result.time_unix if result.ran else None,
                    "duration_seconds": result.duration_seconds,
                    "interval_seconds": check.interval if check is not None else None,
                    "observations": [
                        {
                            "measurement": o.measurement,
                            "value": o.value,
                            "unit": o.unit,
                            "status": o.status.value if o.status is not None else None,
                            "output": o.output,
                        }
                        for o in result.observations
                    ],
                    "breaker": _breaker(check.breaker if check is not None else None),
                }
            )
        body["checks"] = out
        return _json(body, 503 if status is Status.FAIL else 200)

    @router.get("/api/status/host")
    async def host(
        minutes: Annotated[float | None, Query(gt=0, le=24 * 60)] = None,
    ) -> JSONResponse:
        observer = parts.observer
        if observer is None:
            return _json({"enabled": False, "interval_seconds": None, "points": []})
        history = observer.history
        points = history.points()
        if minutes is not None and points:
            since = points[-1].time_unix_nano - int(minutes * 60 * _NS)
            points = [p for p in points if p.time_unix_nano >= since]
        out = []
        previous = None
        for p in points:
            rx = tx = None
            if previous is not None and p.time_unix_nano > previous.time_unix_nano:
                dt = (p.time_unix_nano - previous.time_unix_nano) / _NS
                if (
                    p.network_receive_bytes is not None
                    and previous.network_receive_bytes is not None
                ):
                    rx = max(0.0, p.network_receive_bytes - previous.network_receive_bytes) / dt
                if (
                    p.network_transmit_bytes is not None
                    and previous.network_transmit_bytes is not None
                ):
                    tx = max(0.0, p.network_transmit_bytes - previous.network_transmit_bytes) / dt
            previous = p
            out.append(
                {
                    "timestamp": p.time_unix_nano / _NS,
                    "cpu_usage_percent": p.cpu_usage_percent,
                    "memory_utilization": p.memory_utilization,
                    "load_1m": p.load_1m,
                    "network_receive_bytes_per_second": rx,
                    "network_transmit_bytes_per_second": tx,
                }
            )
        return _json({"enabled": True, "interval_seconds": history.interval_seconds, "points": out})

    @router.get("/ui", include_in_schema=False)
    async def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @router.get("/ui/", include_in_schema=False)
    async def ui_index() -> Response:
        return Response(
            _page_file("index.html"), media_type=_STATIC["index.html"], headers=_NO_CACHE
        )

    # Rendered once (about 10 ms of Markdown on the event loop): the file and the namespace do
    # not change while the gateway runs, and a client reloading the page must not cost that.
    runbooks = functools.cache(lambda: runbooks_page(config.prometheus.namespace))

    @router.get("/ui/runbooks", include_in_schema=False)
    async def ui_runbooks() -> Response:
        page = runbooks()
        if page is None:
            return Response(
                f"no runbooks here ({RUNBOOKS} is missing): alerts should link to the "
                "runbooks where the deployment publishes them "
                "(telemetry-gateway render --runbook-base URL)\n",
                404,
                media_type="text/plain",
            )
        return HTMLResponse(page)

    @router.get("/ui/{name}", include_in_schema=False)
    async def ui_file(name: str) -> Response:
        media_type = _STATIC.get(name)
        if media_type is None:
            return Response("not found\n", 404, media_type="text/plain")
        return Response(_page_file(name), media_type=media_type, headers=_NO_CACHE)

    return router
