"""Reads data points back out of the batches a `PipelineHealthMetrics` sent (shared by the
health tests, the demo's and tests/integration/test_health_faults.py)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.pipeline.batch import MetricsBatch


@dataclass(frozen=True)
class Point:
    name: str
    attributes: dict[str, str]
    value: float
    kind: str  # "gauge" or "sum"
    monotonic: bool


def points(batch: MetricsBatch) -> list[Point]:
    out: list[Point] = []
    for rm in batch.request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                data = getattr(m, kind)
                for p in data.data_points:
                    attrs = {kv.key: kv.value.string_value for kv in p.attributes}
                    monotonic = bool(getattr(data, "is_monotonic", False))
                    out.append(Point(m.name, attrs, p.as_double, kind, monotonic))
    return out


def breaker_states(batches: list[MetricsBatch], component: str) -> list[str]:
    """The breaker state each batch reported for `component`, consecutive repeats folded."""
    seen: list[str] = []
    for batch in batches:
        for p in points(batch):
            if (
                p.name.endswith("circuit_breaker.state")
                and p.attributes.get("component") == component
                and p.value == 1.0
                and (not seen or seen[-1] != p.attributes["state"])
            ):
                seen.append(p.attributes["state"])
    return seen
