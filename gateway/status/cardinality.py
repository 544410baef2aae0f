"""`/api/status/cardinality`: series per metric and per service, overflow counts, and for one
metric its labels ranked by distinct values, so the label that explodes is on top.

The work is bounded: label ranking reads at most `MAX_SCANNED_SERIES` series (and says when
it stopped early), in chunks between which the event loop runs (bench/status.py measures it).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gateway.exporters.prometheus.store import StreamView
from gateway.status.labels import label_pairs, service_of, unescape

__all__ = ["MAX_SCANNED_SERIES", "cardinality_report", "label_ranking"]

#: most series one label ranking or tail reads
MAX_SCANNED_SERIES = 20_000
#: most values shown per label
TOP_VALUES = 5
OVERFLOW_LABEL = "otel_metric_overflow"
_OVERFLOW_PAIR = (OVERFLOW_LABEL, "true")
#: series counted between two yields to the event loop
_CHUNK = 2000


def cardinality_report(
    views: Iterable[StreamView],
    *,
    overflowed_points: Mapping[str, int],
    truncated: Mapping[str, int],
    limit_of: Callable[[str], int],
    top: int,
) -> dict[str, Any]:
    """Metrics and services by series held, most first (at most `top` of each)."""
    metrics: dict[str, dict[str, Any]] = {}
    services: dict[str, dict[str, Any]] = {}
    total = 0
    for view in views:
        family = view.family
        service = service_of(view.resource_labels)
        n = len(view.series)
        total += n
        m = metrics.get(family.name)
        if m is None:
            m = metrics[family.name] = {
                "name": family.name,
                "type": family.kind,
                "series": 0,
                "streams": 0,
                "services": set(),
                "overflowed_series": 0,
                "overflowed_points": overflowed_points.get(family.name, 0),
                "truncated_values": truncated.get(family.name, 0),
                "limit_per_stream": limit_of(family.name),
            }
        m["series"] += n
        m["streams"] += 1
        m["services"].add(service)
        m["overflowed_series"] += view.overflowed_series
        s = services.get(service)
        if s is None:
            s = services[service] = {
                "service": service,
                "series": 0,
                "metrics": 0,
                "overflowed_series": 0,
            }
        s["series"] += n
        s["metrics"] += 1
        s["overflowed_series"] += view.overflowed_series
    for m in metrics.values():
        m["services"] = sorted(m["services"])
    return {
        "series_total": total,
        "metrics_total": len(metrics),
        "services_total": len(services),
        "metrics": sorted(metrics.values(), key=lambda m: (-m["series"], m["name"]))[:top],
        "services": sorted(services.values(), key=lambda s: (-s["series"], s["service"]))[:top],
    }


async def label_ranking(
    views: Iterable[StreamView], metric: str, *, service: str | None = None
) -> dict[str, Any] | None:
    """For `metric` (a Prometheus family name), each point label with its distinct values,
    most first, and its commonest values; None when no live stream has that metric.
    The overflow series is counted apart, not as a label value.

    The series' labels are copied out of the store first (one C-level copy per stream), then
    counted in chunks that yield to the event loop in between, so ingest and probes go on
    while a big metric is counted."""
    keys: list[str] = []
    series_total = 0
    found = False
    for view in views:
        if view.family.name != metric:
            continue
        if service is not None and service_of(view.resource_labels) != service:
            continue
        found = True
        series_total += len(view.series)
        room = MAX_SCANNED_SERIES - len(keys)
        if room > 0:
            keys.extend(itertools.islice(view.series, room))
    if not found:
        return None
    values: dict[str, dict[str, int]] = {}
    overflow_series = 0
    for start in range(0, len(keys), _CHUNK):
        if start:
            await asyncio.sleep(0)
        for rendered in keys[start : start + _CHUNK]:
            pairs = label_pairs(rendered)
            if len(pairs) == 1 and pairs[0] == _OVERFLOW_PAIR:
                overflow_series += 1
                continue
            for name, value in pairs:
                counts = values.get(name)
                if counts is None:
                    counts = values[name] = {}
                counts[value] = counts.get(value, 0) + 1
    ranked = sorted(values.items(), key=lambda item: (-len(item[1]), item[0]))
    return {
        "metric": metric,
        "service": service,
        "series": series_total,
        "scanned_series": len(keys),
        "complete": len(keys) == series_total,
        "overflow_series": overflow_series,
        "labels": [
            {
                "name": name,
                "distinct_values": len(counts),
                "top_values": [
                    {"value": unescape(v), "series": n}
                    for v, n in heapq.nlargest(
                        TOP_VALUES, counts.items(), key=operator.itemgetter(1)
                    )
                ],
            }
            for name, counts in ranked
        ],
    }
