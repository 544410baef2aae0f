"""Point identity: the series store's inlined key loop and labels equal the shared functions'
(`gateway.pipeline.identity`, `labels.point_labels`) for random points, and random attributes
(reserved label names such as `le` among them) survive the forward path's overflow folding
exactly as /metrics shows them."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from gateway.exporters.prometheus.exposition import render
from gateway.exporters.prometheus.labels import point_labels
from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from gateway.pipeline.batch import MetricsBatch
from gateway.pipeline.identity import (
    attributes_key,
    histogram_key,
    number_key,
    resource_identity,
    scope_identity,
)
from gateway.processors.cardinality import CardinalityConfig, OverflowFolder
from tests.support.otlp import CUMULATIVE, DELTA, Req
from tests.support.promtext import parse

# Keys that collide with labels the gateway sets (job, instance, le, quantile), that sanitise
# alike (a.b and a_b), and that look like scope labels.
_KEYS = st.sampled_from(
    ["le", "quantile", "job", "instance", "a.b", "a_b", "otel_scope_name", "k", "Ü", "0x"]
) | st.text(min_size=1, max_size=6)
_VALUES = st.one_of(
    st.text(max_size=8),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=True),
    st.lists(st.text(max_size=3), max_size=3),
)
_ATTRIBUTES = st.lists(st.tuples(_KEYS, _VALUES), max_size=6)


def _set(kv: KeyValue, value: Any) -> None:
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    elif isinstance(value, list):
        for v in value:
            kv.value.array_value.values.add().string_value = v
    else:
        kv.value.string_value = value


def _add_attributes(target: Any, attributes: list[tuple[str, Any]]) -> None:
    for key, value in attributes:
        kv = target.add()
        kv.key = key
        _set(kv, value)


@st.composite
def number_points(draw: st.DrawFn) -> metrics_pb2.NumberDataPoint:
    p = metrics_pb2.NumberDataPoint()
    if draw(st.booleans()):
        p.start_time_unix_nano = draw(st.integers(0, 2**64 - 1))
    p.time_unix_nano = draw(st.integers(1, 2**64 - 1))
    if draw(st.booleans()):
        p.as_double = draw(st.floats(allow_nan=False))
    else:
        p.as_int = draw(st.integers(-(2**63), 2**63 - 1))
    _add_attributes(p.attributes, draw(_ATTRIBUTES))
    if draw(st.booleans()):
        e = p.exemplars.add()
        e.time_unix_nano, e.as_double = 1, 1.0
    p.flags = draw(st.sampled_from([0, 2]))  # 1 (no recorded value) ends the series
    return p


def _one_metric_store(p: Any, kind: str) -> tuple[SeriesStore, Any]:
    """A store fed one gauge or histogram holding `p`, and the stream it made."""
    req = Req()
    m = req._sm.metrics.add()
    m.name = "x"
    if kind == "gauge":
        m.gauge.data_points.append(p)
    else:
        m.histogram.aggregation_temporality = CUMULATIVE
        m.histogram.data_points.append(p)
    store = SeriesStore(StoreSettings(max_series_per_stream=100))
    store.consume(MetricsBatch(req.request))
    rm = req.request.resource_metrics[0]
    sm = rm.scope_metrics[0]
    stream = store.stream_of(resource_identity(rm.resource), scope_identity(sm), m, kind)
    assert stream is not None
    return store, stream


@settings(max_examples=300, deadline=None)
@given(p=number_points())
def test_the_stores_number_keys_and_labels_are_the_shared_functions(
    p: metrics_pb2.NumberDataPoint,
) -> None:
    _, stream = _one_metric_store(p, "gauge")
    key = number_key(p)
    assert list(stream.series) == [key]
    assert key == attributes_key(p)  # the fast path and the slow path agree
    series = stream.series[key]
    assert series.labels == point_labels("gauge", p.attributes, (), bool(stream.prefix))
    assert list(stream.by_labels) == [series.labels]


@settings(max_examples=150, deadline=None)
@given(attributes=_ATTRIBUTES, count=st.integers(0, 50))
def test_the_stores_histogram_keys_and_labels_are_the_shared_functions(
    attributes: list[tuple[str, Any]], count: int
) -> None:
    p = metrics_pb2.HistogramDataPoint()
    p.time_unix_nano = 10
    p.explicit_bounds.append(1.0)
    p.bucket_counts.extend([count, 0])
    p.count = count
    _add_attributes(p.attributes, attributes)
    _, stream = _one_metric_store(p, "histogram")
    assert list(stream.series) == [histogram_key(p)]
    series = stream.series[histogram_key(p)]
    assert series.labels == point_labels("histogram", p.attributes, (), bool(stream.prefix))


def _family(store: SeriesStore, name: str) -> list[tuple[list[tuple[str, str]], float]]:
    strip = {"job", "instance", "otel_scope_name"}
    return sorted(
        (sorted((k, v) for k, v in labels.items() if k not in strip), value)
        for labels, value in parse(render(store).decode()).all(name)
    )


@settings(max_examples=120, deadline=None)
@given(
    sets=st.lists(_ATTRIBUTES, min_size=1, max_size=8),
    limit=st.integers(1, 4),
    histogram=st.booleans(),
    delta=st.booleans(),
)
def test_random_attributes_reach_the_forward_path_as_metrics_shows_them(
    sets: list[list[tuple[str, Any]]], limit: int, histogram: bool, delta: bool
) -> None:
    store = SeriesStore(StoreSettings(cardinality=CardinalityConfig(max_series_per_stream=limit)))
    upstream = SeriesStore(StoreSettings(max_series_per_stream=100_000))
    folder = OverflowFolder(store, upstream)
    temporality = DELTA if delta else CUMULATIVE
    for round_ in (1, 2):
        start, end = ((round_ - 1) * 10, round_ * 10) if delta else (0, round_ * 10)
        scale = 1 if delta else round_
        req = Req()
        m = req._sm.metrics.add()
        m.name = "x"
        data = m.histogram if histogram else m.sum
        data.aggregation_temporality = temporality
        if not histogram:
            m.sum.is_monotonic = True
        for i, attributes in enumerate(sets):
            p = data.data_points.add()
            # a unique attribute, so that no two points of a request are one series
            _add_attributes(p.attributes, [*attributes, ("series_id", str(i))])
            p.start_time_unix_nano, p.time_unix_nano = start, end
            if histogram:
                p.explicit_bounds.append(1.0)
                p.bucket_counts.extend([i * scale, scale])
                p.count, p.sum = (i + 1) * scale, 1.5 * scale
            else:
                p.as_int = (i + 1) * scale
        batch = MetricsBatch(req.request)
        store.consume(batch)  # the store first, as in the gateway's fan-out
        folder.consume(batch)
    names = ("x_bucket", "x_count", "x_sum") if histogram else ("x_total",)
    for name in names:
        assert _family(upstream, name) == _family(store, name), name
    assert store.counters.dropped == {} and upstream.counters.dropped == {}
