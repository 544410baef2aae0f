"""`/api/status/tail`: the latest points of one metric (optionally of one service), newest
first, like the Collector's debug exporter but read from the store on demand: what the
gateway holds after views, delta-to-cumulative and cardinality limits, which is what
Prometheus scrapes. At most `MAX_SCANNED_SERIES` series are read and `limit` returned."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

from gateway.exporters.prometheus.series import HistogramSeries, NumberSeries, Series
from gateway.exporters.prometheus.store import StreamView
from gateway.status.cardinality import MAX_SCANNED_SERIES
from gateway.status.labels import parse_labels

__all__ = ["MAX_TAIL", "tail"]

#: most points one tail answer holds
MAX_TAIL = 200
_NS = 1_000_000_000


def _value(series: Series) -> dict[str, Any]:
    """A series' current value: a number, or count and sum for the histogram kinds."""
    if isinstance(series, NumberSeries):
        return {"value": series.value}
    out: dict[str, Any] = {"count": series.count, "sum": series.sum}
    if isinstance(series, HistogramSeries) and series.bounds:
        out["buckets"] = [
            {"le": b, "count": c}
            for b, c in zip([*series.bounds, "+Inf"], series.counts, strict=False)
        ]
    return out


def tail(
    views: Iterable[StreamView], metric: str, *, service: str | None, limit: int
) -> dict[str, Any] | None:
    """The `limit` most recently updated series of `metric`; None when it has no live
    stream (of that service)."""
    candidates: list[tuple[int, str, str, Series]] = []
    kind = ""
    scanned = 0
    found = False
    for view in views:
        if view.family.name != metric:
            continue
        resource = parse_labels(view.resource_labels)
        if service is not None and resource.get("job", "") != service:
            continue
        found = True
        kind = view.family.kind
        for rendered, series in view.series.items():
            if scanned >= MAX_SCANNED_SERIES:
                break
            scanned += 1
            candidates.append((series.time, view.resource_labels, rendered, series))
    if not found:
        return None
    newest = heapq.nlargest(limit, candidates, key=lambda c: c[0])
    points = []
    for time_ns, resource_labels, rendered, series in newest:
        resource = parse_labels(resource_labels)
        points.append(
            {
                "service": resource.get("job", ""),
                "instance": resource.get("instance", ""),
                "labels": parse_labels(rendered),
                "timestamp": time_ns / _NS if time_ns else None,
                **_value(series),
            }
        )
    return {
        "metric": metric,
        "service": service,
        "type": kind,
        "series": scanned,
        "points": points,
    }
