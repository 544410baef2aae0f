"""`/api/status/cardinality`: series per metric and per service, overflow counts, and for one
metric its labels ranked by distinct values, so the label that explodes is on top.

The work is bounded: label ranking reads at most `MAX_SCANNED_SERIES` series (and says when
it stopped early), so a store with a million series cannot stall the event loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.exporters.prometheus.store import StreamView
from gateway.status.labels import parse_labels, service_of

__all__ = ["MAX_SCANNED_SERIES", "cardinality_report", "label_ranking"]

#: most series one label ranking or tail reads
MAX_SCANNED_SERIES = 20_000
#: most values shown per label
TOP_VALUES = 5
OVERFLOW_LABEL = "otel_metric_overflow"


def cardinality_report(
    views: Iterable[StreamView],
    *,
    overflowed_points: Mapping[str, int],
    truncated: Mapping[str, int],
    limit_of: Any,
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


def label_ranking(
    views: Iterable[StreamView], metric: str, *, service: str | None = None
) -> dict[str, Any] | None:
    """For `metric` (a Prometheus family name), each point label with its distinct values,
    most first, and its commonest values; None when no live stream has that metric.
    The overflow series is counted apart, not as a label value."""
    values: dict[str, Counter[str]] = {}
    scanned = 0
    series_total = 0
    overflow_series = 0
    found = False
    complete = True
    for view in views:
        if view.family.name != metric:
            continue
        if service is not None and service_of(view.resource_labels) != service:
            continue
        found = True
        series_total += len(view.series)
        for rendered in view.series:
            if scanned >= MAX_SCANNED_SERIES:
                complete = False
                break
            scanned += 1
            labels = parse_labels(rendered)
            if labels.get(OVERFLOW_LABEL) == "true":
                overflow_series += 1
                continue
            for name, value in labels.items():
                values.setdefault(name, Counter())[value] += 1
    if not found:
        return None
    ranked = sorted(values.items(), key=lambda item: (-len(item[1]), item[0]))
    return {
        "metric": metric,
        "service": service,
        "series": series_total,
        "scanned_series": scanned,
        "complete": complete,
        "overflow_series": overflow_series,
        "labels": [
            {
                "name": name,
                "distinct_values": len(counts),
                "top_values": [
                    {"value": v, "series": n} for v, n in counts.most_common(TOP_VALUES)
                ],
            }
            for name, counts in ranked
        ],
    }
