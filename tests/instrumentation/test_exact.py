"""ExactHistogram against the SDK's own histogram: for the same measurements, the same points
(name, unit, attributes, boundaries, counts, sum, min, max), in both temporalities."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from instrumentation import semconv
from instrumentation._exact import ExactHistogram, MetricsSource, hook_reader

BOUNDS = semconv.HTTP_DURATION_BUCKETS
DELTA = {Histogram: AggregationTemporality.DELTA}


def attrs(key: tuple[str, int]) -> dict[str, object]:
    return {"http.route": key[0], "http.response.status_code": key[1]}


def pair(
    temporality: dict[type, AggregationTemporality] | None = None, limit: int = 2000
) -> tuple[ExactHistogram, InMemoryMetricReader, object, InMemoryMetricReader]:
    """Ours (hooked into a provider's reader) and the SDK's histogram on another provider."""
    ours_reader = InMemoryMetricReader(preferred_temporality=temporality)
    ours_provider = MeterProvider(metric_readers=[ours_reader])
    hist = ExactHistogram(
        "http.server.request.duration",
        unit="s",
        description="Duration of HTTP server requests.",
        boundaries=BOUNDS,
        attributes=attrs,
        cardinality_limit=limit,
    )
    hook_reader(
        ours_reader,
        [MetricsSource(InstrumentationScope("t"), [hist])],
        ours_provider._sdk_config.resource,
    )
    sdk_reader = InMemoryMetricReader(preferred_temporality=temporality)
    sdk = (
        MeterProvider(metric_readers=[sdk_reader])
        .get_meter("t")
        .create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=BOUNDS,
        )
    )
    return hist, ours_reader, sdk, sdk_reader


def points(reader: InMemoryMetricReader) -> dict[tuple[object, ...], HistogramDataPoint]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    out = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                assert (m.name, m.unit) == ("http.server.request.duration", "s")
                for p in m.data.data_points:
                    out[tuple(sorted(p.attributes.items()))] = p
    return out


def same(ours: HistogramDataPoint, sdk: HistogramDataPoint, *, min_max: bool = True) -> None:
    assert ours.count == sdk.count
    assert list(ours.bucket_counts) == list(sdk.bucket_counts)
    assert tuple(ours.explicit_bounds) == tuple(sdk.explicit_bounds)
    assert math.isclose(ours.sum, sdk.sum, rel_tol=1e-9, abs_tol=1e-12)
    if min_max:
        assert (ours.min, ours.max) == (sdk.min, sdk.max)


values = st.floats(min_value=0.0, max_value=20.0, allow_nan=False)
keys = st.sampled_from([("/a", 200), ("/a", 500), ("/b/{id}", 200)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(keys, values), max_size=60), st.sampled_from(BOUNDS))
def test_cumulative_points_equal_the_sdks(
    measurements: list[tuple[tuple[str, int], float]], on_a_bound: float
) -> None:
    hist, ours_reader, sdk, sdk_reader = pair()
    for key, value in [*measurements, (("/a", 200), on_a_bound)]:  # a bound goes to its bucket
        hist.record(key, value)
        sdk.record(value, attrs(key))  # type: ignore[attr-defined]
    ours, theirs = points(ours_reader), points(sdk_reader)
    assert ours.keys() == theirs.keys()
    for k in ours:
        same(ours[k], theirs[k])


def test_delta_points_equal_the_sdks_interval_by_interval() -> None:
    hist, ours_reader, sdk, sdk_reader = pair(DELTA)
    for batch in ([0.003, 0.2], [], [7.0, 0.004, 0.004]):
        for v in batch:
            hist.record(("/a", 200), v)
            sdk.record(v, attrs(("/a", 200)))  # type: ignore[attr-defined]
        ours, theirs = points(ours_reader), points(sdk_reader)
        assert ours.keys() == theirs.keys()  # an empty interval has no point in either
        for k in ours:
            same(ours[k], theirs[k], min_max=False)
            assert ours[k].min is None and ours[k].max is None  # not derivable; unset in OTLP


def test_series_beyond_the_limit_fold_into_the_overflow_series() -> None:
    hist, reader, _, _ = pair(limit=3)
    for i in range(10):
        hist.record((f"/r{i}", 200), 0.01)
    got = {dict(k).get("http.route", "overflow"): p.count for k, p in points(reader).items()}
    assert got == {"/r0": 1, "/r1": 1, "overflow": 8}
    overflow = [k for k in points(reader) if ("otel.metric.overflow", True) in k]
    assert len(overflow) == 1


def test_bad_boundaries_are_refused() -> None:
    with pytest.raises(ValueError, match="increase strictly"):
        ExactHistogram("h", unit="s", description="", boundaries=(1.0, 0.5), attributes=attrs)


def test_a_reader_without_the_sdk_seam_is_a_clear_error() -> None:
    reader = InMemoryMetricReader()  # never registered with a provider: no collect callback
    with pytest.raises(RuntimeError, match="opentelemetry-sdk"):
        hook_reader(reader, [], MeterProvider()._sdk_config.resource)
