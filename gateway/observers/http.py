"""`GET /api/metrics/current`: the latest system reading and recent history, as JSON.

The JSON is made on request from what the observer already holds (the newest `Reading` and the
`History` ring), so serving it costs the observer nothing per cycle. Example (abridged):

    {"time": "2026-11-28T16:20:00.512Z", "timestamp": 1795882800.512,
     "observer": {"interval_seconds": 10.0, "cycle_cpu_seconds": 0.0006, "overhead_ratio": 6e-05},
     "summary": {"cpu_usage_percent": 12.5, "memory_utilization": 0.41, "load_1m": 0.3},
     "metrics": {"coderunner_system_load_average": {"type": "gauge", "unit": "",
                 "points": [{"labels": {"period": "1m"}, "value": 0.3}, ...]}, ...},
     "history": {"minutes": 15.0, "points": [{"timestamp": 1795881900.4,
                 "cpu_usage_percent": 9.1, "memory_utilization": 0.4, "load_1m": 0.2}, ...]}}
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from gateway.catalogue import DEFAULT_NAMESPACE
from gateway.observers.history import History
from gateway.observers.reading import Reading

__all__ = ["PATH", "metrics_current_router"]

PATH = "/api/metrics/current"
_NS = 1_000_000_000


def _metrics(reading: Reading, namespace: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in reading.series:
        m = s.metric
        out[m.prometheus_name(namespace)] = {
            "type": m.prometheus_type,
            "unit": m.unit,
            "points": [{"labels": dict(attrs), "value": value} for attrs, value in s.points],
        }
    return out


def metrics_current_router(
    history: History, *, namespace: str = DEFAULT_NAMESPACE, history_minutes: float = 15.0
) -> APIRouter:
    """A router serving `GET /api/metrics/current` from `history` (the observer's)."""
    router = APIRouter()

    @router.get(PATH)
    async def current(
        minutes: Annotated[
            float | None,
            Query(gt=0, le=24 * 60, description="history to return, default all that is kept"),
        ] = None,
    ) -> JSONResponse:
        reading = history.latest
        if reading is None:
            return JSONResponse(
                {"detail": "no system reading yet: the observer's first cycle is due shortly"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        window = min(minutes, history_minutes) if minutes is not None else history_minutes
        since = reading.time_unix_nano - int(window * 60 * _NS)
        return JSONResponse(
            {
                "time": datetime.fromtimestamp(reading.time_unix_nano / _NS, UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                "timestamp": reading.time_unix_nano / _NS,
                "observer": {
                    "interval_seconds": history.interval_seconds,
                    "cycle_cpu_seconds": history.cycle_cpu_seconds,
                    "overhead_ratio": history.overhead,
                },
                "summary": {
                    "cpu_usage_percent": reading.cpu_usage_percent,
                    "memory_utilization": reading.memory_utilization,
                    "load_1m": reading.load_1m,
                },
                "metrics": _metrics(reading, namespace),
                "history": {
                    "minutes": window,
                    "points": [
                        {
                            "timestamp": p.time_unix_nano / _NS,
                            "cpu_usage_percent": p.cpu_usage_percent,
                            "memory_utilization": p.memory_utilization,
                            "load_1m": p.load_1m,
                        }
                        for p in history.points(since)
                    ],
                },
            }
        )

    return router
